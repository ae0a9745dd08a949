"""`probe merge`'s database work: checking a source, reading it without writing beside it, copying its rows.

Rows are matched by their UUIDs (runs, measurements) or natural keys (bodies by sha256, claims by key), so
merging a file twice adds nothing. A source is never written to: it is attached read-only (`immutable`, which
also keeps SQLite from leaving -wal/-shm files beside it) or, when it needs migrating or still has a
write-ahead log, copied to a temporary file first. research/merge.py drives it, source by source.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from .. import storage

# Tables whose rows hang off a measurement, copied with it.
STEP_TABLES = tuple(storage.STEP_TABLES)


class SourceError(Exception):
    """A source that cannot be merged; the message names why, the caller names the file."""


def file_of(db: sqlite_utils.Database) -> Path | None:
    """The file behind `db` (None for an in-memory one)."""
    name = db.execute("pragma database_list").fetchone()[2]
    return Path(name).resolve() if name else None


def _immutable_uri(path: Path) -> str:
    return f"{path.resolve().as_uri()}?immutable=1"


def _check(uri: str) -> list[str]:
    """Refuse what is not an intact probe database; return the schema steps it lacks."""
    migrations = storage.migrations
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as e:
        raise SourceError(f"cannot open: {e}") from None
    try:
        try:
            check = conn.execute("pragma quick_check").fetchone()[0]
            tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
        except sqlite3.DatabaseError as e:
            raise SourceError(f"not a SQLite database or damaged ({e})") from None
        if check != "ok":
            raise SourceError(f"damaged (integrity check: {check})")
        if not {"runs", "measurements", migrations.migrations_table} <= tables:
            raise SourceError("not a probe database (no runs, measurements or schema history)")
        applied = [r[0] for r in conn.execute(f"select name from {migrations.migrations_table} "
                                              "where migration_set = ? order by rowid", [migrations.name])]
    finally:
        conn.close()
    known = [m.name for m in migrations._migrations]
    unknown = [n for n in applied if n not in known]
    if unknown:
        raise SourceError(f"made by a newer probe (schema steps {', '.join(unknown)} are unknown here); "
                          "upgrade probe to merge it")
    if not applied:
        raise SourceError("not a probe database (empty schema history)")
    return [n for n in known if n not in applied]


@contextmanager
def readable(path: Path) -> Iterator[tuple[str, tuple[str, ...]]]:
    """A URI to attach that reads `path` as it is (or a migrated copy) without ever writing beside it, and the
    schema steps applied to that copy."""
    if not path.is_file():
        raise SourceError("no such file")
    wal = path.with_name(path.name + "-wal")
    has_wal = wal.is_file() and wal.stat().st_size > 0
    pending = _check(_immutable_uri(path)) if not has_wal else None
    if pending == []:
        yield _immutable_uri(path), ()
        return
    with tempfile.TemporaryDirectory(prefix="probe-merge-") as tmp:
        copy = Path(tmp) / "source.db"
        shutil.copyfile(path, copy)
        if has_wal:  # committed rows still in the log: the copy replays it, the original is left alone
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
            pending = _check(str(copy))
        names: tuple[str, ...] = tuple(pending or ())
        if names:
            db = sqlite_utils.Database(copy)
            try:
                storage.migrations.apply(db)
            except (sqlite3.Error, ValueError) as e:
                raise SourceError(f"could not migrate a copy from its schema ({e})") from None
            finally:
                db.close()
        yield str(copy), names


def _columns(dest: sqlite_utils.Database, table: str, skip: set[str]) -> list[str]:
    src = {r[1] for r in dest.execute(f"pragma src.table_info({table})")}
    return [c for c in dest.table(table).columns_dict if c in src and c not in skip]


def copy_rows(dest: sqlite_utils.Database, uri: str) -> tuple[dict[str, int], dict[str, int]]:
    """Copy what the database at `uri` has and `dest` lacks, in one transaction: rows added and rows skipped
    (already there) per table."""
    conn = dest.conn
    if conn.in_transaction:
        conn.commit()
    conn.execute("attach database ? as src", [uri])
    added: dict[str, int] = {}
    skipped: dict[str, int] = {}

    def run(table: str, sql: str, total_sql: str | None = None) -> None:
        n = conn.execute(sql).rowcount
        added[table] = added.get(table, 0) + n
        if total_sql:
            skipped[table] = skipped.get(table, 0) + conn.execute(total_sql).fetchone()[0] - n

    try:
        with dest.atomic():
            for t in ("merge_runs", "merge_new", "merge_measurements", "merge_surveys"):
                conn.execute(f"drop table if exists temp.{t}")
            cols = ", ".join(_columns(dest, "runs", {"id"}))
            run("runs", f"insert into main.runs ({cols}) select {cols} from src.runs "
                        "where uuid not in (select uuid from main.runs) order by id",
                "select count(*) from src.runs")
            conn.execute("create temp table merge_runs (src_id integer primary key, dest_id integer)")
            conn.execute("insert into temp.merge_runs select s.id, d.id from src.runs s join main.runs d "
                         "on d.uuid = s.uuid")
            tcols = _columns(dest, "run_targets", {"run_id"})
            conn.execute(f"insert or ignore into main.run_targets (run_id, {', '.join(tcols)}) select r.dest_id, "
                         f"{', '.join('t.' + c for c in tcols)} from src.run_targets t "
                         "join temp.merge_runs r on r.src_id = t.run_id order by t.run_id, t.position")

            # The runs' network surveys, once each, and what their ids are here (measurements name theirs).
            run("surveys", "insert into main.surveys (run_id, view) select r.dest_id, s.view from src.surveys s "
                           "join temp.merge_runs r on r.src_id = s.run_id where not exists (select 1 from "
                           "main.surveys d where d.run_id = r.dest_id and d.view = s.view) order by s.id")
            conn.execute("create temp table merge_surveys (src_id integer primary key, dest_id integer)")
            conn.execute("insert into temp.merge_surveys select s.id, (select min(d.id) from main.surveys d where "
                         "d.run_id = r.dest_id and d.view = s.view) from src.surveys s "
                         "join temp.merge_runs r on r.src_id = s.run_id")
            conn.execute("create temp table merge_new (src_id integer primary key, uuid text)")
            conn.execute("insert into temp.merge_new select id, uuid from src.measurements "
                         "where uuid not in (select uuid from main.measurements)")
            mcols = _columns(dest, "measurements", {"id", "run_id", "survey_id"})
            run("measurements", f"insert into main.measurements (run_id, survey_id, {', '.join(mcols)}) select "
                                "r.dest_id, (select ms.dest_id from temp.merge_surveys ms where ms.src_id = "
                                f"m.survey_id), {', '.join('m.' + c for c in mcols)} from src.measurements m "
                                "join temp.merge_new n on n.src_id = m.id "
                                "join temp.merge_runs r on r.src_id = m.run_id order by m.id",
                "select count(*) from src.measurements")
            conn.execute("create temp table merge_measurements (src_id integer primary key, dest_id integer)")
            conn.execute("insert into temp.merge_measurements select n.src_id, d.id from temp.merge_new n "
                         "join main.measurements d on d.uuid = n.uuid")
            for table in STEP_TABLES:
                scols = _columns(dest, table, {"id", "measurement_id"})
                run(table, f"insert into main.{table} (measurement_id, {', '.join(scols)}) select mm.dest_id, "
                           f"{', '.join('o.' + c for c in scols)} from src.{table} o "
                           "join temp.merge_measurements mm on mm.src_id = o.measurement_id order by o.id")

            run("bodies", "insert or ignore into main.bodies (sha256, length, data) "
                          "select sha256, length, data from src.bodies", "select count(*) from src.bodies")

            ccols = _columns(dest, "claims", {"id"})
            conn.execute("drop table if exists temp.merge_claims")
            conn.execute("create temp table merge_claims as select key from src.claims "
                         "where key not in (select key from main.claims)")
            run("claims", f"insert into main.claims ({', '.join(ccols)}) select {', '.join(ccols)} from src.claims "
                          "where key in (select key from temp.merge_claims) order by id",
                "select count(*) from src.claims")
            icols = _columns(dest, "claim_items", {"claim_id"})
            run("claim_items", f"insert into main.claim_items (claim_id, {', '.join(icols)}) select d.id, "
                               f"{', '.join('i.' + c for c in icols)} from src.claim_items i "
                               "join src.claims s on s.id = i.claim_id join main.claims d on d.key = s.key "
                               "where s.key in (select key from temp.merge_claims) order by i.rowid")
            for t in ("merge_runs", "merge_new", "merge_measurements", "merge_claims"):
                conn.execute(f"drop table temp.{t}")
    finally:
        conn.execute("detach database src")
    return added, skipped
