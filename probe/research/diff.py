"""What changed between runs: newly blocked or unblocked (strong evidence), newly anomalous or cleared, method or
blockpage changed, and URLs that flap.

Strong evidence and anomalies are kept apart: an URL that turns anomalous is not "newly blocked", and a URL that
flips between ok and anomaly is not a blocking that comes and goes. A change to or from `down` or `error` says
nothing about blocking either way and is reported as `status-changed`. Runs from different networks (ASNs)
measure different censors: comparing them silently would mislead, so `compare_runs` refuses unless asked, and
`history` groups runs by network.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlite_utils

from ..verdicts import CHANGES, INTERFERENCE
from . import queries
from .queries import QueryError, network_of

__all__ = ["Change", "DiffError", "RunDiff", "classify", "compare_runs", "history", "network_of"]

# Which change kinds make a URL flap, per kind of evidence: a URL flaps when it goes in and out twice or more.
FLAPS = {"blocked": ("newly-blocked", "unblocked"), "anomaly": ("newly-anomalous", "anomaly-cleared")}


class DiffError(QueryError):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    url: str
    kind: str  # a key of verdicts.CHANGES
    before: str  # "status detail"
    after: str


@dataclass(slots=True, kw_only=True)
class RunDiff:
    run_a: int
    run_b: int
    network_a: str
    network_b: str
    changes: list[Change] = field(default_factory=list)
    only_in_a: int = 0
    only_in_b: int = 0

    def counts(self) -> dict[str, int]:
        """Changes per kind, in the vocabulary's order."""
        out = {kind: sum(c.kind == kind for c in self.changes) for kind in CHANGES}
        return {k: n for k, n in out.items() if n}

    def as_dict(self) -> dict[str, Any]:
        return {"run_a": self.run_a, "run_b": self.run_b, "network_a": self.network_a, "network_b": self.network_b,
                "counts": self.counts(), "only_in_a": self.only_in_a, "only_in_b": self.only_in_b,
                "changes": [asdict(c) for c in self.changes]}


def classify(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """The kind of change from verdict `a` to verdict `b` of one URL (None: nothing changed that matters)."""
    was, now = a["status"], b["status"]
    if was == now:
        if was not in INTERFERENCE:
            return None
        if a["layer"] != b["layer"]:
            return "method-changed"
        if a["fingerprint"] != b["fingerprint"]:
            return "blockpage-changed"
        return "detail-changed" if a["detail"] != b["detail"] else None
    measured = {"ok", *INTERFERENCE}  # down and error say nothing about blocking: no "newly" or "cleared" from them
    if was not in measured or now not in measured:
        return "status-changed"
    if now == "blocked":
        return "newly-blocked"
    if was == "blocked":
        return "unblocked"
    return "newly-anomalous" if now == "anomaly" else "anomaly-cleared"


def compare_runs(db: sqlite_utils.Database, run_a: int, run_b: int, *, across_networks: bool = False) -> RunDiff:
    ra, rb = queries.run(db, run_a), queries.run(db, run_b)
    na, nb = network_of(ra), network_of(rb)
    if na != nb and not across_networks:
        raise DiffError(f"run {run_a} is from {na} and run {run_b} from {nb}: different networks see different "
                        "censors (pass --across-networks to compare anyway)")
    va, vb = queries.verdicts(db, run_a), queries.verdicts(db, run_b)
    diff = RunDiff(run_a=run_a, run_b=run_b, network_a=na, network_b=nb, only_in_a=len(va.keys() - vb.keys()),
                   only_in_b=len(vb.keys() - va.keys()))
    diff.changes = _changes(va, vb)
    return diff


def _changes(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> list[Change]:
    out = []
    for url in sorted(before.keys() & after.keys()):
        kind = classify(before[url], after[url])
        if kind:
            a, b = before[url], after[url]
            earlier = f" (run {a['run_id']})" if "run_id" in a and a.get("carried") else ""
            out.append(Change(url=url, kind=kind, before=f"{a['status']} {a['detail']}{earlier}",
                              after=f"{b['status']} {b['detail']}"))
    return out


def history(db: sqlite_utils.Database, since: str | None) -> dict[str, dict[str, Any]]:
    """Per network: its finished runs since `since` (parsed), consecutive diffs, and the URLs that flapped (went in
    and out twice or more), strong evidence and anomalies counted apart."""
    by_network: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in queries.runs(db, since=since, finished_only=True):
        by_network[network_of(r)].append(r)
    out = {}
    for network, rs in sorted(by_network.items()):
        diffs = []
        # Each URL is compared with its latest verdict on this network, not only with the run just before: a URL
        # that an interrupted run did not reach still shows a change across it.
        known: dict[str, dict[str, Any]] = {}
        for a, b in itertools.pairwise(rs):
            va = queries.verdicts(db, a["id"])
            known = {u: {**v, "carried": True, "run_id": v.get("run_id", a["id"])} for u, v in known.items()}
            known.update({u: {**v, "run_id": a["id"]} for u, v in va.items()})
            vb = queries.verdicts(db, b["id"])
            diff = RunDiff(run_a=a["id"], run_b=b["id"], network_a=network, network_b=network,
                           only_in_a=len(va.keys() - vb.keys()), only_in_b=len(vb.keys() - known.keys()))
            diff.changes = _changes(known, vb)
            diffs.append(diff)
        flapping = {}
        for status, kinds in FLAPS.items():
            flips: dict[str, int] = defaultdict(int)
            for d in diffs:
                for c in d.changes:
                    if c.kind in kinds:
                        flips[c.url] += 1
            flapping[status] = sorted(u for u, n in flips.items() if n >= 2)
        out[network] = {"runs": [r["id"] for r in rs], "diffs": [d.as_dict() for d in diffs], "flapping": flapping}
    return out
