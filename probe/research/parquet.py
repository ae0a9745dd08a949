"""`probe export --format parquet`: one typed Parquet file per table (see tables.py), written in batches.

Rows stream out of SQLite a batch at a time and each batch becomes one row group, so memory stays bounded
whatever the size of the database. JSON text columns become typed lists and structs, ISO times timestamps.
A file appears under its final name only once complete.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from .. import storage
from .tables import TABLES, Column, Table

BATCH_ROWS = 5_000  # rows SQLite turns into one text at a time: memory is a few of these
ROW_GROUP_ROWS = 50_000  # rows per Parquet row group (batches are gathered, as Arrow columns, up to this)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ExportError(Exception):
    """Bad selection or output; the message names the value."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """Which runs to export: one, every run started on or after a date, or all."""

    run_id: int | None = None
    since: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        if self.run_id is not None:
            return "m.run_id = ?", [self.run_id]
        if self.since is not None:
            return "r.started >= ?", [self.since]
        return "1", []


def selection(run_id: int | None, since: str | None, everything: bool) -> Selection:
    if sum((run_id is not None, since is not None, everything)) > 1:
        raise ExportError("give one of --run, --since or --all")
    if since is not None:
        try:
            if not _DATE.match(since):
                raise ValueError(since)
            dt.date.fromisoformat(since)
        except ValueError:
            raise ExportError(f"--since wants a date YYYY-MM-DD, got {since!r}") from None
    return Selection(run_id=run_id, since=since)


def require_pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise ExportError("Parquet export needs pyarrow: pip install 'probe[parquet]'") from None
    return pyarrow


def arrow_type(kind: str) -> Any:
    pa = require_pyarrow()

    def list_of(t: Any) -> Any:  # items are never NULL: ClickHouse reads Array(T), not Array(Nullable(T))
        return pa.list_(pa.field("element", t, nullable=False))

    strings = list_of(pa.string())
    when = pa.timestamp("ms", tz="UTC")
    return {
        "string": pa.string(), "lc": pa.string(), "date": pa.date32(), "int": pa.int64(), "uint16": pa.uint16(),
        "uint32": pa.uint32(), "float": pa.float64(), "bool": pa.bool_(), "time": when, "strings": strings,
        "headers": list_of(strings),  # [name, value] pairs: names repeat (Set-Cookie), so not a map
        "late_answers": list_of(pa.struct([("answers", strings), ("rcode", pa.string()), ("t", pa.float64())])),
        "certs": list_of(pa.struct([
            ("sha256", pa.string()), ("subject", pa.string()), ("issuer", pa.string()),
            ("common_name", pa.string()), ("sans", strings), ("not_before", when), ("not_after", when),
            ("error", pa.string())])),
    }[kind]


def arrow_schema(table: Table) -> Any:
    pa = require_pyarrow()
    return pa.schema([pa.field(c.name, arrow_type(c.kind), nullable=c.nullable) for c in table.columns])


def _time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def _json_list(value: Any) -> list[Any]:
    if not value or value == "[]":
        return []
    try:
        out = json.loads(value)
    except ValueError:
        return []
    return out if isinstance(out, list) else []


def _strings(value: Any) -> list[str]:
    return [str(x) for x in _json_list(value)]


def _headers(value: Any) -> list[list[str]]:
    return [[str(h[0]), str(h[1])] for h in _json_list(value) if isinstance(h, list) and len(h) == 2]


def _late(value: Any) -> list[dict[str, Any]]:
    return [{"answers": [str(a) for a in x.get("answers") or []], "rcode": x.get("rcode"), "t": x.get("t")}
            for x in _json_list(value) if isinstance(x, dict)]


def _certs(value: Any) -> list[dict[str, Any]]:
    return [{"sha256": c.get("sha256"), "subject": c.get("subject"), "issuer": c.get("issuer"),
             "common_name": c.get("common_name"), "sans": [str(s) for s in c.get("sans") or []],
             "not_before": _time(c.get("not_before")), "not_after": _time(c.get("not_after")), "error": c.get("error")}
            for c in _json_list(value) if isinstance(c, dict)]


def _date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "strings": _strings, "headers": _headers, "late_answers": _late, "certs": _certs, "date": _date,
}


_DEFAULT: dict[str, Any] = {"string": "", "lc": "", "int": 0, "uint16": 0, "uint32": 0, "float": 0.0,
                            "bool": False, "time": 0, "date": 0}


def _array(column: Column, values: Sequence[Any]) -> Any:
    """One column of a batch; a NULL in a column declared NOT NULL becomes the type's zero ('', 0, epoch)."""
    pa = require_pyarrow()
    import pyarrow.compute as pc

    kind = column.kind
    typ = arrow_type(kind)
    convert = _CONVERT.get(kind)
    if kind == "time":
        raw = pa.array(values, type=pa.string())
        try:  # vectorised when every value carries its zone offset, as probe writes them
            arr = raw.cast(pa.timestamp("us", tz="UTC")).cast(typ, safe=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            arr = pa.array([_time(v) for v in values], type=typ)
    elif kind == "bool":
        arr = pa.array([None if v is None else bool(v) for v in values], type=typ)
    elif convert is not None:
        arr = pa.array([convert(v) for v in values], type=typ)
    elif kind in ("string", "lc") and any(v is not None and not isinstance(v, str) for v in values):
        arr = pa.array([None if v is None else str(v) for v in values], type=typ)
    else:
        arr = pa.array(values, type=typ)
    if not column.nullable and arr.null_count:
        arr = pc.fill_null(arr, pa.scalar(_DEFAULT[kind]).cast(typ))
    return arr


def _json_expr(c: Column) -> str:
    """The column as JSON text: JSON columns go in as stored, strings quoted by json_quote, nothing parsed.
    A stored value that is not what its column says makes the line invalid; Arrow then refuses the batch."""
    x = c.sql
    kind = c.kind
    if not c.nullable and kind not in ("strings", "headers", "late_answers", "certs"):
        default = {"string": "''", "lc": "''", "time": "'1970-01-01T00:00:00+00:00'", "date": "'1970-01-01'"}
        x = f"coalesce({x}, {default.get(kind, '0')})"
    if kind in ("string", "lc", "time"):
        value = f"json_quote({x})"
    elif kind == "date":
        value = f"ifnull(cast(julianday(date({x})) - 2440587.5 as integer), 'null')"
    elif kind == "bool":
        value = f"iif({x} is null, 'null', iif({x}, 'true', 'false'))"
    elif kind in ("strings", "headers", "late_answers", "certs"):
        value = f"coalesce(nullif({x}, ''), '[]')"
    else:
        value = f"ifnull({x}, 'null')"
    return value


def _json_lines_sql(table: Table, base: str) -> str:
    """One batch as a single blob of JSON lines, built by one printf per row (no chain of concatenations)."""
    template = "{" + ",".join(f'"{i}":%s' for i in range(len(table.columns))) + "}"  # short keys: less to parse
    doc = f"printf('{template}', {', '.join(_json_expr(c) for c in table.columns)})"
    return (f"select cast(group_concat(doc, char(10)) as blob), count(*) "
            f"from (select {doc} as doc {base})")


def _parse_batch(text: bytes, schema: Any) -> Any:
    """A batch of JSON lines (one object a row, keyed by column position) as a table of `schema`, parsed by
    Arrow in C++."""
    import io

    import pyarrow as pa
    import pyarrow.json as pj

    keyed = pa.schema([f.with_name(str(i)) for i, f in enumerate(schema)])
    table = pj.read_json(io.BytesIO(text),
                         read_options=pj.ReadOptions(block_size=max(1 << 20, len(text) // 8 + 1)),
                         parse_options=pj.ParseOptions(explicit_schema=keyed, unexpected_field_behavior="ignore"))
    return table.select(keyed.names).rename_columns(schema.names).cast(schema)


def _export_table(connect: Callable[[], sqlite3.Connection], table: Table, sel: Selection, out: Path,
                  batch_rows: int, workers: int) -> int:
    """Batches are ranges of the table's row ids, made (SQLite, then Arrow) by `workers` threads a few ahead of
    the writer and written in order, so the file is the same however many threads made it."""
    pa = require_pyarrow()
    import pyarrow.parquet as pq

    where, args = sel.where() if table.by_measurement else ("1", [])
    key = table.order_sql()
    base = f"from {table.from_sql()} where {where} and {key} between ? and ? order by {key}"
    batch_sql = _json_lines_sql(table, base)
    rows_sql = f"select {', '.join(c.sql for c in table.columns)} {base}"
    schema = arrow_schema(table)
    local = threading.local()
    opened: list[sqlite3.Connection] = []

    def conn() -> sqlite3.Connection:
        if not hasattr(local, "conn"):
            local.conn = connect()
            opened.append(local.conn)
        c: sqlite3.Connection = local.conn
        return c

    def make(lo: int) -> tuple[int, Any]:
        bounds = [*args, lo, lo + batch_rows - 1]
        text, size = conn().execute(batch_sql, bounds).fetchone()
        if not size:
            return 0, None
        try:
            return size, _parse_batch(text, schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            rows = conn().execute(rows_sql, bounds).fetchall()
            columns = list(zip(*rows, strict=True))
            arrays = [_array(c, columns[i]) for i, c in enumerate(table.columns)]
            return size, pa.Table.from_batches([pa.record_batch(arrays, schema=schema)])

    final = out / f"{table.name}.parquet"
    partial = out / f".{table.name}.parquet.partial"
    n = 0
    pending: list[Any] = []
    try:
        lo, hi = conn().execute(f"select min({key}), max({key}) from {table.from_sql()} where {where}",
                                args).fetchone()
        starts = range(lo, hi + 1, batch_rows) if lo is not None else range(0)
        with pq.ParquetWriter(partial, schema, compression="zstd") as writer, \
                ThreadPoolExecutor(max_workers=workers) as pool:

            def write(size: int, batch: Any, last: bool = False) -> None:
                nonlocal n, pending
                n += size
                if batch is not None:
                    pending.append(batch)
                if pending and (last or sum(b.num_rows for b in pending) >= ROW_GROUP_ROWS):
                    writer.write_table(pa.concat_tables(pending))
                    pending = []

            ahead: deque[Future[tuple[int, Any]]] = deque()
            for start in starts:
                if workers <= 1:
                    write(*make(start))
                    continue
                ahead.append(pool.submit(make, start))
                if len(ahead) > 2 * workers:  # bounded: memory is a few batches, whatever the table's size
                    write(*ahead.popleft().result())
            while ahead:
                write(*ahead.popleft().result())
            write(0, None, last=True)
    finally:
        for c in opened:
            if c is not None and workers > 1:
                c.close()
    partial.replace(final)
    return n


def export_parquet(db: sqlite_utils.Database, sel: Selection, out_dir: str | Path,
                   tables: Sequence[Table] = TABLES, batch_rows: int = BATCH_ROWS,
                   workers: int | None = None) -> dict[str, int]:
    """Write DIR/<table>.parquet for each table; return the number of rows per table.

    SQLite builds each batch as JSON lines and Arrow parses them, both in C and outside the GIL, so batches
    are made by `workers` threads (default: one per core), each on its own read-only connection. A batch
    Arrow refuses (a stored value that is not what its column says, say a list column holding an object) is
    converted again row by row in Python, where such a value becomes NULL or an empty list: an odd row never
    stops an export.
    """
    require_pyarrow()
    if sel.run_id is not None and db.execute("select 1 from runs where id = ?", [sel.run_id]).fetchone() is None:
        raise ExportError(f"no run {sel.run_id}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out_dir} is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    path = db.execute("pragma database_list").fetchone()[2]
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if not path:  # an in-memory database has only the one connection
        workers = 1

    def connect() -> sqlite3.Connection:
        if workers <= 1:
            return db.conn
        return storage.read_only_connection(path)  # immutable on read-only media, as the first one

    return {t.name: _export_table(connect, t, sel, out, batch_rows, workers) for t in tables}
