"""How the research outputs read the database: runs, verdicts and claims, with the filters users give checked.

One module so that diff, claims, report and export agree on what "a run", "since DATE" and "the latest verdict
of a URL on a network" mean, and so that a filter that matches nothing because it is wrong (`--run 99`,
`--since garbage`) is an error naming the value rather than an empty answer.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import sqlite_utils

from ..analysis.throughput import MIN_BODY, rate
from ..measure import method

SINCE_FORMS = "YYYY-MM-DD, or YYYY-MM-DDTHH:MM[:SS] with an optional UTC offset (default UTC)"


class QueryError(ValueError):
    """A filter that names nothing: a run that does not exist, a date that does not parse, a claim not recorded."""


def parse_since(text: str) -> str:
    """A date or date and time as the UTC ISO text runs are stored with, so that it compares as text."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise QueryError(f"{text!r} is not a date: use {SINCE_FORMS}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")


def network_of(run: dict[str, Any]) -> str:
    """The network a run measured from: 'AS<n> <name>', the unit that reports compare within."""
    if run.get("vantage_asn"):
        return f"AS{run['vantage_asn']} {run.get('vantage_network') or ''}".strip()
    return "unknown network"


def run(db: sqlite_utils.Database, run_id: int) -> dict[str, Any]:
    rows = list(db.query("select * from runs where id = ?", [run_id]))
    if not rows:
        raise QueryError(f"no run {run_id} in this database ({_run_range(db)})")
    return rows[0]


def _run_range(db: sqlite_utils.Database) -> str:
    low, high, n = db.execute("select min(id), max(id), count(*) from runs").fetchone()
    if not n:
        return "it has no run yet"
    return f"run {low} is the only one" if n == 1 else f"{n} runs, ids {low} to {high}"


def latest_run(db: sqlite_utils.Database) -> dict[str, Any] | None:
    rows = list(db.query("select * from runs order by id desc limit 1"))
    return rows[0] if rows else None


def runs(db: sqlite_utils.Database, *, run_id: int | None = None, since: str | None = None,
         finished_only: bool = False) -> list[dict[str, Any]]:
    """The runs a command is about, oldest first: one run (checked), those started since a parsed date, or all.
    `finished_only` leaves out runs still going (or killed before finishing): history compares whole runs."""
    if run_id is not None:
        return [run(db, run_id)]
    where = ["started >= ?"]
    args: list[Any] = [since or ""]
    if finished_only:
        where.append("status != 'running'")
    return list(db.query(f"select * from runs where {' and '.join(where)} order by id", args))


def verdicts(db: sqlite_utils.Database, run_id: int) -> dict[str, dict[str, Any]]:
    """A run's verdict per URL."""
    query = "select url, category, status, layer, detail, fingerprint from measurements where run_id = ? order by id"
    return {r["url"]: r for r in db.query(query, [run_id])}


def url_history(db: sqlite_utils.Database, *, urls: list[str] | None, category: str | None,
                since: str | None) -> list[dict[str, Any]]:
    """The verdicts of these URLs (or of a category) in run order: what timelines are made of. Uses the
    (url, run_id) index for URLs; a category is read from the runs since `since` only."""
    cols = "m.run_id, m.url, m.category, m.status, m.layer, m.detail, m.fingerprint, m.rules_version"
    out: list[dict[str, Any]] = []
    if urls is not None:
        for i in range(0, len(urls), 500):
            chunk = urls[i:i + 500]
            out += db.query(f"select {cols} from measurements m join runs r on r.id = m.run_id where m.url in "
                            f"({','.join('?' * len(chunk))}) and r.started >= ? order by m.run_id, m.id",
                            [*chunk, since or ""])
        out.sort(key=lambda m: m["run_id"])
        return out
    return list(db.query(f"select {cols} from runs r join measurements m on m.run_id = r.id where r.started >= ? "
                         "and coalesce(m.category, '') = ? order by m.run_id, m.id", [since or "", category or ""]))


