"""The schema (as Migrations), opening databases, writing runs and reading them back.

A run's writes go through here and every module opens its databases here; no code outside this package writes
SQL (tests/test_storage_owns_sql.py): claims are written in claims.py beside this, `probe merge`'s copying in
merge.py.

Observations are stored one table per step, one row per record, so they can be queried (and opened in
Datasette) and rebuilt into the very records analysis consumes: `probe reanalyze` needs nothing else.
Bodies are kept apart, compressed and de-duplicated by sha256. The probe's own IP is never stored.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as dt
import json
import os
import sqlite3
import tempfile
import urllib.parse
import uuid
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from ..errors import DatabaseError
from ..measure.targets import normalise
from ..models import (
    ControlResult,
    DnsQuery,
    HttpHop,
    NetworkView,
    Observations,
    QuicHandshake,
    Target,
    TcpConnect,
    TlsHandshake,
    TtlProbe,
    Verdict,
)

migrations = Migrations("probe")

STEP_TABLES: dict[str, type] = {
    "dns_queries": DnsQuery,
    "tcp_connects": TcpConnect,
    "tls_handshakes": TlsHandshake,
    "http_hops": HttpHop,
    "control_results": ControlResult,
    "quic_handshakes": QuicHandshake,
    "ttl_probes": TtlProbe,  # m013_locate
}
_NOT_STORED = {"body"}  # HttpHop.body lives in `bodies`


def _json_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if str(f.type).startswith(("tuple", "dict"))}


_JSON = {cls: _json_fields(cls) for cls in STEP_TABLES.values()}


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    """The schema of the first release, written out: history must not move when the record types do."""
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
    steps: dict[str, dict[str, Any]] = {
        "dns_queries": {"resolver": str, "engine": str, "hostname": str, "query_type": str, "answers": str,
                        "cnames": str, "ttl": int, "rcode": str, "failure": str, "late_answers": str,
                        "control": int, "t0": float, "t": float},
        "tcp_connects": {"ip": str, "port": int, "origin": str, "failure": str, "t0": float, "t": float},
        "tls_handshakes": {"ip": str, "port": int, "sni": str, "decoy": int, "failure": str, "version": str,
                           "cipher": str, "alpn": str, "peer_chain": str, "t0": float, "t": float},
        "http_hops": {"url": str, "ip": str, "status": int, "headers": str, "location": str, "body_length": int,
                      "body_sha256": str, "body_truncated": int, "title": str, "failure": str, "stopped": str,
                      "t0": float, "t": float},
        "control_results": {"source": str, "failure": str, "dns_addrs": str, "dns_failure": str,
                            "tcp_connect": str, "tls_handshake": str, "http_status": int, "http_failure": str,
                            "http_title": str, "http_headers": str, "http_body_length": int,
                            "http_body_sha256": str, "t0": float, "t": float},
    }
    for name, cols in steps.items():
        db.table(name).create({"id": int, "measurement_id": int, **cols}, pk="id",
                              foreign_keys=[("measurement_id", "measurements", "id")])
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
    """Releases whose m001 was generated from the record types of the day may have the column already."""
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


# Failure names of earlier versions, in OONI's vocabulary now (failures.py). Only the unambiguous ones: an
# ECONNABORTED stored as connection_reset, or ENETDOWN as network_unreachable, cannot be told apart any more.
RENAMED_FAILURES = {"dns_server_failure": "dns_servfail_error"}
RENAMED_HELPER_DNS = {"dns_server_failure": "dns_servfail_error", "dns_name_error": "dns_nxdomain_error"}


@migrations()
def m006_ooni_failure_names(db: sqlite_utils.Database) -> None:
    """Stored failures (and the verdicts quoting them) renamed to OONI's words, so that `probe diff` does not
    see a method change where only a name changed."""
    for old, new in RENAMED_FAILURES.items():
        db.execute("update dns_queries set failure = ? where failure = ?", [new, old])
        db.execute("update measurements set detail = replace(detail, ?, ?), evidence = replace(evidence, ?, ?)"
                   " where detail like ? or evidence like ?", [old, new, old, new, f"%{old}%", f"%{old}%"])
    for old, new in RENAMED_HELPER_DNS.items():
        db.execute("update control_results set dns_failure = ? where dns_failure = ?", [new, old])


def set_network(db: sqlite_utils.Database, run_id: int, view: NetworkView) -> int:
    """Store a session's network survey (netview.py); return its id, for the measurements judged with it.
    `runs.network` keeps the run's latest, to show."""
    text = json.dumps(dataclasses.asdict(view))
    with db.atomic():
        db.execute("update runs set network = ? where id = ?", [text, run_id])
        cur = db.execute("insert into surveys (run_id, view) values (?, ?)", [run_id, text])
    return int(cur.lastrowid or 0)


