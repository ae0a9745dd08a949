"""Re-judging stored runs: rebuild observations from the database, run the current analysis, store the result.

Each run is re-judged with its own signature options (`runs.options`: `--no-signatures` stays without signatures,
`--signatures FILE` reloads that file), so that a reanalysis changes verdicts only where the rules or the
signature sets themselves changed. Every verdict replaced is kept in `verdict_history` (nothing is lost), the run
then counts as the new rules version and signature sets (its method, probe/measure/method.py), and every changed verdict
is listed. A dry run computes the same list and writes nothing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from .. import signatures, storage
from ..analysis import RULES_VERSION, Matcher, analyse
from ..measure import method
from ..models import NetworkView
from ..research.queries import network_of


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejudged:
    """One verdict that reanalysis changed."""

    run_id: int
    url: str
    network: str
    before: str  # "status detail"
    after: str
    rule_before: str
    rule_after: str
    rules_before: str  # the rules version that gave `before`


@dataclass(slots=True, kw_only=True)
class Reanalysis:
    rules_version: str  # what the verdicts now rest on
    dry_run: bool
    total: int = 0
    changes: list[Rejudged] = field(default_factory=list)
    runs: dict[int, str] = field(default_factory=dict)  # run id -> its method (brief) as re-judged
    warnings: list[str] = field(default_factory=list)  # broken signature rows, missing packs

    def as_dict(self) -> dict[str, Any]:
        return {"rules_version": self.rules_version, "dry_run": self.dry_run, "total": self.total,
                "changed": len(self.changes), "runs": self.runs,
                "changes": [dataclasses.asdict(c) for c in self.changes]}


def _options(run: dict[str, Any]) -> dict[str, Any]:
    try:
        stored = json.loads(run.get("options") or "{}")
    except ValueError:
        stored = {}
    return stored if isinstance(stored, dict) else {}


def rejudge(db: sqlite_utils.Database, run_id: int | None = None, *, dry_run: bool = False,
            packs: tuple[str, ...] | None = None, data_dir: str | None = None) -> Reanalysis:
    """Re-judge one run (or all) with the current rules and each run's own signature options. `packs` and
    `data_dir`, when given, replace the run's own signature packs and cache (a run measured with
    --no-signatures stays without)."""
    loaded: dict[tuple[Any, ...], Matcher | None] = {}
    result = Reanalysis(rules_version=RULES_VERSION, dry_run=dry_run)

    def effective(run: dict[str, Any]) -> dict[str, Any]:
        o = _options(run)
        if packs is not None:
            o["signature_packs"] = [str(Path(p).resolve()) for p in packs]
        if data_dir is not None:
            o["data_dir"] = str(Path(data_dir).resolve())
        return o

    def matcher_for(run: dict[str, Any]) -> Matcher | None:
        o = effective(run)
        if not o.get("signatures", True):
            return None
        key = (tuple(o.get("signature_packs") or ()), o.get("data_dir"))
        if key not in loaded:
            for p in key[0]:
                if not Path(p).is_file():
                    result.warnings.append(f"run {run['id']}: signature pack {p} is gone; re-judged without it")
            cache = signatures.cache_dir(Path(key[1])) if key[1] else None
            sigset, warnings = signatures.load(cache=cache, packs=tuple(Path(p) for p in key[0] if Path(p).is_file()))
            result.warnings.extend(warnings)
            loaded[key] = sigset.hits
        return loaded[key]

    def method_for(run: dict[str, Any]) -> dict[str, Any]:
        return method.record(effective(run), RULES_VERSION)

    return _rejudge(db, run_id, result, matcher_for, method_for)


def reanalyze(db: sqlite_utils.Database, run_id: int | None = None,
              matcher: Matcher | None = None) -> tuple[int, int]:
    """Re-judge with one matcher for every run (None: no signatures); return (verdicts changed, measurements seen).
    The library's older form: `rejudge` uses each run's own signatures."""
    result = Reanalysis(rules_version=RULES_VERSION, dry_run=False)

    def method_for(run: dict[str, Any]) -> dict[str, Any]:
        sources = [{"name": "given", "sha256": None}] if matcher is not None else []
        return method.record({**_options(run), "signatures": matcher is not None}, RULES_VERSION, sources=sources)

    _rejudge(db, run_id, result, lambda run: matcher, method_for)
    return len(result.changes), result.total


def _rejudge(db: sqlite_utils.Database, run_id: int | None, result: Reanalysis,
             matcher_for: Callable[[dict[str, Any]], Matcher | None],
             method_for: Callable[[dict[str, Any]], dict[str, Any]]) -> Reanalysis:
    runs = list(db.query("select * from runs where id = ?", [run_id]) if run_id is not None
                else db.query("select * from runs order by id"))
    replaced_at = storage.now()
    views: dict[tuple[str, int], NetworkView | None] = {}
    for run in runs:
        matcher = matcher_for(run)
        network = network_of(run)
        how = method_for(run)
        result.runs[run["id"]] = method.brief({**how, "rules": RULES_VERSION})
        with db.atomic():
            for m in list(storage.measurements(db, run["id"])):
                result.total += 1
                # Each measurement is judged with the network survey of its own session (older rows: their run's).
                key = ("survey", m["survey_id"]) if m.get("survey_id") else ("run", m["run_id"])
                if key not in views:
                    views[key] = (storage.survey(db, key[1]) if key[0] == "survey"
                                  else storage.network_view(db, key[1]))
                verdict = analyse(storage.load_observations(db, m), matcher, views[key])
                if (verdict.status, verdict.detail) != (m["status"], m["detail"]):
                    result.changes.append(Rejudged(
                        run_id=run["id"], url=m["url"], network=network, before=f"{m['status']} {m['detail']}",
                        after=f"{verdict.status} {verdict.detail}", rule_before=m["rule"] or "",
                        rule_after=verdict.rule, rules_before=m["rules_version"] or ""))
                if _nothing_to_write(result.dry_run, m, verdict):
                    continue
                storage.replace_verdict(db, m, verdict, RULES_VERSION, replaced_at)
            if not result.dry_run:
                storage.set_run_method(db, run["id"], how, RULES_VERSION)
    return result


def _nothing_to_write(dry_run: bool, m: dict[str, Any], verdict: Any) -> bool:
    """Nothing to write: a dry run, or a verdict identical in every stored column (history keeps changes only)."""
    if dry_run:
        return True
    new = {"status": verdict.status, "layer": verdict.layer, "detail": verdict.detail,
           "fingerprint": verdict.fingerprint, "control": verdict.control, "rule": verdict.rule,
           "rules_version": RULES_VERSION, "evidence": verdict.evidence, "scope": verdict.scope,
           "flaky": int(verdict.flaky), "quic": verdict.quic}
    return all(m.get(k) == v for k, v in new.items())
