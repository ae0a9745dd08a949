"""What changed between runs: newly blocked or unblocked (strong evidence), newly anomalous or cleared, method or
blockpage changed, and URLs that flap.

Strong evidence and anomalies are kept apart: an URL that turns anomalous is not "newly blocked", and a URL that
flips between ok and anomaly is not a blocking that comes and goes. A change to or from `down` or `error` says
nothing about blocking either way and is reported as `status-changed`. Runs from different networks (ASNs)
measure different censors: comparing them silently would mislead, so `compare_runs` refuses unless asked, and
`history` groups runs by network.

Runs that measured differently (another rules version, other signatures, control, resolvers or timeouts: see
probe/measure/method.py) are not compared as if they had not: a verdict that changed between them is
`our-method-changed` unless `across_methods` is asked for. And a pair of runs always says what it covered: a run
that measured nothing (offline) or part of its list is "not compared", never "no change".
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlite_utils

from ..measure import method
from ..verdicts import CHANGES, INTERFERENCE
from . import queries
from .queries import QueryError, network_of

__all__ = ["Change", "DiffError", "RunDiff", "SpeedChange", "classify", "compare_runs", "history", "network_of",
           "speed_changes"]

# Which change kinds make a URL flap, per kind of evidence: a URL flaps when it goes in and out twice or more.
VERDICT_KEYS = ("status", "layer", "detail", "fingerprint")  # the order of queries.verdict_rows
FLAPS = {"blocked": ("newly-blocked", "unblocked"), "anomaly": ("newly-anomalous", "anomaly-cleared")}


class DiffError(QueryError):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    url: str
    kind: str  # a key of verdicts.CHANGES
    before: str  # "status detail"
    after: str


# A page that came this many times faster or slower than in the run before is shown (its speed is no verdict:
# throttling is judged within one run, against the control and the line; this is the record over time). Lines at
# home vary by 2x from hour to hour; 3x stands out.
SPEED_CHANGE = 3.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeedChange:
    url: str
    before: float  # KiB/s
    after: float

    @property
    def factor(self) -> float:
        return self.after / self.before if self.before else 0.0


def speed_changes(before: dict[str, float], after: dict[str, float]) -> list[SpeedChange]:
    """Pages (queries.page_speeds) whose speed changed SPEED_CHANGE times or more between two runs."""
    out = []
    for url in sorted(before.keys() & after.keys()):
        a, b = before[url], after[url]
        if a > 0 and b > 0 and max(a / b, b / a) >= SPEED_CHANGE:
            out.append(SpeedChange(url=url, before=round(a / 1024, 1), after=round(b / 1024, 1)))
    return out


def _kib(speed: float | None) -> float | None:
    return None if speed is None else round(speed / 1024, 1)


@dataclass(slots=True, kw_only=True)
class RunDiff:
    run_a: int
    run_b: int
    network_a: str
    network_b: str
    changes: list[Change] = field(default_factory=list)
    only_in_a: int = 0
    only_in_b: int = 0
    coverage_a: dict[str, Any] = field(default_factory=dict)  # run_id, status, listed, measured
    coverage_b: dict[str, Any] = field(default_factory=dict)
    compared: int = 0  # URLs with a verdict on both sides
    method_a: str = ""  # method.brief of each run
    method_b: str = ""
    method_changes: list[str] = field(default_factory=list)  # what differs between the two methods, in words
    speeds: list[SpeedChange] = field(default_factory=list)  # pages that came far faster or slower
    line_a: float | None = None  # KiB/s the line carried our helper's bytes at (the run's survey)
    line_b: float | None = None

    def counts(self) -> dict[str, int]:
        """Changes per kind, in the vocabulary's order."""
        out = {kind: sum(c.kind == kind for c in self.changes) for kind in CHANGES}
        return {k: n for k, n in out.items() if n}

    def as_dict(self) -> dict[str, Any]:
        return {"run_a": self.run_a, "run_b": self.run_b, "network_a": self.network_a, "network_b": self.network_b,
                "counts": self.counts(), "only_in_a": self.only_in_a, "only_in_b": self.only_in_b,
                "compared": self.compared, "coverage_a": self.coverage_a, "coverage_b": self.coverage_b,
                "method_a": self.method_a, "method_b": self.method_b, "method_changes": self.method_changes,
                "coverage": self.coverage_line(), "headline": self.headline(),
                "changes": [asdict(c) for c in self.changes],
                "speeds": [asdict(c) for c in self.speeds], "line_a": self.line_a, "line_b": self.line_b}

    def speed_lines(self) -> list[str]:
        """The line's speed and each page's that changed, in words (empty when none was measured)."""
        if self.line_a is None and self.line_b is None and not self.speeds:
            return []
        out = [f"line speed: {self.line_a if self.line_a is not None else '?'} -> "
               f"{self.line_b if self.line_b is not None else '?'} KiB/s (our helper's bytes, each run's survey)"]
        out += [f"speed {c.factor:6.2f}x {c.url}: {c.before} -> {c.after} KiB/s" for c in self.speeds]
        return out

    def not_compared(self) -> str | None:
        """Why nothing could be compared (a side measured nothing), or None."""
        for cov in (self.coverage_a, self.coverage_b):
            if cov and not cov["measured"]:
                return f"not compared: run {cov['run_id']} measured nothing ({cov['status']})"
        return None

    def coverage_line(self) -> str:
        """What each side measured and how much was compared: "no change" is only ever about that part."""
        sides = []
        for cov in (self.coverage_a, self.coverage_b):
            if cov:
                whole = "" if cov["measured"] == cov["listed"] else " (part of its list)" if cov["measured"] else ""
                sides.append(f"run {cov['run_id']} measured {cov['measured']}/{cov['listed']} URLs "
                             f"({cov['status']}){whole}")
        extra = [f"{self.only_in_a} only before" if self.only_in_a else "",
                 f"{self.only_in_b} only after" if self.only_in_b else ""]
        said = ", ".join(x for x in extra if x)
        return "; ".join(sides) + f"; {self.compared} compared" + (f" ({said})" if said else "")

    def headline(self) -> str:
        """The counts of changes, or why there are none: never "no change" for a gap or a change of method."""
        why = self.not_compared()
        if why:
            return why
        said = ", ".join(f"{n} {kind}" for kind, n in self.counts().items())
        if self.method_changes:
            said = (said + "; " if said else "") + f"method changed ({', '.join(self.method_changes)})"
        gaps = [f"{self.only_in_a} measured only before" if self.only_in_a else "",
                f"{self.only_in_b} only after" if self.only_in_b else ""]
        gap = "; ".join(g for g in gaps if g)
        return (said or "no change") + (f" ({gap})" if gap else "")


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