def same_survey(db: sqlite_utils.Database, run_id: int, view: NetworkView) -> int:
    """The id of this survey of the run, stored once (imports and uploads bring it with every measurement)."""
    text = json.dumps(dataclasses.asdict(view))
    row = db.execute("select id from surveys where run_id = ? and view = ?", [run_id, text]).fetchone()
    return int(row[0]) if row else set_network(db, run_id, view)


def survey_text(db: sqlite_utils.Database, survey_id: int) -> str | None:
    row = db.execute("select view from surveys where id = ?", [survey_id]).fetchone()
    return row[0] if row else None


def survey(db: sqlite_utils.Database, survey_id: int) -> NetworkView | None:
    return _view(survey_text(db, survey_id))


def _view(text: str | None) -> NetworkView | None:
    """A stored survey (JSON); None for none, or an unreadable one."""
    try:
        return NetworkView.from_dict(json.loads(text) if text else None)
    except ValueError:
        return None


def line_quality(db: sqlite_utils.Database, run_id: int) -> dict[str, Any]:
    """How lossy the line was during the run, from what every URL did anyway: the share of DNS queries sent
    again (no reply within a quarter of the timeout: lost, or slow), and the measurements with a failure that a second
    try did not repeat. Said beside anomalies, so a count is read with the line it was measured on."""
    retx, queries = db.execute("select coalesce(sum(q.retransmits), 0), count(*) from dns_queries q join measurements m"
                               " on m.id = q.measurement_id where m.run_id = ? and not q.control", [run_id]).fetchone()
    flaky = db.execute("select count(*) from measurements where run_id = ? and flaky = 1", [run_id]).fetchone()[0]
    share = round(retx / queries, 4) if queries else None
    return {"queries": queries, "resent": retx, "resent_share": share, "flaky": flaky}


def network_view(db: sqlite_utils.Database, run_id: int) -> NetworkView | None:
    """The run's network survey; None for runs from before surveys (or an unreadable one)."""
    row = db.execute("select network from runs where id = ?", [run_id]).fetchone()
    return _view(row[0] if row else None)


def set_vantage(db: sqlite_utils.Database, run_id: int, asn: int | None, network: str | None,
                country: str | None, failure: str | None) -> None:
    with db.atomic():
        db.table("runs").update(run_id, {"vantage_asn": asn, "vantage_network": network, "vantage_country": country,
                                         "vantage_failure": failure})


SQLITE_MAGIC = b"SQLite format 3\x00"
NO_DATABASE_HINT = "run `probe run` first or pass --db"


def _damaged(path: Path, what: str) -> DatabaseError:
    what = " ".join(what.split())  # SQLite's reports span lines; an error is one line
    return DatabaseError(f"{path} {what}; it was left unchanged: pass --db with a probe database, or restore a "
                         f"backup (`sqlite3 {path} .recover` saves what is readable)")


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """Open without ever writing: plain read-only first; on read-only media (no -shm can be made), immutable."""
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    last: sqlite3.Error | None = None
    for suffix in ("", "&immutable=1"):
        wal = Path(f"{path}-wal")
        if suffix and wal.exists() and wal.stat().st_size > 0:
            # immutable=1 would read the file without the changes still in the WAL: say so, never hide them.
            raise DatabaseError(f"{path} has changes in {wal.name} that cannot be read where it is (read-only): "
                                "copy both files somewhere writable and open the copy") from None
        try:
            con = sqlite3.connect(uri + suffix, uri=True, check_same_thread=False)
            con.execute("select count(*) from sqlite_master").fetchone()
            return con
        except sqlite3.OperationalError as e:  # SQLITE_CANTOPEN: WAL on a read-only directory
            last = e
        except sqlite3.DatabaseError as e:  # not a database, or damaged beyond reading its schema
            raise _damaged(path, f"is not a readable SQLite database ({e})") from None
    raise DatabaseError(f"cannot open {path}: {last}") from None