def measured_counts(db: sqlite_utils.Database, run_ids: list[int]) -> dict[int, int]:
    """Stored verdicts per run (a run absent here measured nothing)."""
    out: dict[int, int] = {}
    for i in range(0, len(run_ids), 500):
        chunk = run_ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        out.update(db.execute(f"select run_id, count(*) from measurements where run_id in ({marks}) group by run_id",
                              chunk).fetchall())
    return out


def verdict_rows(db: sqlite_utils.Database, run_id: int) -> dict[str, tuple[Any, ...]]:
    """A run's verdict per URL as (status, layer, detail, fingerprint): `verdicts` for many runs, without a dict
    per row."""
    return {r[0]: r[1:] for r in db.execute("select url, status, layer, detail, fingerprint from measurements "
                                            "where run_id = ? order by id", [run_id])}


def measurements(db: sqlite_utils.Database, runs_: Iterable[dict[str, Any]],
                 statuses: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The measurements of these runs in order, each with its run's start time and network."""
    by_id = {r["id"]: r for r in runs_}
    if not by_id:
        return []
    marks = ",".join("?" * len(by_id))
    args: list[Any] = list(by_id)
    where = f"run_id in ({marks})"
    if statuses is not None:
        wanted = list(statuses)
        where += f" and status in ({','.join('?' * len(wanted))})"
        args += wanted
    out = []
    for m in db.query(f"select * from measurements where {where} order by run_id, id", args):
        r = by_id[m["run_id"]]
        out.append(m | {"run_started": r["started"], "network": network_of(r)})
    return out


def latest_per_url(db: sqlite_utils.Database, runs_: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each URL's latest verdict on each network among these runs: what is true now, counted once per URL.

    Found in SQL, per network (the latest run that measured the URL, through the (run_id, url) index), so a year of
    runs is not read row by row."""
    by_network: dict[str, list[dict[str, Any]]] = {}
    for r in runs_:
        by_network.setdefault(network_of(r), []).append(r)
    out: list[dict[str, Any]] = []
    for network, rs in by_network.items():
        by_id = {r["id"]: r for r in rs}
        ids = list(by_id)
        latest: dict[str, int] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for url, run_id in db.execute(f"select url, max(run_id) from measurements where run_id in "
                                          f"({','.join('?' * len(chunk))}) group by url", chunk):
                latest[url] = max(run_id, latest.get(url, run_id))
        wanted: dict[int, set[str]] = {}
        for url, run_id in latest.items():
            wanted.setdefault(run_id, set()).add(url)
        for run_id, urls in wanted.items():
            r = by_id[run_id]
            extra = {"run_started": r["started"], "network": network}
            out += (m | extra for m in db.query("select * from measurements where run_id = ?", [run_id])
                    if m["url"] in urls)
    return sorted(out, key=lambda m: (m["network"], m["url"]))


def interference_per_run(db: sqlite_utils.Database, run_ids: list[int]) -> dict[int, dict[str, int]]:
    """Blocked and anomalous verdicts per run (through the (run_id, status) index)."""
    out: dict[int, dict[str, int]] = {}
    for i in range(0, len(run_ids), 500):
        chunk = run_ids[i:i + 500]
        for run_id, status, n in db.execute(
                f"select run_id, status, count(*) from measurements where run_id in ({','.join('?' * len(chunk))}) "
                "and status in ('blocked', 'anomaly') group by run_id, status", chunk):
            out.setdefault(run_id, {})[status] = n
    return out


def find_claim(db: sqlite_utils.Database, key: str) -> dict[str, Any] | None:
    return next(db.query("select * from claims where key = ?", [key]), None)


def claim(db: sqlite_utils.Database, key: str) -> dict[str, Any]:
    row = find_claim(db, key)
    if row is None:
        raise QueryError(f"no claim {key!r} (see `probe claims list`)")
    return row


def claims(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(db.query("select * from claims order by date, key"))


def claim_items(db: sqlite_utils.Database, claim_id: int) -> list[dict[str, Any]]:
    return list(db.query("select * from claim_items where claim_id = ? order by rowid", [claim_id]))


def categories(db: sqlite_utils.Database) -> set[str]:
    return {r[0] for r in db.execute("select distinct coalesce(category, '') from measurements")}


def run_summaries(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every run with its network, stored verdicts by status and duration (None while it has not finished)."""
    counts: dict[int, dict[str, int]] = {}
    for run_id, status, n in db.execute("select run_id, status, count(*) from measurements group by run_id, status"):
        counts.setdefault(run_id, {})[status] = n
    # Measurements where a failure did not repeat on a second try: never evidence, but a sign of a lossy line.
    flaky = dict(db.execute("select run_id, sum(coalesce(flaky, 0)) from measurements group by run_id").fetchall())
    out = []
    for r in db.query("select * from runs order by id"):
        duration = None
        if r["started"] and r["finished"]:
            try:
                duration = (dt.datetime.fromisoformat(r["finished"]) - dt.datetime.fromisoformat(r["started"]))
            except ValueError:
                duration = None
        how = method.of_run(r)
        out.append({"id": r["id"], "started": r["started"], "finished": r["finished"], "status": r["status"],
                    "network": network_of(r), "country": r["vantage_country"], "urls": r["url_count"],
                    "counts": counts.get(r["id"], {}), "flaky": flaky.get(r["id"]) or 0,
                    "netview": json.loads(r.get("network") or "null"),
                    "duration_s": None if duration is None else round(duration.total_seconds(), 1),
                    "rules_version": how["rules"], "method_key": method.key(how), "method": method.brief(how)})
    return out


def require_measured(db: sqlite_utils.Database, run_id: int, path: Any) -> None:
    """A run with no stored verdict is an error that says why (NothingMeasured, exit 7): an empty list is not
    "nothing blocked"."""
    from .. import storage
    from ..errors import NothingMeasured

    found = run(db, run_id)
    if storage.run_counts(db, run_id):
        return
    why = {"offline": "the network looked offline (nothing answered), so nothing was stored",
           "running": "it is still running, or was killed before storing a result",
           "interrupted": "it was interrupted before storing a result",
           "partial": "it stopped at --max-runtime before storing a result",
           "disk-full": "the disk was full",
           "captive": "a captive portal held the connection (log in first)"}.get(found["status"],
                                                                                  f"it is {found['status']}")
    resume = (f"; `probe run --resume {run_id} --db {path}` measures its {found['url_count'] or 0} URLs"
              if found["status"] in storage.RESUMABLE else "")
    raise NothingMeasured(f"run {run_id} measured nothing: {why}{resume}")


def latest_methods(db: sqlite_utils.Database, run_id: int | None, since: str | None) -> list[str]:
    """The methods (method.brief) the latest verdict of each URL comes from, among the runs `run_id`/`since` name:
    more than one means counts that mix methods."""
    runs_ = {r["id"]: r for r in runs(db, run_id=run_id, since=since)}
    used = {m["run_id"] for m in latest_per_url(db, runs_.values())}
    return sorted({method.brief(method.of_run(runs_[i])) for i in used})


def page_speeds(db: sqlite_utils.Database, run_id: int) -> dict[str, float]:
    """A run's page speed per URL, in bytes a second (analysis/throughput.py): the first fetch of the page its
    main chain ends on, for pages large enough to time (MIN_BODY); URLs without one are left out."""
    last: dict[str, tuple[str, int | None]] = {}
    for url, transfer, length in db.execute(
            "select m.url, h.transfer, h.body_length from http_hops h join measurements m on m.id = h.measurement_id"
            " where m.run_id = ? and h.chain = '' and h.transfer is not null order by h.id", [run_id]):
        last[url] = (transfer, length)  # the chain's last hop wins
    out = {}
    for url, (transfer, length) in last.items():
        speed = rate(json.loads(transfer) or {}) if (length or 0) >= MIN_BODY else None
        if speed is not None:
            out[url] = speed
    return out


def line_speed(run: dict[str, Any]) -> float | None:
    """How fast the run's line carried our helper's bytes (its latest survey, netview.line), bytes a second."""
    try:
        view = json.loads(run.get("network") or "null") or {}
    except ValueError:
        return None
    return rate(view.get("line") or {}) if isinstance(view, dict) else None
