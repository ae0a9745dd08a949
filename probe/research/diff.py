"""What changed between runs: newly blocked, unblocked, method or blockpage changed, and flapping URLs.

Runs from different networks (ASNs) measure different censors: comparing them silently would mislead, so
`compare_runs` refuses unless asked, and `history` groups runs by network.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlite_utils

INTERFERENCE = ("blocked", "anomaly")


class DiffError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Change:
    url: str
    kind: str  # newly-blocked | unblocked | method-changed | blockpage-changed | status-changed
    before: str  # "status detail"
    after: str


@dataclass(slots=True)
class RunDiff:
    run_a: int
    run_b: int
    network_a: str
    network_b: str
    changes: list[Change] = field(default_factory=list)
    only_in_a: int = 0
    only_in_b: int = 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for c in self.changes:
            out[c.kind] += 1
        return dict(out)

    def as_dict(self) -> dict[str, Any]:
        return {"run_a": self.run_a, "run_b": self.run_b, "network_a": self.network_a, "network_b": self.network_b,
                "counts": self.counts(), "only_in_a": self.only_in_a, "only_in_b": self.only_in_b,
                "changes": [asdict(c) for c in self.changes]}


def network_of(run: dict[str, Any]) -> str:
    if run.get("vantage_asn"):
        return f"AS{run['vantage_asn']} {run.get('vantage_network') or ''}".strip()
    return "unknown network"


def _run(db: sqlite_utils.Database, run_id: int) -> dict[str, Any]:
    rows = list(db.table("runs").rows_where("id = ?", [run_id]))
    if not rows:
        raise DiffError(f"no run {run_id}")
    return rows[0]


def _verdicts(db: sqlite_utils.Database, run_id: int) -> dict[str, dict[str, Any]]:
    query = "select url, status, layer, detail, fingerprint from measurements where run_id = ?"
    return {r["url"]: r for r in db.query(query, [run_id])}


def classify(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    was, now = a["status"] in INTERFERENCE, b["status"] in INTERFERENCE
    if not was and now:
        return "newly-blocked"
    if was and not now:
        return "unblocked"
    if was and now:
        if a["layer"] != b["layer"]:
            return "method-changed"
        if a["fingerprint"] != b["fingerprint"]:
            return "blockpage-changed"
        if a["detail"] != b["detail"] or a["status"] != b["status"]:
            return "status-changed"
        return None
    return "status-changed" if a["status"] != b["status"] else None


def compare_runs(db: sqlite_utils.Database, run_a: int, run_b: int, *, across_networks: bool = False) -> RunDiff:
    ra, rb = _run(db, run_a), _run(db, run_b)
    na, nb = network_of(ra), network_of(rb)
    if na != nb and not across_networks:
        raise DiffError(f"run {run_a} is from {na} and run {run_b} from {nb}: different networks see different "
                        "censors (pass --across-networks to compare anyway)")
    va, vb = _verdicts(db, run_a), _verdicts(db, run_b)
    diff = RunDiff(run_a, run_b, na, nb, only_in_a=len(va.keys() - vb.keys()), only_in_b=len(vb.keys() - va.keys()))
    for url in sorted(va.keys() & vb.keys()):
        kind = classify(va[url], vb[url])
        if kind:
            diff.changes.append(Change(url, kind, f"{va[url]['status']} {va[url]['detail']}",
                                       f"{vb[url]['status']} {vb[url]['detail']}"))
    return diff


def history(db: sqlite_utils.Database, since: str) -> dict[str, dict[str, Any]]:
    """Per network: its runs since `since`, consecutive diffs, and URLs that flapped (changed 2+ times)."""
    runs = list(db.query("select * from runs where started >= ? and status != 'running' order by id", [since]))
    by_network: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by_network[network_of(r)].append(r)
    out = {}
    for network, rs in by_network.items():
        diffs = [compare_runs(db, a["id"], b["id"]) for a, b in itertools.pairwise(rs)]
        flips: dict[str, int] = defaultdict(int)
        for d in diffs:
            for c in d.changes:
                if c.kind in ("newly-blocked", "unblocked"):
                    flips[c.url] += 1
        out[network] = {"runs": [r["id"] for r in rs], "diffs": [d.as_dict() for d in diffs],
                        "flapping": sorted(u for u, n in flips.items() if n >= 2)}
    return out
