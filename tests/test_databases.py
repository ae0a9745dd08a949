"""Databases are opened safely: never created by a read, never changed when wrong, readable on read-only media."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess

import pytest

from probe import storage
from probe.measure.targets import normalise
from tests.test_cli_run import PROBE, probe_cmd

READ_COMMANDS = [["runs"], ["results"], ["diff", "1", "2"], ["claims", "list"], ["claims", "compare", "k"],
                 ["report", "--html", "r.html"], ["export"], ["datasette", "--metadata", "m.json"], ["reanalyze"]]


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_db(path, n: int = 2000) -> None:
    """A real probe database with one run of n targets (several pages), WAL folded in."""
    db = storage.open_db(path)
    storage.create_run(db, options={}, software_version="t", rules_version="t",
                       targets=[normalise(f"http://s{i}.test/") for i in range(n)], resolvers=[])
    storage.close(db)


def _one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_mistyped_path_creates_nothing(tmp_path):
    missing = tmp_path / "typo" / "probe.db"
    for args in READ_COMMANDS:
        proc = subprocess.run([*PROBE, *args, "--db", str(missing)], capture_output=True, text=True, cwd=tmp_path)
        _one_line_error(proc, f"no database at {missing}", "probe run")
    resume = subprocess.run([*PROBE, "run", "--resume", "--db", str(missing)], capture_output=True, text=True)
    _one_line_error(resume, f"no database at {missing}", "nothing to resume")
    assert list(tmp_path.iterdir()) == [], "no database, directory, lock, report or metadata file was made"


def test_run_checks_its_inputs_before_creating_the_database(tmp_path):
    db = tmp_path / "new" / "probe.db"
    proc = subprocess.run([*PROBE, "run", "--db", str(db), "--no-control", "--resolver", "127.0.0.1:9",
                           str(tmp_path / "missing.txt")], capture_output=True, text=True)
    _one_line_error(proc, "missing.txt")
    bare = subprocess.run([*PROBE, "run", "--db", str(db), "--no-control", "--resolver", "127.0.0.1:9",
                           "example.com"], capture_output=True, text=True, cwd=tmp_path)
    _one_line_error(bare, "cannot read list example.com", "http://example.com")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("kind", ["not-sqlite", "damaged"])
def test_wrong_files_get_one_line_and_stay_unchanged(kind, tmp_path, internet):
    dns_port, http_port, _ = internet
    db = tmp_path / "probe.db"
    if kind == "not-sqlite":
        db.write_text("url\nhttp://a.test/\n")  # a list passed as --db by mistake
    else:
        _make_db(db)
        pages = db.stat().st_size // 4096
        with db.open("r+b") as f:  # garbage over a page in the middle of the run's targets
            f.seek(4096 * (pages // 2))
            f.write(b"\xff" * 4096)
    before = _digest(db)
    what = "is not a SQLite database" if kind == "not-sqlite" else "is damaged"
    for args in (["runs"], ["results"], ["reanalyze"], ["export"]):
        _one_line_error(subprocess.run([*PROBE, *args, "--db", str(db)], capture_output=True, text=True),
                        str(db), what)
    run = subprocess.run(probe_cmd(dns_port, db, f"http://a.test:{http_port}/"), capture_output=True, text=True,
                         timeout=60)
    _one_line_error(run, str(db), what)
    assert _digest(db) == before
    assert not (tmp_path / "probe.db.lock").exists(), "not even a lock file beside it"
    wal = tmp_path / "probe.db-wal"  # SQLite's own read-only open may leave an empty WAL index, never content
    assert not wal.exists() or wal.stat().st_size == 0


needs_mounts = pytest.mark.root("unshare", "mount")  # a tmpfs remounted read-only, in a private mount namespace


def _on_read_only_media(tmp_path, files: list, *probe_args: str) -> subprocess.CompletedProcess:
    """Copy files onto a tmpfs, remount it read-only, run probe there; all in a private mount namespace."""
    media = tmp_path / "media"
    media.mkdir(exist_ok=True)
    copies = " ".join(f"cp {f} {media}/;" for f in files)
    args = " ".join(f"'{a}'" for a in probe_args)
    script = (f"mount -t tmpfs -o size=32m tmpfs {media} && {copies} mount -o remount,ro {media} && "
              f"cd {media} && exec {' '.join(PROBE)} {args}")
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)


@needs_mounts
def test_read_only_media_are_read_and_never_written(tmp_path, internet):
    dns_port, http_port, _ = internet
    db = tmp_path / "probe.db"
    run = subprocess.run(probe_cmd(dns_port, db, f"http://a.test:{http_port}/", "http://nx.test/"),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "probe.db-wal").exists() or (tmp_path / "probe.db-wal").stat().st_size == 0
    media_db = str(tmp_path / "media" / "probe.db")
    runs = _on_read_only_media(tmp_path, [db], "runs", "--json", "--db", media_db)
    assert runs.returncode == 0, runs.stderr
    assert '"urls": 2' in runs.stdout
    results = _on_read_only_media(tmp_path, [db], "results", "--db", media_db)
    assert results.returncode == 0 and "nx.test" in results.stdout, results.stderr
    write = _on_read_only_media(tmp_path, [db], "run", "--db", media_db, "--no-control", "--resolver",
                                f"127.0.0.1:{dns_port}", f"http://a.test:{http_port}/")
    _one_line_error(write, media_db)
    fresh = _on_read_only_media(tmp_path, [db], "run", "--db", str(tmp_path / "media" / "new" / "p.db"),
                                "--no-control", "--resolver", f"127.0.0.1:{dns_port}", f"http://a.test:{http_port}/")
    _one_line_error(fresh, "media/new", "Read-only file system")


@needs_mounts
def test_changes_left_in_the_wal_are_not_silently_skipped_on_read_only_media(tmp_path):
    db_path = tmp_path / "probe.db"
    db = storage.open_db(db_path)
    storage.create_run(db, options={}, software_version="t", rules_version="t",
                       targets=[normalise("http://a.test/")], resolvers=[])
    wal = tmp_path / "probe.db-wal"
    shutil.copy(db_path, tmp_path / "copy.db")  # as archived while a run was still writing
    shutil.copy(wal, tmp_path / "copy.db-wal")
    db.close()
    assert (tmp_path / "copy.db-wal").stat().st_size > 0
    proc = _on_read_only_media(tmp_path, [tmp_path / "copy.db", tmp_path / "copy.db-wal"], "runs", "--db",
                               str(tmp_path / "media" / "copy.db"))
    _one_line_error(proc, "copy.db-wal", "copy both files")


def test_a_fresh_database_has_a_column_for_every_stored_field(tmp_path):
    import dataclasses

    db = storage.open_db(tmp_path / "f.db")
    for table, cls in storage.STEP_TABLES.items():
        fields = {f.name for f in dataclasses.fields(cls)} - {"body"}
        assert fields <= set(db.table(table).columns_dict), f"{table}: a new field needs a migration"
    assert [m.name for m in storage.migrations.applied(db)] == [
        "m001_initial", "m002_vantage_failure", "m003_claims", "m004_tls_first_failure", "m005_paths_and_steps",
        "m006_ooni_failure_names", "m007_uuids", "m008_attempts", "m009_methods_and_verdict_history",
        "m010_meta", "m012_quic", "m013_locate", "m011_transfer"]  # (file order: m011 landed last)
    con = sqlite3.connect(tmp_path / "f.db")
    assert con.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_run_names_its_database_by_absolute_path_and_logs_refusals(tmp_path, internet):
    dns_port, http_port, _ = internet
    proc = subprocess.run([*probe_cmd(dns_port, "rel.db", f"http://a.test:{http_port}/")], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and f"-> {tmp_path / 'rel.db'}" in proc.stderr, proc.stderr
    (tmp_path / "bad.db").write_text("not a database")
    log = tmp_path / "probe.log"
    proc = subprocess.run(probe_cmd(dns_port, tmp_path / "bad.db", f"http://a.test:{http_port}/", "--log", str(log)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "is not a SQLite database" in log.read_text()


def test_reading_a_database_of_an_older_release_never_changes_it(tmp_path):
    """An archive made by the previous release (no m005/m006 yet): read through a migrated temporary copy."""
    path = tmp_path / "old.db"
    _make_db(path, n=3)
    con = sqlite3.connect(path)
    con.execute("alter table http_hops drop column chain")
    con.execute("delete from _sqlite_migrations where name in ('m005_paths_and_steps', 'm006_ooni_failure_names')")
    con.commit()
    con.close()
    before = _digest(path)
    for cmd in (["runs"], ["results"], ["export", "--format", "jsonl"]):
        proc = subprocess.run([*PROBE, *cmd, "--db", str(path)], capture_output=True, text=True, cwd=tmp_path)
        # `results` of a run that stored no verdict says so and exits 7 (README, exit codes).
        assert proc.returncode == (7 if cmd == ["results"] else 0), (cmd, proc.stderr)
    assert _digest(path) == before
    assert not os.path.exists(f"{path}-wal") or os.path.getsize(f"{path}-wal") == 0
    con = sqlite3.connect(path)
    assert "chain" not in {r[1] for r in con.execute("pragma table_info(http_hops)")}
    con.close()
