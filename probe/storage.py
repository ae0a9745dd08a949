"""The only module that speaks sqlite-utils: schema (as Migrations), writing runs, reading them back.

Observations are stored one table per step, one row per record, so they can be queried (and opened in
Datasette) and rebuilt into the very records analysis consumes: `probe reanalyze` needs nothing else.
Bodies are kept apart, compressed and de-duplicated by sha256. The probe's own IP is never stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from .models import ControlResult, DnsQuery, HttpHop, Observations, Target, TcpConnect, TlsHandshake, Verdict
from .targets import normalise

migrations = Migrations("probe")

STEP_TABLES: dict[str, type] = {
    "dns_queries": DnsQuery,
    "tcp_connects": TcpConnect,
    "tls_handshakes": TlsHandshake,
    "http_hops": HttpHop,
    "control_results": ControlResult,
}
_NOT_STORED = {"body"}  # HttpHop.body lives in `bodies`


def _json_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if str(f.type).startswith(("tuple", "dict"))}


_JSON = {cls: _json_fields(cls) for cls in STEP_TABLES.values()}


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.table("runs").create({
        "id": int, "started": str, "finished": str, "status": str, "options": str, "software_version": str,
        "rules_version": str, "url_count": int, "vantage_asn": int, "vantage_network": str,
        "vantage_country": str, "resolvers": str,
    }, pk="id")
    db.table("run_targets").create({"run_id": int, "position": int, "url": str, "category": str, "source": str},
                             pk=("run_id", "position"), foreign_keys=[("run_id", "runs", "id")])
    db.table("measurements").create({
        "id": int, "run_id": int, "url": str, "hostname": str, "category": str, "status": str, "layer": str,
        "detail": str, "fingerprint": str, "control": str, "rule": str, "rules_version": str, "evidence": str,
        "runtime_s": float, "started": str, "bogons": str,
    }, pk="id", foreign_keys=[("run_id", "runs", "id")])
    m = db.table("measurements")
    m.create_index(["run_id", "url"], unique=True)
    m.create_index(["url", "run_id"])
    m.create_index(["run_id", "status"])
    m.create_index(["hostname"])
    # Built from the record types: a field added later needs its own migration (see _add_column).
    for name, cls in STEP_TABLES.items():
        cols: dict[str, Any] = {"id": int, "measurement_id": int}
        for f in dataclasses.fields(cls):
            if f.name in _NOT_STORED:
                continue
            t = str(f.type)
            cols[f.name] = (float if t == "float" else int if t.startswith(("int", "bool")) else str)
        db.table(name).create(cols, pk="id", foreign_keys=[("measurement_id", "measurements", "id")])
        db.table(name).create_index(["measurement_id"])
    db.table("bodies").create({"sha256": str, "length": int, "data": bytes}, pk="sha256")


@migrations()
def m002_vantage_failure(db: sqlite_utils.Database) -> None:
    db.table("runs").add_column("vantage_failure", str)


@migrations()
def m003_claims(db: sqlite_utils.Database) -> None:
    """Regulators' claims and, when published, their items (see research/claims.py)."""
    db.table("claims").create({"id": int, "key": str, "authority": str, "date": str, "claimed_count": int,
                               "covers": str, "breakdown": str, "source": str, "source_url": str, "notes": str},
                              pk="id")
    db.table("claims").create_index(["key"], unique=True)
    db.table("claim_items").create({"claim_id": int, "url": str, "kind": str, "date_published": str,
                                    "authority": str}, foreign_keys=[("claim_id", "claims", "id")])
    db.table("claim_items").create_index(["url"])


def _add_column(db: sqlite_utils.Database, table: str, column: str, kind: type) -> None:
    """m001 builds step tables from today's records, so a fresh database may have the column already."""
    if column not in db.table(table).columns_dict:
        db.table(table).add_column(column, kind)


@migrations()
def m004_tls_first_failure(db: sqlite_utils.Database) -> None:
    _add_column(db, "tls_handshakes", "first_failure", str)


@migrations()
def m005_paths_and_steps(db: sqlite_utils.Database) -> None:
    """Rules 2026.11.2: several HTTP chains per URL, the step a hop failed at, retransmissions, local routes."""
    _add_column(db, "http_hops", "chain", str)
    _add_column(db, "http_hops", "failed_step", str)
    _add_column(db, "dns_queries", "retransmits", int)
    _add_column(db, "tcp_connects", "no_local_route", int)