def _coverage(run: dict[str, Any], measured: int) -> dict[str, Any]:
    return {"run_id": run["id"], "status": run["status"], "listed": run["url_count"] or 0, "measured": measured}


def _with_method(verdicts: dict[str, dict[str, Any]], run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    k = method.key(method.of_run(run))
    return {u: {**v, "method": k} for u, v in verdicts.items()}


def _pair(a: dict[str, Any], b: dict[str, Any], network_a: str, network_b: str, before: dict[str, dict[str, Any]],
          va: dict[str, dict[str, Any]], vb: dict[str, dict[str, Any]], across_methods: bool,
          methods: dict[int, dict[str, Any]]) -> RunDiff:
    ma, mb = methods[a["id"]], methods[b["id"]]
    diff = RunDiff(run_a=a["id"], run_b=b["id"], network_a=network_a, network_b=network_b,
                   only_in_a=len(va.keys() - vb.keys()), only_in_b=len(vb.keys() - before.keys()),
                   coverage_a=_coverage(a, len(va)), coverage_b=_coverage(b, len(vb)),
                   compared=len(before.keys() & vb.keys()), method_a=method.brief(ma), method_b=method.brief(mb),
                   method_changes=method.differences(ma, mb))
    diff.changes = _changes(before, _with_method(vb, b), across_methods)
    return diff


def compare_runs(db: sqlite_utils.Database, run_a: int, run_b: int, *, across_networks: bool = False,
                 across_methods: bool = False) -> RunDiff:
    ra, rb = queries.run(db, run_a), queries.run(db, run_b)
    na, nb = network_of(ra), network_of(rb)
    if na != nb and not across_networks:
        raise DiffError(f"run {run_a} is from {na} and run {run_b} from {nb}: different networks see different "
                        "censors (pass --across-networks to compare anyway)")
    va, vb = queries.verdicts(db, run_a), queries.verdicts(db, run_b)
    methods = {r["id"]: method.of_run(r) for r in (ra, rb)}
    diff = _pair(ra, rb, na, nb, _with_method(va, ra), va, vb, across_methods, methods)
    diff.speeds = speed_changes(queries.page_speeds(db, run_a), queries.page_speeds(db, run_b))
    diff.line_a, diff.line_b = _kib(queries.line_speed(ra)), _kib(queries.line_speed(rb))
    return diff


def _changes(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]],
             across_methods: bool = False) -> list[Change]:
    out = []
    for url in sorted(before.keys() & after.keys()):
        kind = classify(before[url], after[url])
        if kind and not across_methods and before[url].get("method") != after[url].get("method"):
            kind = "our-method-changed"  # the runs measured differently: the change may be ours, not the censor's
        if kind:
            a, b = before[url], after[url]
            earlier = f" (run {a['run_id']})" if "run_id" in a and a.get("carried") else ""
            out.append(Change(url=url, kind=kind, before=f"{a['status']} {a['detail']}{earlier}",
                              after=f"{b['status']} {b['detail']}"))
    return out


