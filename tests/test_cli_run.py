"""`probe run` as a user runs it: a subprocess against loopback servers running in a background thread."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

PROBE = [sys.executable, "-m", "probe"]


def probe_cmd(dns_port: int, db, *args: str) -> list[str]:
    return [*PROBE, "run", "--db", str(db), "--resolver", f"127.0.0.1:{dns_port}", "--no-system-resolver",
            "--no-control",
            "--allow-net", "127.0.0.0/8", "--timeout", "2", "--dns-timeout", "1", "--late-window", "0.1", *args]


def test_run_json_matches_database(internet, tmp_path):
    dns_port, http_port, _ = internet
    urls = [f"http://site{i}.test:{http_port}/" for i in range(5)] + ["http://nx.test/"]
    listing = tmp_path / "list.txt"
    listing.write_text("# a comment\n" + "\n".join(urls) + "\nnotaurl.test\n")
    db = tmp_path / "r.db"
    proc = subprocess.run(probe_cmd(dns_port, db, str(listing), "--json"), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"{listing}:8: no scheme" in proc.stderr  # the bad line is named, the rest measured
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert sorted(x["url"] for x in lines) == sorted(urls)
    con = sqlite3.connect(db)
    stored = {u: (s, d) for u, s, d in con.execute("select url, status, detail from measurements")}
    assert stored == {x["url"]: (x["status"], x["detail"]) for x in lines}
    assert stored["http://nx.test/"] == ("anomaly", "dns/dns_nxdomain_error")
    assert con.execute("select status from runs").fetchone()[0] == "done"


def test_bad_input_exits_1_with_the_reason(tmp_path):
    proc = subprocess.run([*PROBE, "run", "--db", str(tmp_path / "x.db"), "--no-control", "--resolver",
                           "127.0.0.1:9", str(tmp_path / "missing.txt")], capture_output=True, text=True)
    assert proc.returncode == 1 and "cannot read list" in proc.stderr and "missing.txt" in proc.stderr
    proc = subprocess.run([*PROBE, "run", "--resolver", "not-an-ip", "--no-control", "http://a.test/"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "not-an-ip" in proc.stderr


def _start_slow_run(internet, tmp_path, n: int):
    dns_port, http_port, sites = internet
    sites.delay = 0.2
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(f"http://s{i}.test:{http_port}/" for i in range(n)))
    db = tmp_path / "r.db"
    proc = subprocess.Popen(probe_cmd(dns_port, db, str(listing), "--json", "--concurrency", "4"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, db


def _wait_for_lines(proc, k: int) -> list[str]:
    lines = []
    assert proc.stdout is not None
    while len(lines) < k:
        line = proc.stdout.readline()
        assert line, "probe ended early"
        lines.append(line)
    return lines


def test_sigkill_keeps_every_finished_measurement(internet, tmp_path):
    proc, db = _start_slow_run(internet, tmp_path, 60)
    printed = _wait_for_lines(proc, 10)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    con = sqlite3.connect(db)
    assert con.execute("pragma integrity_check").fetchone()[0] == "ok"
    stored = {r[0] for r in con.execute("select url from measurements")}
    # A line is printed only after its commit: every printed URL must be in the database.
    assert {json.loads(x)["url"] for x in printed} <= stored
    assert 10 <= len(stored) < 60
    assert con.execute("select status from runs").fetchone()[0] == "running"


def test_sigterm_stops_flushes_and_exits_143(internet, tmp_path):
    proc, db = _start_slow_run(internet, tmp_path, 60)
    _wait_for_lines(proc, 5)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    con = sqlite3.connect(db)
    assert con.execute("select status from runs").fetchone()[0] == "interrupted"
    n = con.execute("select count(*) from measurements").fetchone()[0]
    assert 5 <= n < 60


def test_max_runtime_stops_with_exit_2(internet, tmp_path):
    dns_port, http_port, sites = internet
    sites.delay = 0.5
    listing = tmp_path / "l.txt"
    listing.write_text("\n".join(f"http://m{i}.test:{http_port}/" for i in range(40)))
    t = time.monotonic()
    proc = subprocess.run(probe_cmd(dns_port, tmp_path / "r.db", str(listing), "--concurrency", "2",
                                    "--max-runtime", "2", "--quiet"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - t < 15
    con = sqlite3.connect(tmp_path / "r.db")
    assert con.execute("select status from runs").fetchone()[0] == "partial"