def set_vantage(db: sqlite_utils.Database, run_id: int, asn: int | None, network: str | None,
                country: str | None, failure: str | None) -> None:
    with db.atomic():
        db.table("runs").update(run_id, {"vantage_asn": asn, "vantage_network": network, "vantage_country": country,
                                         "vantage_failure": failure})


def open_db(path: str | Path) -> sqlite_utils.Database:
    """Open (creating if needed) and migrate; WAL so readers never block the writer and a kill is safe."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(path)
    db.conn.execute("PRAGMA busy_timeout = 10000")
    if str(path) != ":memory:":
        db.enable_wal()
        db.conn.execute("PRAGMA synchronous = NORMAL")
    db.conn.execute("PRAGMA foreign_keys = ON")
    migrations.apply(db)
    return db


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def create_run(db: sqlite_utils.Database, *, options: dict[str, Any], software_version: str,
               rules_version: str, targets: list[Target], resolvers: list[str]) -> int:
    with db.atomic():
        db.table("runs").insert({
            "started": now(), "status": "running", "options": json.dumps(options, sort_keys=True),
            "software_version": software_version, "rules_version": rules_version, "url_count": len(targets),
            "resolvers": json.dumps(resolvers),
        })
        run_id = int(db.execute("select last_insert_rowid()").fetchone()[0])
        db.table("run_targets").insert_all(
            {"run_id": run_id, "position": i, "url": t.url, "category": t.category, "source": t.source}
            for i, t in enumerate(targets)
        )
    return run_id


def finish_run(db: sqlite_utils.Database, run_id: int, status: str) -> None:
    with db.atomic():
        db.table("runs").update(run_id, {"finished": now(), "status": status})


def _row(obj: Any, measurement_id: int) -> dict[str, Any]:
    row: dict[str, Any] = {"measurement_id": measurement_id}
    json_fields = _JSON[type(obj)]
    for f in dataclasses.fields(obj):
        if f.name in _NOT_STORED:
            continue
        v = getattr(obj, f.name)
        row[f.name] = json.dumps(v) if f.name in json_fields else v
    return row


def write_measurement(db: sqlite_utils.Database, run_id: int, obs: Observations, verdict: Verdict,
                      rules_version: str, keep_body: bool) -> int:
    """Write one URL's verdict and observations. The caller wraps calls in `db.atomic()`."""
    return write_measurements(db, run_id, [(obs, verdict, keep_body)], rules_version)[0]


_MEASUREMENT_COLUMNS = ("run_id", "url", "hostname", "category", "status", "layer", "detail", "fingerprint",
                        "control", "rule", "rules_version", "evidence", "runtime_s", "started", "bogons")


def write_measurements(db: sqlite_utils.Database, run_id: int,
                       batch: Iterable[tuple[Observations, Verdict, bool]], rules_version: str) -> list[int]:
    """Write URLs' verdicts and observations (each with keep_body); return their measurement ids.

    One statement per table for the whole batch, not one per record: the writer of a run commits a batch every
    fraction of a second, and per-record inserts cost more CPU than measuring. The caller wraps the call in
    `db.atomic()`.
    """
    conn = db.conn
    ids: list[int] = []
    rows: dict[str, list[dict[str, Any]]] = {table: [] for table in STEP_TABLES}
    bodies: dict[str, bytes] = {}
    insert = (f"insert into measurements ({', '.join(_MEASUREMENT_COLUMNS)}) "
              f"values ({', '.join('?' * len(_MEASUREMENT_COLUMNS))})")
    for obs, verdict, keep_body in batch:
        t = obs.target
        mid = int(conn.execute(insert, (
            run_id, t.url, t.hostname, t.category, verdict.status, verdict.layer, verdict.detail,
            verdict.fingerprint, verdict.control, verdict.rule, rules_version, verdict.evidence, obs.runtime_s,
            obs.started, json.dumps(obs.bogons))).lastrowid or 0)
        ids.append(mid)
        rows["dns_queries"] += (_row(r, mid) for r in (*obs.dns, *obs.control_dns))
        rows["tcp_connects"] += (_row(r, mid) for r in obs.tcp)
        rows["tls_handshakes"] += (_row(r, mid) for r in obs.tls)
        rows["http_hops"] += (_row(r, mid) for r in obs.http)
        if obs.control:
            rows["control_results"].append(_row(obs.control, mid))
        if keep_body:
            bodies.update((hop.body_sha256, hop.body) for hop in obs.http if hop.body and hop.body_sha256)
    for table, table_rows in rows.items():
        if table_rows:
            columns = list(table_rows[0])  # one dataclass per table: every row has the same keys
            conn.executemany(
                f"insert into [{table}] ({', '.join(f'[{c}]' for c in columns)}) "
                f"values ({', '.join('?' * len(columns))})", [tuple(r[c] for c in columns) for r in table_rows])
    if bodies:
        conn.executemany("insert or ignore into bodies (sha256, length, data) values (?, ?, ?)",
                         [(sha, len(body), zlib.compress(body, 6)) for sha, body in bodies.items()])
    return ids