def read_only_connection(path: str | Path) -> sqlite3.Connection:
    """Another connection to a database `open_existing` opened (a reader thread's), as it opened it."""
    return _connect_read_only(Path(path))


# How long a passed `PRAGMA quick_check` counts: on a year of runs it reads the whole file (3 to 11 s), so a
# run does it once a day (and `probe check` on demand), not every time; a file that fails to open is checked
# whatever the day.
CHECK_EVERY = dt.timedelta(days=1)
_CHECKED_KEY = "quick_check_passed"


def _check_due(con: sqlite3.Connection) -> bool:
    try:
        row = con.execute("select value from probe_meta where key = ?", [_CHECKED_KEY]).fetchone()
        last = dt.datetime.fromisoformat(row[0]) if row else None
    except (sqlite3.Error, ValueError, TypeError):  # no such table (older schema), or damage: check
        return True
    return last is None or dt.datetime.now(dt.UTC) - last > CHECK_EVERY


def check_database(path: Path, *, full: bool | None = None) -> bool:
    """An existing file must be an intact SQLite database before probe touches it (it is never changed here).

    The header and the schema are read every time; `PRAGMA quick_check` runs when `full`, or (None) when no
    passed check is recorded in the last day (`record_check`). Returns whether it ran (and passed)."""
    if path.is_dir():
        raise DatabaseError(f"{path} is a directory, not a database; pass --db with a file path")
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise DatabaseError(f"cannot read {path}: {e.strerror or e}") from None
    if not head:
        return False  # an empty file is an empty database, as sqlite3 sees it
    if head != SQLITE_MAGIC:
        raise _damaged(path, "is not a SQLite database")
    con = _connect_read_only(path)
    try:
        if full is None:
            full = _check_due(con)
        if not full:
            return False
        problems = [r[0] for r in con.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as e:
        raise _damaged(path, f"is damaged ({e})") from None
    finally:
        con.close()
    if problems != ["ok"]:
        raise _damaged(path, f"is damaged (quick_check: {problems[0][:120]})")
    return True


def record_check(db: sqlite_utils.Database) -> None:
    """Note that `PRAGMA quick_check` just passed (check_database), so that the next day's runs skip it."""
    with contextlib.suppress(sqlite3.Error), db.atomic():  # read-only, or busy: the next run checks again
        db.execute("insert or replace into probe_meta (key, value) values (?, ?)", [_CHECKED_KEY, now()])


def _configure(db: sqlite_utils.Database) -> None:
    db.conn.execute("PRAGMA busy_timeout = 10000")
    db.conn.execute("PRAGMA foreign_keys = ON")


def open_db(path: str | Path, *, checked: bool = False) -> sqlite_utils.Database:
    """Open for writing (creating if needed) and migrate; WAL so readers never block the writer and a kill is safe.

    An existing file is checked first (`check_database`, unless the caller just did); problems are
    `DatabaseError`s naming the path.
    """
    if str(path) == ":memory:":
        db = sqlite_utils.Database(sqlite3.connect(":memory:", check_same_thread=False))  # the run's writer thread
        _configure(db)
        migrations.apply(db)
        return db
    path = Path(path)
    passed = False
    if path.exists():
        if not checked:
            passed = check_database(path)
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatabaseError(f"cannot create a database at {path}: {e.strerror or e}") from None
    try:
        db = sqlite_utils.Database(sqlite3.connect(str(path), check_same_thread=False))
        _configure(db)
        db.enable_wal()
        db.conn.execute("PRAGMA synchronous = NORMAL")
        migrations.apply(db)
    except sqlite3.OperationalError as e:  # read-only file or directory, disk full, ...
        raise DatabaseError(f"cannot write the database {path}{_read_only_media(path)}: {e}") from None
    # SQLite may open a database it cannot write (read-only media with its -shm beside it) and fail only at the
    # first write: said now, naming it.
    if not all(os.access(p, os.W_OK) for p in (path, path.parent)):
        db.close()
        raise DatabaseError(f"cannot write the database {path}{_read_only_media(path)}: not writable")
    if passed:
        record_check(db)
    return db


def _read_only_media(path: Path) -> str:
    return " (read-only media)" if os.statvfs(path.parent).f_flag & os.ST_RDONLY else ""


def open_existing(path: str | Path) -> sqlite_utils.Database:
    """Open a database that must exist, for reading: never creates, never changes it (read-only media work).

    A database from an older release is read through a migrated temporary copy.
    """
    path = Path(path)
    if not path.exists():
        raise DatabaseError(f"no database at {path}; {NO_DATABASE_HINT}")
    check_database(path)
    db = sqlite_utils.Database(_connect_read_only(path))
    if not db.table("runs").exists():
        db.close()
        raise DatabaseError(f"{path} is a SQLite database but not probe's (no runs table); pass --db")
    if migrations.pending(db):
        db = _migrated_copy(db)
    db.conn.execute("PRAGMA busy_timeout = 10000")
    return db


def _migrated_copy(db: sqlite_utils.Database) -> sqlite_utils.Database:
    """A database from an older release, read: a temporary copy brought up to date, the original untouched
    (archives are old by definition, and often on read-only media). The copy goes when the process ends."""
    fd, name = tempfile.mkstemp(prefix="probe-read-", suffix=".db")
    os.close(fd)
    atexit.register(lambda: Path(name).unlink(missing_ok=True))
    copy = sqlite3.connect(name, check_same_thread=False)
    db.conn.backup(copy)
    db.close()
    migrated = sqlite_utils.Database(copy)
    migrations.apply(migrated)
    return migrated


def close(db: sqlite_utils.Database) -> None:
    """Fold the WAL back into the database file, so an archived copy is complete on its own, then close."""
    with contextlib.suppress(sqlite3.Error):  # read-only or busy: the WAL stays, and SQLite reads it next time
        db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def create_run(db: sqlite_utils.Database, *, options: dict[str, Any], software_version: str,
               rules_version: str, targets: list[Target], resolvers: list[str],
               method: dict[str, Any] | None = None) -> int:
    """`method` (probe/measure/method.py): how the run measures; without it, readers derive it from `options`."""
    row = {
        "started": now(), "status": "running", "options": json.dumps(options, sort_keys=True),
        "software_version": software_version, "rules_version": rules_version, "url_count": len(targets),
        "resolvers": json.dumps(resolvers),
    }
    # A database kept at an older schema (merge's and the tests' copies of old releases) has no `method` column:
    # its runs get none, and readers derive one from `options`, as for runs made before it existed.
    if method is not None and "method" in db.table("runs").columns_dict:
        row["method"] = json.dumps(method, sort_keys=True)
    with db.atomic():
        db.table("runs").insert(row)
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


def _insert(db: sqlite_utils.Database, table: str, rows: list[dict[str, Any]]) -> sqlite3.Cursor:
    """INSERT rows that share their keys; lists, tuples and dicts as JSON (as sqlite-utils stores them)."""
    columns = list(rows[0])
    sql = f"insert into [{table}] ({', '.join(f'[{c}]' for c in columns)}) values ({', '.join('?' * len(columns))})"
    values = [[json.dumps(v, default=repr, ensure_ascii=False) if isinstance(v, (list, tuple, dict)) else v
               for v in row.values()] for row in rows]
    if len(values) == 1:
        return db.conn.execute(sql, values[0])
    return db.conn.executemany(sql, values)


def write_measurement(db: sqlite_utils.Database, run_id: int, obs: Observations, verdict: Verdict,
                      rules_version: str, keep_body: bool, measurement_uuid: str | None = None,
                      survey_id: int | None = None) -> int:
    """Write one URL's verdict and observations. The caller wraps calls in `db.atomic()`. `measurement_uuid`
    keeps the identity a measurement had elsewhere (an import); without it the database gives a new one."""
    t = obs.target
    row = {
        "run_id": run_id, "url": t.url, "hostname": t.hostname, "category": t.category,
        "status": verdict.status, "layer": verdict.layer, "detail": verdict.detail,
        "fingerprint": verdict.fingerprint, "control": verdict.control, "rule": verdict.rule,
        "rules_version": rules_version, "evidence": verdict.evidence, "runtime_s": obs.runtime_s,
        "started": obs.started, "bogons": json.dumps(obs.bogons), "scope": verdict.scope,
        "flaky": int(verdict.flaky), "survey_id": survey_id, "quic": verdict.quic,
    }
    if measurement_uuid:
        row["uuid"] = measurement_uuid
    # Plain INSERTs (sqlite3 keeps them prepared): through sqlite-utils' table objects they cost more CPU than
    # measuring the URL.
    mid = int(_insert(db, "measurements", [row]).lastrowid or 0)
    groups: dict[str, Iterable[Any]] = {
        "dns_queries": (*obs.dns, *obs.control_dns),
        "tcp_connects": obs.tcp,
        "tls_handshakes": obs.tls,
        "http_hops": obs.http,
        "control_results": (obs.control,) if obs.control else (),
        "quic_handshakes": obs.quic,
        "ttl_probes": obs.locate,
    }
    for table, records in groups.items():
        rows = [_row(r, mid) for r in records]
        if rows:
            _insert(db, table, rows)
    if keep_body:
        for hop in obs.http:
            if hop.body and hop.body_sha256:
                db.execute("insert or ignore into bodies (sha256, length, data) values (?, ?, ?)",
                           [hop.body_sha256, len(hop.body), zlib.compress(hop.body, 6)])
    return mid


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


_DEFAULT_WHEN_NULL = {"chain", "retransmits", "attempt", "attempts", "quic_handshake", "transfer",
                      "http_transfer"}


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
        quic=tuple(step["quic_handshakes"]),
        locate=tuple(step["ttl_probes"]),
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
        "rules_version": rules_version, "evidence": verdict.evidence, "scope": verdict.scope,
        "flaky": int(verdict.flaky), "quic": verdict.quic,
    })


