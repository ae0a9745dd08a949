"""Storage is the only code that writes SQL or calls sqlite-utils' writers (issue 23): every module under probe/
is read (its syntax tree, not its text) and none outside storage may hold SQL that writes or call a writer."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import probe

ROOT = Path(probe.__file__).parent

# SQL that changes a database (or its schema, or what is attached), at the start of a string or f-string.
WRITES_SQL = re.compile(r"""\s*(insert\s+(or\s+\w+\s+)?into|replace\s+into|update\s+[\w."]+\s+set|delete\s+from|
                            create\s+(temp\s+|temporary\s+|unique\s+)?(table|index|view|trigger)|drop\s+(table|index|view|trigger)|
                            alter\s+table|vacuum\b|attach\s|detach\s|pragma\s+[\w.]+\s*=)""", re.I | re.X)
# sqlite-utils' writers whose names say so wherever they are called ...
WRITERS = {"insert_all", "upsert", "upsert_all", "delete_where", "create_table", "create_view", "create_index",
           "add_column", "add_foreign_key", "transform", "enable_wal", "disable_wal", "enable_fts", "executescript",
           "executemany"}
# ... and those whose names are common words, when called on a table: db["t"].insert(...), db.table("t").update(...)
TABLE_WRITERS = {"insert", "update", "delete", "create", "drop"}

# Code outside storage allowed to hold such text, each with why.
ALLOWED = {
    "research/clickhouse.py": "writes ClickHouse DDL as text for another database; never executes it on SQLite",
}


def _is_storage(rel: str) -> bool:
    return rel.startswith("storage/")


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def writes(source: str) -> list[str]:
    """Each place in `source` that writes SQL or calls a sqlite-utils writer, as 'line N: what'."""
    tree = ast.parse(source)
    docs = _docstrings(tree)  # and the literal parts of f-strings, read whole below
    docs |= {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    found = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value
        elif isinstance(node, ast.JoinedStr):  # an f-string: its literal parts, a placeholder for each field
            text = "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
        if text is not None and WRITES_SQL.match(text):
            found.append(f"line {node.lineno}: SQL {text.strip()[:50]!r}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name, on = node.func.attr, node.func.value
            on_table = isinstance(on, ast.Subscript) or (isinstance(on, ast.Call) and isinstance(on.func, ast.Attribute)
                                                          and on.func.attr in ("table", "view"))
            migrates = name == "apply" and isinstance(on, ast.Attribute | ast.Name) and \
                (on.attr if isinstance(on, ast.Attribute) else on.id) == "migrations"
            if name in WRITERS or (name in TABLE_WRITERS and on_table) or migrates:
                found.append(f"line {node.lineno}: .{name}()")
    return found


def test_no_module_outside_storage_writes_sql():
    modules = sorted(ROOT.rglob("*.py"))
    assert len(modules) > 60  # every module, not a chosen few
    offences = {}
    for path in modules:
        rel = path.relative_to(ROOT).as_posix()
        if _is_storage(rel) or rel in ALLOWED:
            continue
        if found := writes(path.read_text(encoding="utf-8")):
            offences[rel] = found
    assert offences == {}, f"SQL that writes belongs in storage: {offences}"


def test_storage_and_the_allowed_modules_exist_and_do_write():
    """The allow-list and the storage exemption name real code that does what they excuse (else drop them)."""
    storage = [p for p in ROOT.rglob("*.py") if _is_storage(p.relative_to(ROOT).as_posix())]
    assert any(writes(p.read_text(encoding="utf-8")) for p in storage)
    for rel in ALLOWED:
        assert writes((ROOT / rel).read_text(encoding="utf-8")), rel


def test_the_guard_sees_each_kind_of_write_and_passes_reads():
    bad = {
        'db["claims"].insert({"key": k})': ".insert()",
        'db.table("claims").update(1, row)': ".update()",
        'db.table("claim_items").insert_all(rows)': ".insert_all()",
        'db["t"].upsert(row, pk="id")': ".upsert()",
        'conn.executescript(script)': ".executescript()",
        'storage.migrations.apply(db)': ".apply()",
        'conn.execute("INSERT INTO runs (id) VALUES (1)")': "SQL",
        'conn.execute(f"insert or ignore into main.{t} ({cols}) select {cols} from src.{t}")': "SQL",
        'sql = "update measurements set status = ?"': "SQL",
        'conn.execute("delete from runs where id = ?", [1])': "SQL",
        'conn.execute("create temp table x (a)")': "SQL",
        'conn.execute("attach database ? as src", [uri])': "SQL",
        'conn.execute("PRAGMA user_version = 3")': "SQL",
    }
    for source, what in bad.items():
        found = writes(source)
        assert len(found) == 1 and what in found[0], (source, found)
    good = ['db.query("select * from claims where key = ?", [k])', 'counts.update(statuses)',
            'db.execute("pragma database_list")', 'items.insert(0, x)', '"""Update the claims: insert into x."""',
            'db.table("claims").rows_where("key = ?", [k])', 'hashlib.sha256().update(b"x")']
    for source in good:
        assert writes(source) == [], source


def test_the_cli_runs_no_sql_at_all():
    """The cli parses and prints: even its reads are the library's (research/queries.py, storage)."""
    reads = {"query", "execute", "executemany", "executescript", "rows_where", "count_where", "pks_and_rows_where"}
    modules = sorted((ROOT / "cli").glob("*.py"))
    assert len(modules) > 5
    for path in modules:
        calls = [node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in reads]
        assert calls == [], f"cli/{path.name} runs SQL at lines {calls}: ask research/queries.py or storage"