def _record(cls: type, row: dict[str, Any]) -> Any:
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    for k, v in row.items():
        if k not in names:
            continue
        if k in _JSON[cls] and isinstance(v, str):
            v = json.loads(v)
            if isinstance(v, list):
                v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        elif k in ("control", "decoy", "body_truncated", "no_local_route") and v is not None:
            v = bool(v)
        if v is None and k in _DEFAULT_WHEN_NULL:
            continue  # a column added by a later migration: older rows have NULL, the record its default
        kwargs[k] = v
    return cls(**kwargs)


_DEFAULT_WHEN_NULL = {"chain", "retransmits", "no_local_route"}


def load_observations(db: sqlite_utils.Database, measurement: dict[str, Any]) -> Observations:
    """Rebuild what analysis saw for one stored measurement."""
    mid = measurement["id"]
    step = {name: [_record(cls, r) for r in db.table(name).rows_where("measurement_id = ?", [mid], order_by="id")]
            for name, cls in STEP_TABLES.items()}
    hops = []
    for hop in step["http_hops"]:
        body = db.execute("select data from bodies where sha256 = ?", [hop.body_sha256]).fetchone()
        hops.append(dataclasses.replace(hop, body=zlib.decompress(body[0]) if body else b""))
    target = _target_of(measurement)
    dns = step["dns_queries"]
    return Observations(
        target=target,
        dns=tuple(q for q in dns if not q.control),
        control_dns=tuple(q for q in dns if q.control),
        tcp=tuple(step["tcp_connects"]),
        tls=tuple(step["tls_handshakes"]),
        http=tuple(hops),
        control=step["control_results"][0] if step["control_results"] else None,
        bogons=tuple(json.loads(measurement.get("bogons") or "[]")),
        started=measurement.get("started") or "",
        runtime_s=measurement.get("runtime_s") or 0.0,
    )


def _target_of(m: dict[str, Any]) -> Target:
    return dataclasses.replace(normalise(m["url"]), category=m.get("category") or "")


def measurements(db: sqlite_utils.Database, run_id: int | None = None) -> Iterator[dict[str, Any]]:
    where, args = ("run_id = ?", [run_id]) if run_id is not None else (None, [])
    yield from db.table("measurements").rows_where(where, args, order_by="id")


def update_verdict(db: sqlite_utils.Database, measurement_id: int, verdict: Verdict, rules_version: str) -> None:
    db.table("measurements").update(measurement_id, {
        "status": verdict.status, "layer": verdict.layer, "detail": verdict.detail,
        "fingerprint": verdict.fingerprint, "control": verdict.control, "rule": verdict.rule,
        "rules_version": rules_version, "evidence": verdict.evidence,
    })


def latest_run_id(db: sqlite_utils.Database) -> int | None:
    row = db.execute("select max(id) from runs").fetchone()
    return row[0] if row and row[0] is not None else None


def measured_urls(db: sqlite_utils.Database, run_id: int) -> set[str]:
    return {r[0] for r in db.execute("select url from measurements where run_id = ?", [run_id])}


def resumable_run(db: sqlite_utils.Database, run_id: int | None = None) -> dict[str, Any] | None:
    """The run to resume: the one named, or the latest that did not finish."""
    if run_id is not None:
        rows = list(db.table("runs").rows_where("id = ?", [run_id]))
    else:
        rows = list(db.table("runs").rows_where("status in ('running', 'interrupted', 'partial', 'disk-full')",
                                                order_by="id desc", limit=1))
    return rows[0] if rows else None


def remaining_targets(db: sqlite_utils.Database, run_id: int) -> list[Target]:
    """The run's list, in its order, less what is already measured."""
    done = measured_urls(db, run_id)
    out = []
    for r in db.table("run_targets").rows_where("run_id = ?", [run_id], order_by="position"):
        if r["url"] not in done:
            out.append(dataclasses.replace(normalise(r["url"]), category=r["category"] or "", source=r["source"] or ""))
    return out


def reopen_run(db: sqlite_utils.Database, run_id: int) -> None:
    with db.atomic():
        db.table("runs").update(run_id, {"status": "running", "finished": None})
