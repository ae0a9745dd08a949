"""Timelines: the history of each URL on each network, and what was blocked on a given date.

Per URL and network, from its verdicts in run order: when it was first seen blocked, last seen reachable, blocked
since when (the current streak), how often it went in and out (flapping), and where the method (probe/measure/method.py)
or the blockpage changed. The words follow `probe/verdicts.py` and `research/diff.py`: `down` and `error` say
nothing about blocking, so they neither end nor start a streak; a run that did not measure the URL is a gap, not
a verdict; an in-or-out across a change of method is counted apart (`method_flips`), never as flapping.

`on_date` answers a regulator's claim dated D: for each item, on each network, the verdict in force at the end
of day D (the latest measured up to then), with when it was measured, or "not measured by then".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlite_utils

from ..measure import method
from . import queries

MEASURED = ("ok", "anomaly", "blocked")  # the verdicts that say something about blocking


@dataclass(slots=True, kw_only=True)
class Timeline:
    url: str
    network: str
    category: str
    runs: int = 0  # runs that measured it
    first_seen_blocked: str | None = None  # start time of the run
    last_seen_reachable: str | None = None
    blocked_since: str | None = None  # the current streak of blocked verdicts, if the latest says blocked
    latest: str = ""  # "status detail"
    latest_run: int = 0
    flaps: int = 0  # blocked <-> not blocked changes between runs of one method
    method_flips: int = 0  # the same, across a change of method: not evidence
    method_changes: list[int] = field(default_factory=list)  # runs whose method differs from the previous one's
    blockpage_changes: list[str] = field(default_factory=list)  # "run N: old -> new"
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # each run's verdict, for --json

    @property
    def flapping(self) -> bool:
        return self.flaps >= 2

    def as_dict(self, with_verdicts: bool = True) -> dict[str, Any]:
        out = asdict(self) | {"flapping": self.flapping}
        if not with_verdicts:
            out.pop("verdicts")
        return out


COLUMNS = ("url", "network", "category", "runs", "latest", "latest_run", "first_seen_blocked",
           "last_seen_reachable", "blocked_since", "flaps", "flapping", "method_flips", "method_changes",
           "blockpage_changes")


def _select(db: sqlite_utils.Database, *, urls: list[str] | None, category: str | None,
            since: str | None) -> list[dict[str, Any]]:
    rows = queries.url_history(db, urls=urls, category=category, since=since)
    if not rows:
        what = (f"URL {urls[0]}" if urls is not None and len(urls) == 1 else
                f"the {len(urls)} URLs of the list" if urls is not None else f"category {category!r}")
        raise queries.QueryError(f"no measurement of {what}" + (f" since {since}" if since else "")
                                 + " in this database")
    return rows


def timelines(db: sqlite_utils.Database, *, urls: list[str] | None = None, category: str | None = None,
              since: str | None = None) -> list[Timeline]:
    """One timeline per URL and network, sorted by network then URL."""
    runs = {r["id"]: r for r in queries.runs(db, since=since)}
    keys = {rid: method.key(method.of_run(r)) for rid, r in runs.items()}
    out: dict[tuple[str, str], Timeline] = {}
    state: dict[tuple[str, str], dict[str, Any]] = {}
    for m in _select(db, urls=urls, category=category, since=since):
        run = runs.get(m["run_id"])
        if run is None:
            continue
        network = queries.network_of(run)
        t = out.setdefault((network, m["url"]), Timeline(url=m["url"], network=network, category=m["category"] or ""))
        s = state.setdefault((network, m["url"]), {"method": None, "last": None, "fp": None})
        when = run["started"]
        t.runs += 1
        t.latest, t.latest_run = f"{m['status']} {m['detail']}", run["id"]
        t.verdicts.append({"run_id": run["id"], "started": when, "status": m["status"], "detail": m["detail"],
                           "rules_version": m["rules_version"], "method": keys[run["id"]]})
        if s["method"] is not None and keys[run["id"]] != s["method"]:
            t.method_changes.append(run["id"])
        if m["status"] in MEASURED:
            blocked = m["status"] == "blocked"
            last = s["last"]  # (blocked?, method) of the last verdict that said something
            if last is not None and last[0] != blocked:
                if last[1] == keys[run["id"]]:
                    t.flaps += 1
                else:
                    t.method_flips += 1
            if blocked:
                t.first_seen_blocked = t.first_seen_blocked or when
                if last is None or not last[0]:
                    t.blocked_since = when
                if s["fp"] is not None and m["fingerprint"] and m["fingerprint"] != s["fp"]:
                    t.blockpage_changes.append(f"run {run['id']}: {s['fp']} -> {m['fingerprint']}")
                s["fp"] = m["fingerprint"] or s["fp"]
            else:
                t.blocked_since = None
                if m["status"] == "ok":
                    t.last_seen_reachable = when
            s["last"] = (blocked, keys[run["id"]])
        s["method"] = keys[run["id"]]
    return sorted(out.values(), key=lambda t: (t.network, t.url))


def parse_day(text: str) -> str:
    """The end of day D (UTC) as stored times compare: verdicts measured on D count as in force on D."""
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise queries.QueryError(f"{text!r} is not a date: use YYYY-MM-DD") from None
    return dt.datetime.combine(day, dt.time(23, 59, 59), dt.UTC).isoformat(timespec="seconds")


def on_date(db: sqlite_utils.Database, urls: list[str], day: str) -> list[dict[str, Any]]:
    """For each URL and each network that ever measured one of them: the verdict in force at the end of `day`
    (YYYY-MM-DD): the latest measured up to then, or None (not measured by then)."""
    end = parse_day(day)
    runs = {r["id"]: r for r in queries.runs(db)}
    networks = sorted({queries.network_of(r) for r in runs.values()})
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for m in queries.url_history(db, urls=urls, category=None, since=None):
        run = runs[m["run_id"]]
        if run["started"] > end:
            continue
        found[(queries.network_of(run), m["url"])] = {"status": m["status"], "detail": m["detail"],
                                                      "run_id": run["id"], "measured": run["started"]}
    out = []
    for network in networks:  # every network, so that one that had not measured yet says so
        for url in urls:
            v = found.get((network, url))
            out.append({"url": url, "network": network, "date": day, "status": v["status"] if v else None,
                        "detail": v["detail"] if v else None, "run_id": v["run_id"] if v else None,
                        "measured": v["measured"] if v else None})
    return out
