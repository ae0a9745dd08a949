"""Many vantage points: UUIDs, `probe merge`, Parquet export and ClickHouse, on runs measured for real (loopback).

Two simulated networks measure the control world (tests/control_world.py): network A two weeks ago with no
censor and again now with the world's censor, network B now with an ISP that only tampers with DNS. Each
network keeps its own database, as volunteers do; they are merged, exported to Parquet and loaded into
ClickHouse (chDB, in-process), where the README's queries must give the counts SQLite gives.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
import re
import sqlite3
import uuid
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner

from probe import open_db, read_inputs, run_async, storage
from probe.cli import cli
from probe.lab.servers import DnsEntry
from probe.research import claims
from probe.research.clickhouse import DEFAULT_CHDB_PYTHON, chdb_python, run_chdb, statements
from probe.research.exchange import export
from probe.research.merge import merge
from probe.research.tables import TABLES
from tests.control_world import NOT_IN_TRUTH, SCENARIOS, _url, control_options

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
NET_A, NET_B = 64500, 64501
DNS_ONLY = {"nxc.test", "bogon.test", "inject.test"}  # what network B's ISP still blocks
V4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _files(path: Path) -> dict[str, str]:
    """Every file in the source's directory with its hash: a merge must change none and add none."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.parent.iterdir()) if p.is_file()}


async def _measure(net, db, asn: int, uncensored: set[str]) -> int:
    """One run of every scenario, with the names in `uncensored` answered truthfully by the ISP's resolver."""
    saved = dict(net.zone.entries)
    for name in uncensored:
        net.zone.entries[name] = DnsEntry(a=("127.0.0.1",))
    try:
        targets, _ = read_inputs([_url(net, n, s, p) for n, s, _, p, _ in SCENARIOS])
        summary = await run_async(db, targets, control_options(net, keep_bodies="all"))
    finally:
        net.zone.entries.clear()
        net.zone.entries.update(saved)
    storage.set_vantage(db, summary.run_id, asn, f"TESTNET-{asn}", "PK", None)
    return summary.run_id


def _backdate(db: sqlite_utils.Database, run_id: int, days: int) -> None:
    """Make a run look as if measured `days` ago (the simulated weeks of a study)."""
    shift = f"-{days} days"
    with db.atomic():
        db.execute("update runs set started = strftime('%Y-%m-%dT%H:%M:%S+00:00', started, ?), "
                   "finished = strftime('%Y-%m-%dT%H:%M:%S+00:00', finished, ?) where id = ?", [shift, shift, run_id])
        db.execute("update measurements set started = strftime('%Y-%m-%dT%H:%M:%S+00:00', started, ?) "
                   "where run_id = ?", [shift, run_id])


@pytest.fixture
async def volunteers(world, tmp_path):
    """Two volunteers' databases (network A: two runs, a claim with items; network B: one run), closed."""
    net = world
    names = {n for n, *_ in SCENARIOS if n not in NOT_IN_TRUTH}
    a = open_db(tmp_path / "a" / "a.db")
    before = await _measure(net, a, NET_A, uncensored=names)
    _backdate(a, before, 14)
    now = await _measure(net, a, NET_A, uncensored=set())
    measured = {m["url"] for m in storage.measurements(a, now)}
    blocked_here = sorted(m["url"] for m in storage.measurements(a, now) if m["status"] == "blocked")
    cid = claims.add(a, {"key": "test-claim", "authority": "Test Authority", "date": "2025-10-01",
                         "claimed_count": 3, "covers": "websites"})
    ok_url = next(m["url"] for m in storage.measurements(a, now) if m["status"] == "ok")
    claims.import_items(a, cid, f"url\n{blocked_here[0]}\n{ok_url}\nhttp://never-measured.test/\n", "items.csv")
    a.close()
    b = open_db(tmp_path / "b" / "b.db")
    await _measure(net, b, NET_B, uncensored=names - DNS_ONLY)
    b.close()
    assert blocked_here and ok_url in measured
    return tmp_path / "a" / "a.db", tmp_path / "b" / "b.db", blocked_here[0], ok_url


