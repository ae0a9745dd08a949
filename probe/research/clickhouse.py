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
    "headers": "Array(Tuple(name Nullable(String), value Nullable(String)))",
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