def history(db: sqlite_utils.Database, since: str | None, *, across_methods: bool = False) -> dict[str, dict[str, Any]]:
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
        # Verdicts are kept as tuples (status, layer, detail, fingerprint) and only changed ones become dicts: a
        # year of runs is close to a million verdicts.
        known: dict[str, tuple[tuple[Any, ...], int, str]] = {}  # url -> (verdict, its run, that run's method)
        methods = {r["id"]: method.of_run(r) for r in rs}
        keys = {rid: method.key(m) for rid, m in methods.items()}
        vb: dict[str, tuple[Any, ...]] | None = None
        sb: dict[str, float] | None = None  # page speeds, each run's read once too
        for a, b in itertools.pairwise(rs):
            va = vb if vb is not None else queries.verdict_rows(db, a["id"])  # each run's verdicts read once
            known.update((u, (v, a["id"], keys[a["id"]])) for u, v in va.items())
            vb = queries.verdict_rows(db, b["id"])
            ma, mb = methods[a["id"]], methods[b["id"]]
            diff = RunDiff(run_a=a["id"], run_b=b["id"], network_a=network, network_b=network,
                           only_in_a=len(va.keys() - vb.keys()), only_in_b=len(vb.keys() - known.keys()),
                           coverage_a=_coverage(a, len(va)), coverage_b=_coverage(b, len(vb)),
                           compared=len(known.keys() & vb.keys()), method_a=method.brief(ma),
                           method_b=method.brief(mb), method_changes=method.differences(ma, mb))
            changed = sorted(u for u, v in vb.items() if u in known and known[u][0] != v)
            before = {u: {**dict(zip(VERDICT_KEYS, known[u][0], strict=True)), "run_id": known[u][1],
                          "carried": known[u][1] != a["id"], "method": known[u][2]} for u in changed}
            after = {u: {**dict(zip(VERDICT_KEYS, vb[u], strict=True)), "method": keys[b["id"]]} for u in changed}
            diff.changes = _changes(before, after, across_methods)
            sa = sb if sb is not None else queries.page_speeds(db, a["id"])
            sb = queries.page_speeds(db, b["id"])
            diff.speeds = speed_changes(sa, sb)
            diff.line_a, diff.line_b = _kib(queries.line_speed(a)), _kib(queries.line_speed(b))
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
