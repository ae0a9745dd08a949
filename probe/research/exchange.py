"""Moving measurements in and out: `probe export` (ooni, jsonl, csv) and `probe import-ooni`."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import sqlite_utils

from .. import __version__, storage
from ..analysis import RULES_VERSION, Matcher, analyse
from ..models import NetworkView, Observations, Verdict
from ..serialize import to_dict
from . import queries
from .ooni import export_measurement, import_measurement

FORMATS = ("ooni", "jsonl", "csv")
CSV_COLUMNS = ("run_id", "url", "category", "status", "layer", "detail", "fingerprint", "control", "rule",
               "runtime_s", "started", "evidence", "uuid")


def _verdict(m: dict[str, Any]) -> Verdict:
    return Verdict(status=m["status"], layer=m["layer"], detail=m["detail"], rule=m["rule"], control=m["control"],
                   fingerprint=m["fingerprint"], evidence=m["evidence"] or "")


def export(db: sqlite_utils.Database, run_id: int, fmt: str, out: TextIO) -> int:
    run = queries.run(db, run_id)
    writer = csv.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(CSV_COLUMNS)
    n = 0
    for m in storage.measurements(db, run_id):
        n += 1
        if writer:
            writer.writerow([m[c] for c in CSV_COLUMNS])
            continue
        obs = storage.load_observations(db, m)
        if fmt == "ooni":
            doc = ooni_document(obs, m, with_survey(db, run, m))
        else:
            doc = {k: m[k] for k in CSV_COLUMNS} | {"observations": to_dict(obs)}
        out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return n


def with_survey(db: sqlite_utils.Database, run: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    """The run as a measurement's export describes it: with the network survey that measurement was judged
    with (a resumed run may have surveyed two networks), not only the run's latest."""
    text = storage.survey_text(db, m["survey_id"]) if m.get("survey_id") else None
    return {**run, "network": text} if text else run


def ooni_document(obs: Observations, m: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """One stored measurement as OONI Web Connectivity, with our identities (what import-ooni, `probe upload`
    and the collector read)."""
    doc = export_measurement(obs, _verdict(m), run, __version__)
    doc["test_keys"]["x_probe_uuid"] = m.get("uuid")  # the measurement's identity, kept by import-ooni
    doc["test_keys"]["x_probe_run_uuid"] = run.get("uuid")
    return doc


def _documents(path: Path) -> Iterator[tuple[str, Any]]:
    """Measurements in a file: JSON Lines, one JSON object, a JSON list, or an API page {"results": [...]}."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        whole = json.loads(text)
    except ValueError:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield f"{path}:{n}", json.loads(line)
                except ValueError as e:
                    yield f"{path}:{n}", e
        return
    items = whole.get("results", [whole]) if isinstance(whole, dict) else whole
    for i, item in enumerate(items if isinstance(items, list) else [items]):
        yield f"{path}#{i}", item


def import_ooni(db: sqlite_utils.Database, paths: Iterable[Path], matcher: Matcher | None = None
                ) -> tuple[list[int], int, list[str]]:
    """Load Web Connectivity measurements as runs (one per network) and judge them with our analysis."""
    runs: dict[str, int] = {}
    seen: set[tuple[int, str]] = set()
    warnings: list[str] = []
    count = 0
    names = [str(p) for p in paths]
    for path in map(Path, names):
        for where, doc in _documents(path):
            try:
                if isinstance(doc, Exception) or not isinstance(doc, dict):
                    raise ValueError(f"not a JSON object ({doc})")
                obs = import_measurement(doc)
            except (ValueError, KeyError, TypeError) as e:
                warnings.append(f"{where}: skipped: {e}")
                continue
            asn = str(doc.get("probe_asn") or "AS0")
            if asn not in runs:
                run_id = storage.create_run(db, options={"imported_from": names}, software_version=__version__,
                                            rules_version=RULES_VERSION, targets=[], resolvers=[])
                asn_n = int(asn[2:]) if asn[2:].isdigit() else None
                storage.set_vantage(db, run_id, asn_n or None, doc.get("probe_network_name") or None,
                                    doc.get("probe_cc") or None, None)
                runs[asn] = run_id
            run_id = runs[asn]
            if (run_id, obs.target.url) in seen:
                warnings.append(f"{where}: skipped: {obs.target.url} already imported in run {run_id}")
                continue
            uid = (doc.get("test_keys") or {}).get("x_probe_uuid")
            uid = uid if isinstance(uid, str) and uid else None
            if uid and storage.has_measurement(db, uid):
                warnings.append(f"{where}: skipped: measurement {uid} is already in this database")
                continue
            seen.add((run_id, obs.target.url))
            view = NetworkView.from_dict((doc.get("test_keys") or {}).get("x_probe_network"))
            # A probe export carries the network survey it was judged with.
            survey_id = storage.same_survey(db, run_id, view) if view is not None else None
            verdict = analyse(obs, matcher, view)
            with db.atomic():
                storage.write_measurement(db, run_id, obs, verdict, RULES_VERSION, keep_body=verdict.status != "ok",
                                          measurement_uuid=uid, survey_id=survey_id)
            count += 1
    for run_id in runs.values():
        storage.finish_run(db, run_id, "done")
    return list(runs.values()), count, warnings
