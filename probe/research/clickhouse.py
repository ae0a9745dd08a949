"""`probe export --format clickhouse-schema`: CREATE TABLE statements matching the Parquet files column for column.

MergeTree tables, partitioned by month of `measured_at` and sorted by country, ASN, hostname and time, the
way research reads them (one network over weeks). Columns with few distinct values are `LowCardinality`.
Built from tables.py, as the Parquet writer is, so `INSERT INTO t SELECT * FROM file('t.parquet', Parquet)`
and `INSERT INTO t FORMAT Parquet` load each file as it is.
"""

from __future__ import annotations

from .tables import TABLES, Column, Table

_SCALAR = {
    "string": "String", "lc": "String", "date": "Date32", "int": "Int64", "uint16": "UInt16", "uint32": "UInt32",
    "float": "Float64", "bool": "Bool", "time": "DateTime64(3, 'UTC')",
}
# Lists are never NULL (an empty list instead); fields inside structs may be.
_NESTED = {
    "strings": "Array(String)",
    "headers": "Array(Array(String))",
    "late_answers": "Array(Tuple(answers Array(String), rcode Nullable(String), t Nullable(Float64)))",
    "certs": ("Array(Tuple(sha256 Nullable(String), subject Nullable(String), issuer Nullable(String), "
              "common_name Nullable(String), sans Array(String), not_before Nullable(DateTime64(3, 'UTC')), "
              "not_after Nullable(DateTime64(3, 'UTC')), error Nullable(String)))"),
}


def column_type(c: Column) -> str:
    if c.kind in _NESTED:
        return _NESTED[c.kind]
    base = _SCALAR[c.kind]
    if c.nullable:
        base = f"Nullable({base})"
    return f"LowCardinality({base})" if c.kind == "lc" else base


def create_table(table: Table, database: str | None = None) -> str:
    name = f"{database}.{table.name}" if database else table.name
    width = max(len(c.name) for c in table.columns)
    cols = ",\n".join(f"    {c.name:{width}} {column_type(c)}" for c in table.columns)
    partition = "\nPARTITION BY toYYYYMM(measured_at)" if table.by_measurement else ""
    return (f"CREATE TABLE IF NOT EXISTS {name}\n(\n{cols}\n)\nENGINE = MergeTree{partition}\n"
            f"ORDER BY ({', '.join(table.order_by)});\n")


def schema(database: str | None = None) -> str:
    """Every table's statement, measurements first."""
    return "\n".join(create_table(t, database) for t in TABLES)


def statements(ddl: str) -> list[str]:
    """The statements of a schema text such as `schema()` prints (none contains a semicolon of its own)."""
    return [s.strip() for s in ddl.split(";") if s.strip()]


# Run in chDB's own interpreter (stdlib and chdb only): a JSON job on stdin, one result per statement on stdout.
_JOB = r"""
import json, sys
from chdb import session
job = json.load(sys.stdin)
s = session.Session(job["path"])
out = []
try:
    for i, step in enumerate(job["steps"]):
        try:
            res = s.query(step["sql"], "JSONCompact", params=step.get("params") or None)
        except Exception as e:
            print(json.dumps({"error": f"statement {i + 1}: {e}"}))
            sys.exit(1)
        raw = res.bytes() if res is not None else b""
        out.append(json.loads(raw)["data"] if raw.strip() else [])
finally:
    s.close()
print(json.dumps({"results": out}))
"""

DEFAULT_CHDB_PYTHON = "/opt/probe-chdb/bin/python"


class ClickHouseError(Exception):
    """chDB is missing or a statement failed; the message says which."""


def chdb_python() -> str | None:
    """The interpreter that has chdb: $PROBE_CHDB_PYTHON, the venv .ci/run makes, or this one."""
    import importlib.util
    import os
    import sys

    configured = os.environ.get("PROBE_CHDB_PYTHON")
    if configured:
        return configured
    if os.path.exists(DEFAULT_CHDB_PYTHON):
        return DEFAULT_CHDB_PYTHON
    return sys.executable if importlib.util.find_spec("chdb") else None


def run_chdb(path: str, steps: list[tuple[str, dict[str, str]]], python: str | None = None,
             timeout: float = 600) -> list[list[list[object]]]:
    """Run statements in a chDB session stored at `path` (kept between calls); the rows of each, in order."""
    import json
    import subprocess

    python = python or chdb_python()
    if python is None:
        raise ClickHouseError("chdb not found: set PROBE_CHDB_PYTHON to a Python that has it "
                              f"(.ci/run makes {DEFAULT_CHDB_PYTHON})")
    job = {"path": path, "steps": [{"sql": sql.strip().rstrip(";"), "params": params} for sql, params in steps]}
    proc = subprocess.run([python, "-c", _JOB], input=json.dumps(job), capture_output=True, text=True,
                          timeout=timeout)
    try:
        doc = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ClickHouseError(f"chDB ({python}) failed: {proc.stderr.strip()[-2000:]}") from None
    if "error" in doc:
        raise ClickHouseError(doc["error"])
    results: list[list[list[object]]] = doc["results"]
    return results
