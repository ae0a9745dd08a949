"""Local faults are never censorship: a probe starved of file descriptors reports `error`."""

from __future__ import annotations

import resource
import sqlite3
import subprocess

from probe import open_db
from probe.storage import measurements
from tests.conftest import write_golden
from tests.test_cli_run import probe_cmd


def _tiny_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))


def test_emfile_is_an_error_never_interference(internet, tmp_path):
    dns_port, http_port, sites = internet
    sites.delay = 0.3  # keep many URLs in flight at once
    listing = tmp_path / "l.txt"
    listing.write_text("\n".join(f"http://f{i}.test:{http_port}/" for i in range(60)))
    db = tmp_path / "r.db"
    # One process (workers each get their own limit), and more URLs in flight than descriptors left.
    proc = subprocess.run(probe_cmd(dns_port, db, str(listing), "--concurrency", "40", "--workers", "1", "--quiet"),
                          capture_output=True, text=True, timeout=120, preexec_fn=_tiny_fd_limit)
    assert proc.returncode == 0, proc.stderr
    con = sqlite3.connect(db)
    rows = con.execute("select status, detail from measurements").fetchall()
    assert len(rows) == 60, "every URL gets a verdict"
    statuses = {s for s, _ in rows}
    assert statuses <= {"ok", "error"}, rows
    assert any(d.startswith("local/local_error: EMFILE") for _, d in rows), rows
    stored = open_db(db)
    starved = next(m for m in measurements(stored) if m["rule"] == "local-error")
    write_golden(stored, starved, "emfile")