def latest_run_id(db: sqlite_utils.Database) -> int | None:
    row = db.execute("select max(id) from runs").fetchone()
    return row[0] if row and row[0] is not None else None


def measured_urls(db: sqlite_utils.Database, run_id: int) -> set[str]:
    return {r[0] for r in db.execute("select url from measurements where run_id = ?", [run_id])}


# A run in one of these states has URLs left to measure (`offline`: the last session could not reach the network).
RESUMABLE = ("running", "interrupted", "partial", "disk-full", "offline", "captive")


def resumable_run(db: sqlite_utils.Database, run_id: int | None = None) -> dict[str, Any] | None:
    """The run to resume: the one named, or the latest that did not finish."""
    if run_id is not None:
        rows = list(db.table("runs").rows_where("id = ?", [run_id]))
    else:
        rows = list(db.table("runs").rows_where(f"status in ({', '.join(map(repr, RESUMABLE))})",
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


def run_row(db: sqlite_utils.Database, run_id: int) -> dict[str, Any] | None:
    return next(db.table("runs").rows_where("id = ?", [run_id]), None)


def run_counts(db: sqlite_utils.Database, run_id: int) -> dict[str, int]:
    """Stored verdicts of a run, by status."""
    return dict(db.execute("select status, count(*) from measurements where run_id = ? group by status",
                           [run_id]).fetchall())


VERDICT_COLUMNS = ("run_id", "url", "category", "status", "layer", "detail", "fingerprint", "control", "runtime_s",
                   "rule", "evidence", "scope", "flaky", "quic")


def verdicts(db: sqlite_utils.Database, measurement_ids: list[int]) -> list[dict[str, Any]]:
    """The stored verdicts of these measurements, in the order given (what `probe run --json` prints)."""
    cols = ", ".join(("id", *VERDICT_COLUMNS))
    by_id: dict[int, dict[str, Any]] = {}
    for i in range(0, len(measurement_ids), 500):  # under SQLite's limit on bound parameters
        chunk = measurement_ids[i:i + 500]
        cur = db.execute(f"select {cols} from measurements where id in ({', '.join('?' * len(chunk))})", chunk)
        by_id.update((row[0], dict(zip(VERDICT_COLUMNS, row[1:], strict=True))) for row in cur.fetchall())
    return [by_id[i] for i in measurement_ids]


# A random version-4 UUID in SQL, so that every writer (this module, imports, a merge, a researcher's own
# INSERT) gets one without code of its own: 8-4-4-4-12 hex with the version nibble 4 and the variant 8..b.
_SQL_UUID4 = ("lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' "
              "|| substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' "
              "|| hex(randomblob(6)))")
UUID_NAMESPACE = uuid.UUID("5f0c6a63-4f3e-4d2b-9a55-3b1f2f0d7c11")  # ours, for UUIDs derived from old rows


def _legacy_run_uuid(run: dict[str, Any], first: tuple[Any, ...] | None) -> str:
    """Derived from what never changes once written (the row as created and its first measurement), so two
    copies of one old database, migrated apart, still agree and merging both adds nothing twice."""
    key = [run["id"], run["started"], run["options"], run["software_version"], run["resolvers"], first]
    return str(uuid.uuid5(UUID_NAMESPACE, json.dumps(key, default=str)))


@migrations()
def m007_uuids(db: sqlite_utils.Database) -> None:
    """Every run and measurement gets a UUID that export, import and merge keep (see research/merge.py).
    (Numbered after m005/m006, written at the same time on another branch; steps apply in file order.)"""
    for table in ("runs", "measurements"):
        _add_column(db, table, "uuid", str)
    for run in db.query("select id, started, options, software_version, resolvers from runs where uuid is null"):
        first = db.execute("select url, started, runtime_s from measurements where run_id = ? order by id limit 1",
                           [run["id"]]).fetchone()
        run_uuid = _legacy_run_uuid(run, tuple(first) if first else None)
        db.execute("update runs set uuid = ? where id = ?", [run_uuid, run["id"]])
        for mid, url in db.execute("select id, url from measurements where run_id = ?", [run["id"]]).fetchall():
            db.execute("update measurements set uuid = ? where id = ?",
                       [str(uuid.uuid5(uuid.UUID(run_uuid), url)), mid])
    db.execute(f"update measurements set uuid = {_SQL_UUID4} where uuid is null")  # rows of no run, if any
    for table in ("runs", "measurements"):
        db.table(table).create_index(["uuid"], unique=True)
        db.execute(f"create trigger {table}_uuid after insert on {table} when new.uuid is null begin "
                   f"update {table} set uuid = {_SQL_UUID4} where rowid = new.rowid; end")


def has_measurement(db: sqlite_utils.Database, measurement_uuid: str) -> bool:
    return db.execute("select 1 from measurements where uuid = ?", [measurement_uuid]).fetchone() is not None


@migrations()
def m008_attempts(db: sqlite_utils.Database) -> None:
    """Rules 2026.12.1: every try of a connect, handshake and request kept; the network's view per run; the
    scope of the signature a verdict rests on; flaky measurements counted apart."""
    _add_column(db, "tcp_connects", "attempt", int)
    _add_column(db, "tls_handshakes", "attempt", int)
    _add_column(db, "http_hops", "attempts", str)
    _add_column(db, "runs", "network", str)
    _add_column(db, "measurements", "scope", str)
    _add_column(db, "measurements", "flaky", int)
    # Each session surveys the network; a measurement names the survey it was judged with (a resumed run may
    # have been measured on two networks), so reanalysis judges it with the same one.
    if "surveys" not in db.table_names():
        db.table("surveys").create({"id": int, "run_id": int, "view": str}, pk="id",
                                   foreign_keys=[("run_id", "runs", "id")])
    _add_column(db, "measurements", "survey_id", int)


# The collector's own tables (`probe collector`, probe/collector/): the tokens researchers issue and the uploads
# each one made. A migration set of its own, applied only to a collector's database: volunteers' databases,
# `probe merge` (which copies the "probe" set's tables by name) and the exports never see them.
collector_migrations = Migrations("probe-collector")


@collector_migrations()
def c001_tokens_and_uploads(db: sqlite_utils.Database) -> None:
    """Tokens are kept as SHA-256 digests (they are 256 random bits: no salt or slow hash needed); an upload
    row names the token, never the address it came from."""
    db.table("collector_tokens").create({"name": str, "sha256": str, "created": str, "revoked": str}, pk="name")
    db.table("collector_tokens").create_index(["sha256"], unique=True)
    db.table("collector_uploads").create({"id": int, "token": str, "run_uuid": str, "received": str, "stored": int,
                                          "duplicates": int}, pk="id")
    db.table("collector_uploads").create_index(["run_uuid"])


def open_collector(path: str | Path) -> sqlite_utils.Database:
    """A collector's database: probe's schema plus the collector's tables; every commit reaches the disk before
    it returns (synchronous FULL), so an acknowledged upload survives a power cut, not only a killed process."""
    db = open_db(path)
    collector_migrations.apply(db)
    db.conn.execute("PRAGMA synchronous = FULL")
    return db


def add_token(db: sqlite_utils.Database, name: str, sha256: str) -> None:
    with db.atomic():
        if db.execute("select 1 from collector_tokens where name = ?", [name]).fetchone():
            raise ValueError(f"a token named {name!r} exists already (revoke it, or choose another name)")
        db.execute("insert into collector_tokens (name, sha256, created) values (?, ?, ?)", [name, sha256, now()])


def revoke_token(db: sqlite_utils.Database, name: str) -> bool:
    """True when a live token of that name was revoked."""
    with db.atomic():
        cur = db.execute("update collector_tokens set revoked = ? where name = ? and revoked is null", [now(), name])
    return cur.rowcount == 1


def token_name(db: sqlite_utils.Database, sha256: str) -> str | None:
    """The name of the live (not revoked) token with this digest."""
    row = db.execute("select name from collector_tokens where sha256 = ? and revoked is null", [sha256]).fetchone()
    return row[0] if row else None


def collected_run(db: sqlite_utils.Database, *, run_uuid: str, started: str, software_version: str,
                  rules_version: str, asn: int | None, network: str | None, country: str | None) -> int:
    """The collector's copy of a volunteer's run, found by its UUID or made (as `probe merge` would keep it).
    The caller holds the transaction."""
    row = db.execute("select id from runs where uuid = ?", [run_uuid]).fetchone()
    if row:
        return int(row[0])
    cur = db.execute("insert into runs (started, finished, status, options, software_version, rules_version, "
                     "url_count, vantage_asn, vantage_network, vantage_country, resolvers, uuid) "
                     "values (?, ?, 'done', ?, ?, ?, 0, ?, ?, ?, '[]', ?)",
                     [started, started, json.dumps({"collected": True}), software_version, rules_version, asn,
                      network, country, run_uuid])
    return int(cur.lastrowid or 0)


def grow_collected_run(db: sqlite_utils.Database, run_id: int, started: str) -> None:
    """One more measurement in a collected run: it counts one URL more and spans the measurements' start times
    (the volunteer's own start and end are not sent)."""
    db.execute("update runs set url_count = url_count + 1, started = min(started, ?), finished = max(finished, ?) "
               "where id = ?", [started, started, run_id])


def record_upload(db: sqlite_utils.Database, token: str, run_uuid: str, stored: int, duplicates: int) -> None:
    """The caller holds the transaction (the upload's rows and this one commit together)."""
    db.execute("insert into collector_uploads (token, run_uuid, received, stored, duplicates) values (?, ?, ?, ?, ?)",
               [token, run_uuid, now(), stored, duplicates])


def run_measurement_uuids(db: sqlite_utils.Database, run_uuid: str) -> list[str]:
    return [r[0] for r in db.execute("select m.uuid from measurements m join runs r on r.id = m.run_id "
                                     "where r.uuid = ? order by m.id", [run_uuid])]


def collector_status(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Per token: when issued or revoked, the networks its uploads came from, its last upload, what it stored."""
    out = []
    for name, created, revoked in db.execute("select name, created, revoked from collector_tokens order by name"):
        last, stored, duplicates = db.execute("select max(received), coalesce(sum(stored), 0), "
                                              "coalesce(sum(duplicates), 0) from collector_uploads where token = ?",
                                              [name]).fetchone()
        networks = [{"asn": asn, "network": network, "country": country, "runs": runs}
                    for asn, network, country, runs in db.execute(
                        "select r.vantage_asn, r.vantage_network, r.vantage_country, count(distinct r.id) "
                        "from runs r where r.uuid in (select run_uuid from collector_uploads where token = ?) "
                        "group by 1, 2, 3 order by 4 desc", [name])]
        out.append({"token": name, "created": created, "revoked": revoked, "last_upload": last,
                    "measurements": stored, "duplicates": duplicates, "networks": networks})
    return out


@migrations()
def m009_methods_and_verdict_history(db: sqlite_utils.Database) -> None:
    """Issue 22: each run's method (probe/measure/method.py; NULL for older runs, derived from `options` when read), and
    the verdicts `probe reanalyze` replaced, so that nothing is lost."""
    _add_column(db, "runs", "method", str)
    if db.table("verdict_history").exists():  # made by a development build under another step name
        return
    db.table("verdict_history").create({
        "id": int, "measurement_id": int, "run_id": int, "status": str, "layer": str, "detail": str,
        "fingerprint": str, "control": str, "rule": str, "rules_version": str, "evidence": str, "scope": str,
        "flaky": int, "replaced_at": str,
    }, pk="id", foreign_keys=[("measurement_id", "measurements", "id")])
    db.table("verdict_history").create_index(["measurement_id"])


HISTORY_COLUMNS = ("status", "layer", "detail", "fingerprint", "control", "rule", "rules_version", "evidence", "scope",
                   "flaky", "quic")


def replace_verdict(db: sqlite_utils.Database, measurement: dict[str, Any], verdict: Verdict, rules_version: str,
                    replaced_at: str) -> None:
    """Store a re-judged verdict, keeping the one it replaces in `verdict_history` (the caller wraps calls in
    `db.atomic()`)."""
    _insert(db, "verdict_history", [{"measurement_id": measurement["id"], "run_id": measurement["run_id"],
                                     **{c: measurement.get(c) for c in HISTORY_COLUMNS}, "replaced_at": replaced_at}])
    update_verdict(db, measurement["id"], verdict, rules_version)


def set_run_method(db: sqlite_utils.Database, run_id: int, method: dict[str, Any], rules_version: str) -> None:
    """A reanalysed run counts as its new rules version and the signatures it was re-judged with."""
    db.execute("update runs set method = ?, rules_version = ? where id = ?",
               [json.dumps(method, sort_keys=True), rules_version, run_id])


def verdict_history(db: sqlite_utils.Database, measurement_id: int) -> list[dict[str, Any]]:
    """The verdicts a measurement had before, oldest first."""
    return list(db.query("select * from verdict_history where measurement_id = ? order by id", [measurement_id]))


def waiting_runs(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Runs that stopped before measuring their whole list (`probe run --resume RUN` finishes them), oldest first.
    `running` ones are left out: another process may hold them (the lock says), and a killed one is found by
    `--resume` anyway."""
    waiting = [s for s in RESUMABLE if s != "running"]
    return list(db.query(f"select id, status, url_count from runs where status in ({', '.join('?' * len(waiting))})"
                         " order by id", waiting))


@migrations()
def m010_meta(db: sqlite_utils.Database) -> None:
    """Issue 22: facts about the database itself (when `PRAGMA quick_check` last passed)."""
    if not db.table("probe_meta").exists():  # made by a development build under another step name
        db.table("probe_meta").create({"key": str, "value": str}, pk="key")


@migrations()
def m012_quic(db: sqlite_utils.Database) -> None:
    """Issue 20 (QUIC): the QUIC handshakes of https URLs, their verdict beside the TCP/TLS one (`quic`, kept in
    the history too), and what our helper saw over QUIC. m011 and m013 are other parts of issue 20."""
    if not db.table("quic_handshakes").exists():
        db.table("quic_handshakes").create({
            "id": int, "measurement_id": int, "ip": str, "port": int, "sni": str, "decoy": int, "failure": str,
            "alpn": str, "peer_chain": str, "attempt": int, "t0": float, "t": float,
        }, pk="id", foreign_keys=[("measurement_id", "measurements", "id")])
        db.table("quic_handshakes").create_index(["measurement_id"])
    _add_column(db, "measurements", "quic", str)
    _add_column(db, "control_results", "quic_handshake", str)
    if db.table("verdict_history").exists():  # (tests build older schemas with today's writer columns)
        _add_column(db, "verdict_history", "quic", str)


@migrations()
def m013_locate(db: sqlite_utils.Database) -> None:
    """Issue 20: where on the path a TLS failure sits, one row per TTL-limited ClientHello (steps/locate.py)."""
    if db.table("ttl_probes").exists():  # made by a development build under another step name
        return
    db.table("ttl_probes").create({
        "id": int, "measurement_id": int, "ip": str, "port": int, "sni": str, "ttl": int, "failure": str,
        "failed_step": str, "reply_bytes": int, "router": str, "icmp": str, "t0": float, "t": float,
    }, pk="id", foreign_keys=[("measurement_id", "measurements", "id")])
    db.table("ttl_probes").create_index(["measurement_id"])


@migrations()
def m011_transfer(db: sqlite_utils.Database) -> None:
    """Issue 20: transfer evidence (steps/transfer.py) per HTTP hop and TLS handshake, and the helper's own.
    (After m012_quic and m013_locate, which landed first: steps apply in file order.)"""
    _add_column(db, "http_hops", "transfer", str)
    _add_column(db, "tls_handshakes", "transfer", str)
    _add_column(db, "control_results", "http_transfer", str)