def _count(db: sqlite_utils.Database | sqlite3.Connection, table: str) -> int:
    return db.execute(f"select count(*) from {table}").fetchone()[0]


def _verdicts(path: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(path)
    rows = conn.execute("select m.uuid, r.uuid, r.vantage_asn, m.url, m.status, m.detail, m.rule, "
                        "(select count(*) from dns_queries where measurement_id = m.id), "
                        "(select count(*) from tcp_connects where measurement_id = m.id), "
                        "(select count(*) from tls_handshakes where measurement_id = m.id), "
                        "(select count(*) from http_hops where measurement_id = m.id), "
                        "(select group_concat(body_sha256) from http_hops where measurement_id = m.id) "
                        "from measurements m join runs r on r.id = m.run_id").fetchall()
    conn.close()
    return {r[0]: r[1:] for r in rows}


async def test_merge_is_idempotent_and_never_touches_its_sources(volunteers, tmp_path):
    a_path, b_path, _, _ = volunteers
    before = {p: _files(p) for p in (a_path, b_path)}
    dest = open_db(tmp_path / "all.db")
    first = list(merge(dest, [a_path, b_path]))
    assert [r.error for r in first] == [None, None]
    expected = {**_verdicts(a_path), **_verdicts(b_path)}
    assert len(expected) == 3 * len(SCENARIOS)
    assert all(V4.match(u) for u in expected), "new measurements get version-4 UUIDs"
    assert first[0].added["runs"] == 2 and first[1].added["runs"] == 1
    assert first[0].added["measurements"] + first[1].added["measurements"] == len(expected)
    assert first[0].added["claims"] == 1 and first[0].added["claim_items"] == 3
    assert _verdicts(tmp_path / "all.db") == expected  # same verdicts, observations and bodies, by UUID
    body_shas = {s for v in expected.values() if v[-1] for s in v[-1].split(",")}
    assert body_shas and {r[0] for r in dest.execute("select sha256 from bodies")} >= body_shas
    counts = {t: _count(dest, t) for t in ("runs", "measurements", "dns_queries", "tcp_connects", "tls_handshakes",
                                          "http_hops", "control_results", "bodies", "claims", "claim_items",
                                          "run_targets")}

    again = list(merge(dest, [b_path, a_path, b_path]))
    assert [r.error for r in again] == [None, None, None]
    assert all(sum(r.added.values()) == 0 for r in again)
    assert again[1].skipped["runs"] == 2 and again[1].skipped["measurements"] == 2 * len(SCENARIOS)
    assert again[1].skipped["claims"] == 1
    assert {t: _count(dest, t) for t in counts} == counts
    assert {p: _files(p) for p in (a_path, b_path)} == before, "a source was changed or got a file beside it"

    # The CSV export carries the UUID a measurement had in its volunteer's database.
    buf = io.StringIO()
    export(dest, 3, "csv", buf)
    header, *lines = list(csv.reader(io.StringIO(buf.getvalue())))
    assert {line[header.index("uuid")] for line in lines} == {u for u, v in expected.items() if v[1] == NET_B}

    # Merged rows can be judged again from what was copied: `probe reanalyze` needs nothing else.
    from probe.storage.reanalysis import reanalyze

    reanalyze(dest)
    assert _verdicts(tmp_path / "all.db") == expected


async def test_bad_sources_are_named_and_the_others_merged(volunteers, tmp_path):
    a_path, b_path, _, _ = volunteers
    junk = tmp_path / "notes.db"
    junk.write_text("these are my notes, not a database\n")
    damaged = tmp_path / "damaged.db"
    raw = bytearray(a_path.read_bytes())
    page = 4096
    raw[2 * page:3 * page] = os.urandom(page)  # a page of the schema's tables overwritten
    damaged.write_bytes(raw)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("create table t (a)").connection.commit()
    newer = tmp_path / "newer.db"
    newer.write_bytes(b_path.read_bytes())
    conn = sqlite3.connect(newer)
    conn.execute("insert into _sqlite_migrations (migration_set, name, applied_at) values ('probe', 'm999_future', '')")
    conn.commit()
    conn.close()

    dest_path = tmp_path / "all.db"
    result = CliRunner().invoke(cli, ["merge", str(junk), str(damaged), str(a_path), str(other), str(newer),
                                      str(tmp_path / "missing.db"), str(dest_path), str(b_path),
                                      "--into", str(dest_path)])
    assert result.exit_code == 1
    lines = {line.split(": ", 1)[0]: line for line in result.output.splitlines()
             if ": " in line and not line.split(": ", 1)[1].startswith("added ")}
    assert f"{dest_path}: added 3 runs, {3 * len(SCENARIOS)} measurements from 2 of 8 source(s)" in result.output
    assert "not a SQLite database" in lines[str(junk)]
    assert "damaged" in lines[str(damaged)] or "not a SQLite database" in lines[str(damaged)]
    assert "not a probe database" in lines[str(other)]
    assert "newer probe" in lines[str(newer)] and "m999_future" in lines[str(newer)]
    assert "no such file" in lines[str(tmp_path / "missing.db")]
    assert "it is the destination" in lines[str(dest_path)]
    assert "Traceback" not in result.output and "6 of 8 source(s) not merged" in result.output
    assert "runs +2" in lines[str(a_path)] and "runs +1" in lines[str(b_path)]
    assert _verdicts(dest_path) == {**_verdicts(a_path), **_verdicts(b_path)}


def _old_database(path: Path) -> sqlite_utils.Database:
    """A database as probe made it before UUIDs (every schema step up to m004)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(path)
    db.enable_wal()
    storage.migrations.apply(db, stop_before="m007_uuids")
    storage.m008_attempts(db)  # the columns today's writer fills (not recorded: a merge applies m008 again)
    storage.m012_quic(db)  # (and m012's)
    storage.m011_transfer(db)  # (and m011's)
    return db


async def test_old_databases_are_migrated_in_a_copy_and_copies_agree(net, tmp_path):
    targets, _ = read_inputs([net.http("ok.test"), net.http("nx.test"), net.http("reset.test", "/x")])
    old = _old_database(tmp_path / "old" / "old.db")
    await run_async(old, targets, net.options())
    assert "uuid" not in old.table("measurements").columns_dict
    old.close()
    copy = tmp_path / "copy" / "old.db"
    copy.parent.mkdir()
    copy.write_bytes((tmp_path / "old" / "old.db").read_bytes())
    # The volunteer's probe still has it open: committed rows sit in the write-ahead log beside the file.
    live = _old_database(tmp_path / "old" / "old.db")
    live.conn.execute("pragma wal_autocheckpoint = 0")
    await run_async(live, targets, net.options())
    assert Path(str(tmp_path / "old" / "old.db") + "-wal").stat().st_size > 0
    before = _files(tmp_path / "old" / "old.db")

    dest = open_db(tmp_path / "all.db")
    reports = list(merge(dest, [tmp_path / "old" / "old.db", copy]))
    assert [r.error for r in reports] == [None, None]
    assert reports[0].migrated == ("m007_uuids", "m008_attempts", "m009_methods_and_verdict_history", "m010_meta",
                                   "m012_quic", "m013_locate", "m011_transfer")
    assert reports[0].added["runs"] == 2
    assert reports[0].added["measurements"] == 6
    # The copy taken before the second run holds the first run only, and its UUIDs, derived from the rows
    # themselves when migrated apart, agree with the other copy's: nothing is added twice.
    assert reports[1].added["measurements"] == 0 and reports[1].skipped["runs"] == 1
    assert _files(tmp_path / "old" / "old.db") == before
    assert "uuid" not in live.table("measurements").columns_dict  # the live source was not migrated
    live.close()
    got = {(r["run_id"], r["url"], r["status"]) for r in dest.query("select run_id, url, status from measurements")}
    assert len(got) == 6 and {r[1] for r in got} == {t.url for t in targets}
    uuids = [r[0] for r in dest.execute("select uuid from measurements")]
    assert len(set(uuids)) == 6 and all(uuid.UUID(u).version == 5 for u in uuids)


def _clickhouse(tmp_path: Path, steps: list[tuple[str, dict[str, str]]]) -> list[list[list]]:
    """Statements run in ClickHouse (chDB, in its own venv: .ci/run makes it); the rows of each."""
    python = chdb_python()
    if python is None or not Path(python).exists():
        if os.environ.get("CI"):
            pytest.fail(f"chdb not found ({python or DEFAULT_CHDB_PYTHON}): .ci/run must prepare its venv")
        pytest.skip(f"chdb not found: python3 -m venv {Path(DEFAULT_CHDB_PYTHON).parents[1]} && "
                    f"{Path(DEFAULT_CHDB_PYTHON).parent}/pip install chdb")
    return run_chdb(str(tmp_path / "chdb"), steps, python)


def _readme_block(lang: str, first_line: str) -> str:
    for block in re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"README has no ```{lang} block starting {first_line!r}")


def _type(name: str) -> str:
    """A ClickHouse type as one line (DESCRIBE spreads tuples over lines)."""
    return re.sub(r"\s+", " ", re.sub(r"\(\s+", "(", name)).strip()


def _monday(iso: str) -> str:
    d = dt.datetime.fromisoformat(iso).date()
    return (d - dt.timedelta(days=d.weekday())).isoformat()


async def test_parquet_loads_into_clickhouse_and_the_readme_queries_agree_with_sqlite(volunteers, tmp_path):
    a_path, b_path, blocked_url, ok_url = volunteers
    dest_path = tmp_path / "all.db"
    runner = CliRunner()
    result = runner.invoke(cli, ["merge", str(a_path), str(b_path), "--into", str(dest_path)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "parquet"
    result = runner.invoke(cli, ["export", "--db", str(dest_path), "--format", "parquet", "--all", "-o", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["export", "--format", "clickhouse-schema"])
    assert result.exit_code == 0
    ddl = result.output

    db = sqlite3.connect(dest_path)
    expected_rows = {
        "measurements": _count(db, "measurements"), "dns_queries": _count(db, "dns_queries"),
        "tcp_connects": _count(db, "tcp_connects"), "tls_handshakes": _count(db, "tls_handshakes"),
        "http_hops": _count(db, "http_hops"), "claims": _count(db, "claims"), "claim_items": _count(db, "claim_items"),
        "ttl_probes": _count(db, "ttl_probes"),
    }
    assert expected_rows["tls_handshakes"] > 0 and expected_rows["http_hops"] > 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t.name}.parquet" for t in TABLES)

    # The README's load, file by file: ClickHouse stops at the first row it cannot take, so a count equal to
    # SQLite's means none was rejected. `INSERT ... FORMAT Parquet` matches by name and type: DESCRIBE shows the
    # file's types are the table's.
    steps: list[tuple[str, dict[str, str]]] = [("CREATE DATABASE research", {})]
    steps += [(s.replace("CREATE TABLE IF NOT EXISTS ", "CREATE TABLE research."), {}) for s in statements(ddl)]
    for t in TABLES:
        steps += [(f"INSERT INTO research.{t.name} SELECT * FROM file('{out / t.name}.parquet', Parquet)", {}),
                  (f"SELECT count() FROM research.{t.name}", {}),
                  (f"DESCRIBE file('{out / t.name}.parquet', Parquet)", {}),
                  (f"SELECT name, type FROM system.columns WHERE database = 'research' AND table = '{t.name}' "
                   "ORDER BY position", {})]
    since = (dt.date.today() - dt.timedelta(days=7)).isoformat()
    steps += [("USE research", {}),
              # Typed columns came through: booleans and structs, arrays, tuples.
              ("SELECT countIf(NOT decoy), countIf(length(peer_chain) > 0) FROM tls_handshakes", {}),
              ("SELECT count() FROM dns_queries WHERE has(answers, '127.0.0.1')", {}),
              ("SELECT count() FROM http_hops WHERE arrayExists(h -> lower(h[1]) = 'content-type', headers)", {}),
              (_readme_block("sql", "-- blocked per network per week"), {}),
              (_readme_block("sql", "-- newly blocked since a date"), {"since": since}),
              (_readme_block("sql", "-- a claim against what was measured"), {"claim": "test-claim"})]
    results = iter(_clickhouse(tmp_path, steps)[1 + len(statements(ddl)):])
    for t in TABLES:
        assert next(results) == []
        assert next(results) == [[expected_rows[t.name]]], t.name
        in_file = [[n, _type(ty)] for n, ty, *_ in next(results)]
        in_table = [[n, _type(re.sub(r"^LowCardinality\((.*)\)$", r"\1", ty))] for n, ty in next(results)]
        assert in_file == in_table, t.name
    assert next(results) == []
    handshakes, with_chain = next(results)[0]
    assert handshakes > 0 and with_chain > 0
    assert next(results)[0][0] > 0
    assert next(results)[0][0] > 0
    got_weekly, got_newly, got_claim = next(results), next(results), next(results)

    rows = db.execute("select r.vantage_asn, r.vantage_network, coalesce(m.started, r.started), m.status, m.url "
                      "from measurements m join runs r on r.id = m.run_id").fetchall()
    db.close()
    weekly: dict[tuple, list[int]] = {}
    for asn, network, started, status, _ in rows:
        w = weekly.setdefault((asn, network, _monday(started)), [0, 0])
        w[0] += status == "blocked"
        w[1] += 1
    assert got_weekly == [[asn, net, week, b, n] for (asn, net, week), (b, n) in sorted(weekly.items())]
    # A, A, B; in A's first run only ghost.test is blocked (its resolver makes up an address for a name that
    # does not exist, in every run).
    assert len(got_weekly) == 3 and got_weekly[0][3] == 1 and got_weekly[1][3] > got_weekly[2][3] > 0

    earlier = {(asn, url) for asn, _, started, _, url in rows if started[:10] < since}
    blocked_before = {(asn, url) for asn, _, started, status, url in rows if started[:10] < since and
                      status == "blocked"}
    newly = sorted({(asn, url) for asn, _, started, status, url in rows if started[:10] >= since and
                    status == "blocked"} & earlier - blocked_before)
    assert [(r[0], r[1]) for r in got_newly] == newly
    assert newly and {asn for asn, _ in newly} == {NET_A}  # B was never measured before: nothing "newly"

    want_claim = []
    for url in sorted(u for (u,) in sqlite3.connect(dest_path).execute("select url from claim_items")):
        hits = [(asn, status) for asn, _, _, status, u in rows if u == url]
        want_claim.append([url, len(hits), sum(s == "blocked" for _, s in hits),
                           sorted({asn for asn, s in hits if s == "blocked"})])
    assert got_claim == want_claim
    by_url = {r[0]: r for r in got_claim}
    assert by_url["http://never-measured.test/"][1] == 0
    assert NET_A in by_url[blocked_url][3] and by_url[ok_url][2] == 0 and by_url[ok_url][1] > 0


async def test_export_parquet_selects_runs_and_refuses_bad_values(volunteers, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    a_path, _, _, _ = volunteers
    runner = CliRunner()
    out = tmp_path / "one"
    result = runner.invoke(cli, ["export", "--db", str(a_path), "--format", "parquet", "--run", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out / "measurements.parquet")
    assert table.num_rows == len(SCENARIOS)
    assert table.schema.field("measured_at").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("vantage_asn").type == pa.uint32() and not table.schema.field("vantage_asn").nullable
    assert set(table.column("vantage_asn").to_pylist()) == {NET_A}
    answers = pq.ParquetFile(out / "dns_queries.parquet").schema_arrow.field("answers").type
    assert answers == pa.list_(pa.field("element", pa.string(), nullable=False))
    today = dt.date.today().isoformat()
    result = runner.invoke(cli, ["export", "--db", str(a_path), "--format", "parquet", "--since", today,
                                 "-o", str(tmp_path / "recent")])
    assert result.exit_code == 0 and pq.read_table(tmp_path / "recent" / "measurements.parquet").num_rows == len(
        SCENARIOS), "only the run measured now, not the one two weeks ago"
    for args, message in ((["--since", "2025-02-30"], "--since wants a date YYYY-MM-DD, got '2025-02-30'"),
                          (["--run", "99"], "no run 99"),
                          (["--run", "1", "--all"], "give one of --run, --since or --all"),
                          (["--all"], "--format parquet needs -o DIR")):
        extra = [] if "needs -o" in message else ["-o", str(tmp_path / "x")]
        result = runner.invoke(cli, ["export", "--db", str(a_path), "--format", "parquet", *args, *extra])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
    result = runner.invoke(cli, ["export", "--db", str(a_path), "--format", "csv", "--all"])
    assert result.exit_code == 1 and "apply to --format parquet" in result.output


async def test_odd_rows_never_stop_an_export_and_both_converters_agree(volunteers, tmp_path, monkeypatch):
    """Rows go through Arrow's JSON reader; a batch it refuses is converted row by row in Python instead. Both
    must give the same files, and an odd stored value (a list column holding an object, a time that is not
    one, broken JSON) becomes an empty list or NULL (the epoch where the column cannot be NULL)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from probe.research import parquet
    from probe.research.parquet import Selection, export_parquet

    a_path, _, _, _ = volunteers
    db = open_db(a_path)
    export_parquet(db, Selection(), tmp_path / "fast", batch_rows=7)

    def refuse(text, schema):
        raise pa.ArrowInvalid("as if a row were odd")

    with monkeypatch.context() as m:
        m.setattr(parquet, "_parse_batch", refuse)
        export_parquet(db, Selection(), tmp_path / "slow", batch_rows=7)
    for t in TABLES:
        fast, slow = pq.read_table(tmp_path / "fast" / f"{t.name}.parquet"), pq.read_table(
            tmp_path / "slow" / f"{t.name}.parquet")
        assert fast.num_rows > 0 or t.name == "claims"
        assert fast.equals(slow), t.name

    with db.atomic():
        first = db.execute("select min(measurement_id) from http_hops where measurement_id in "
                           "(select measurement_id from dns_queries)").fetchone()[0]
        db.execute("update measurements set started = 'yesterday' where id = ?", [first])
        db.execute("update dns_queries set answers = '{\"not\": \"a list\"}', late_answers = '[{\"answers\": ' "
                   "where measurement_id = ?", [first])
        db.execute("update http_hops set headers = 'garbage' where measurement_id = ?", [first])
    counts = export_parquet(db, Selection(), tmp_path / "odd")
    assert counts == {t.name: pq.read_table(tmp_path / "fast" / f"{t.name}.parquet").num_rows for t in TABLES}
    m_uuid = db.execute("select uuid from measurements where id = ?", [first]).fetchone()[0]
    rows = pq.read_table(tmp_path / "odd" / "measurements.parquet").to_pylist()
    odd = next(r for r in rows if r["measurement_uuid"] == m_uuid)
    assert odd["measured_at"] == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert all(r["measured_at"].year > 2000 for r in rows if r is not odd)
    dns = [r for r in pq.read_table(tmp_path / "odd" / "dns_queries.parquet").to_pylist()
           if r["measurement_uuid"] == m_uuid]
    assert dns and all(r["answers"] == [] and r["late_answers"] == [] for r in dns)
    hops = [r for r in pq.read_table(tmp_path / "odd" / "http_hops.parquet").to_pylist()
            if r["measurement_uuid"] == m_uuid]
    assert hops and all(r["headers"] == [] for r in hops)
    db.close()
