"""Resume keeps the run's options and its past: kill -9, resume offline (nothing changes), resume online.

The offline session runs in `unshare -n`: a private network namespace whose only interface (lo) is down, so
nothing at all answers, as on a volunteer's machine with the cable pulled.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess

import pytest

from tests.test_cli_run import PROBE, _wait_for_lines, probe_cmd

needs_unshare = pytest.mark.root("unshare")  # a private network namespace
ROW = "select id, url, status, layer, detail, fingerprint, control, rule, evidence, runtime_s from measurements"


def _rows(db) -> dict[int, tuple]:
    with sqlite3.connect(db) as con:
        return {r[0]: r for r in con.execute(ROW)}


def _run_status(db) -> tuple[str, int]:
    with sqlite3.connect(db) as con:
        return con.execute("select status, url_count from runs").fetchone()


def _listing(tmp_path, http_port: int, n: int):
    path = tmp_path / "list.txt"
    urls = [f"http://s{i}.test:{http_port}/" for i in range(n - 1)] + ["http://nx.test/"]
    path.write_text("\n".join(urls) + "\n")
    return path, urls


@needs_unshare
def test_kill_then_offline_resume_changes_nothing_then_online_resume_uses_the_saved_options(internet, tmp_path):
    dns_port, http_port, sites = internet
    sites.delay = 0.2
    listing, urls = _listing(tmp_path, http_port, 60)
    db = tmp_path / "r.db"
    # --allow-net matters: without it every loopback answer is a bogon. --keep-bodies all too: rows show it.
    first = subprocess.Popen(probe_cmd(dns_port, db, str(listing), "--json", "--concurrency", "4",
                                       "--keep-bodies", "all"),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    _wait_for_lines(first, 10)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = _rows(db)
    assert 10 <= len(before) < 60
    assert _run_status(db) == ("running", 60)

    offline = subprocess.run(["unshare", "-n", *PROBE, "run", "--resume", "--db", str(db), "--json"],
                             capture_output=True, text=True, timeout=120)
    assert offline.returncode == 3, offline.stderr
    assert offline.stdout == "", "nothing stored, nothing printed"
    assert "offline" in offline.stderr and f"probe run --resume --db {db}" in offline.stderr
    assert _rows(db) == before, "an offline session rewrites nothing"
    assert _run_status(db) == ("offline", 60)

    online = subprocess.run([*PROBE, "run", "--resume", "--db", str(db), "--json"], capture_output=True,
                            text=True, timeout=180)
    assert online.returncode == 0, online.stderr
    assert "with the run's own options" in online.stderr
    after = _rows(db)
    assert {k: v for k, v in after.items() if k in before} == before, "earlier sessions' rows are untouched"
    assert sorted(r[1] for r in after.values()) == sorted(urls), "every URL measured exactly once"
    assert _run_status(db) == ("done", 60)
    new = {r[1]: r for k, r in after.items() if k not in before}
    # Measured with the saved options: loopback answers count as public (--allow-net), so the sites are ok.
    for url, row in new.items():
        expected = ("anomaly", "dns/dns_nxdomain_error") if url == "http://nx.test/" else ("ok", "ok")
        assert (row[2], row[4]) == expected, row
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from bodies").fetchone()[0] >= 1  # --keep-bodies all, kept too
    # What was printed is what is stored.
    printed = [json.loads(line) for line in online.stdout.splitlines()]
    assert {p["url"]: (p["status"], p["layer"], p["detail"], p["fingerprint"], p["control"], p["rule"],
                       p["evidence"], p["runtime_s"]) for p in printed} == {u: r[2:] for u, r in new.items()}


def test_resume_refuses_an_option_that_differs_and_accepts_harmless_ones(internet, tmp_path):
    dns_port, http_port, _ = internet
    listing, _urls = _listing(tmp_path, http_port, 12)
    db = tmp_path / "r.db"
    huge = str(10**9)  # stops at the first commit, leaving the whole run to resume
    stopped = subprocess.run(probe_cmd(dns_port, db, str(listing), "--min-free-mb", huge), capture_output=True,
                             text=True, timeout=60)
    assert stopped.returncode == 2, stopped.stderr
    conflict = subprocess.run([*PROBE, "run", "--resume", "--db", str(db), "--timeout", "5"], capture_output=True,
                              text=True, timeout=60)
    assert conflict.returncode == 1
    assert "--timeout" in conflict.stderr and "2.0" in conflict.stderr and "5.0" in conflict.stderr
    assert "Traceback" not in conflict.stderr and len(conflict.stderr.strip().splitlines()) == 1
    assert _run_status(db)[0] == "disk-full", "a refused resume changes nothing"
    # The same value again is fine, and so are output, logging and lock options.
    same = subprocess.run([*PROBE, "run", "--resume", "--db", str(db), "--timeout", "2", "--quiet", "--json",
                           "--wait-lock", "1", "--log", str(tmp_path / "log")], capture_output=True, text=True,
                          timeout=120)
    assert same.returncode == 0, same.stderr
    assert len(same.stdout.splitlines()) == 12
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from runs").fetchone()[0] == 1


@needs_unshare
def test_offline_no_control_run_prints_and_stores_nothing_and_stays_resumable(internet, tmp_path):
    dns_port, http_port, _ = internet
    listing, urls = _listing(tmp_path, http_port, 5)
    db = tmp_path / "r.db"
    offline = subprocess.run(["unshare", "-n", *probe_cmd(dns_port, db, str(listing), "--json")],
                             capture_output=True, text=True, timeout=120)
    assert offline.returncode == 3, offline.stderr
    assert offline.stdout == ""
    assert "0/5 measured" in offline.stderr and str(db) in offline.stderr
    assert _rows(db) == {} and _run_status(db) == ("offline", 5)
    online = subprocess.run([*PROBE, "run", "--resume", "--db", str(db), "--json"], capture_output=True,
                            text=True, timeout=120)
    assert online.returncode == 0, online.stderr
    printed = {json.loads(x)["url"]: json.loads(x)["status"] for x in online.stdout.splitlines()}
    assert printed == {r[1]: r[2] for r in _rows(db).values()}
    assert sorted(printed) == sorted(urls)


def test_interruption_says_how_to_resume(internet, tmp_path):
    dns_port, http_port, sites = internet
    sites.delay = 0.3
    listing, _ = _listing(tmp_path, http_port, 40)
    db = tmp_path / "r.db"
    proc = subprocess.Popen(probe_cmd(dns_port, db, str(listing), "--json", "--concurrency", "2"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_lines(proc, 2)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert f"probe run --resume --db {db}" in err
