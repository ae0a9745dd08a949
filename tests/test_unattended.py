"""Unattended runs: locking, resume after kills, config files, consent, low disk, logs, exit codes."""

from __future__ import annotations

import json
import os
import pty
import random
import signal
import sqlite3
import subprocess
import sys
import time

from tests.test_cli_run import PROBE, _wait_for_lines, probe_cmd


def _list(tmp_path, http_port: int, n: int, name: str = "l.txt"):
    path = tmp_path / name
    path.write_text("\n".join(f"http://u{i}.test:{http_port}/" for i in range(n)))
    return path


def test_two_runs_on_one_database_never_overlap(internet, tmp_path):
    dns_port, http_port, sites = internet
    sites.delay = 0.3
    listing = _list(tmp_path, http_port, 20)
    db = tmp_path / "r.db"
    first = subprocess.Popen(probe_cmd(dns_port, db, str(listing), "--json", "--concurrency", "2"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_lines(first, 1)  # it holds the lock now
    second = subprocess.run(probe_cmd(dns_port, db, str(listing), "--quiet"), capture_output=True, text=True,
                            timeout=30)
    assert second.returncode == 4, second.stderr
    assert "another probe run" in second.stderr and "--wait-lock" in second.stderr
    waiting = subprocess.run(probe_cmd(dns_port, db, str(listing), "--quiet", "--wait-lock", "60"),
                             capture_output=True, text=True, timeout=90)
    first.communicate(timeout=60)
    assert first.returncode == 0 and waiting.returncode == 0, waiting.stderr
    con = sqlite3.connect(db)
    assert con.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert con.execute("select count(*), count(distinct run_id) from measurements").fetchone() == (40, 2)
    # The runs did not overlap: the second started after the first finished.
    (f_end,), (s_start,) = con.execute("select finished from runs where id = 1"), \
        con.execute("select started from runs where id = 2")
    assert s_start >= f_end


def _wait_for_run(db, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:  # never create it ourselves
                if con.execute("select count(*) from runs").fetchone()[0]:
                    return
        except sqlite3.OperationalError:  # no database or no table yet
            pass
        time.sleep(0.05)
    raise AssertionError(f"no run recorded in {db} within {timeout} s")


def test_sigkill_at_random_points_then_resume_measures_each_url_exactly_once(internet, tmp_path):
    dns_port, http_port, sites = internet
    sites.delay = 0.1
    n = 200
    listing = _list(tmp_path, http_port, n)
    db = tmp_path / "r.db"
    rng = random.Random(7)
    proc = subprocess.Popen(probe_cmd(dns_port, db, str(listing), "--quiet", "--concurrency", "4"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_run(db)  # a kill before the run is recorded would leave nothing to resume
    kills = 0
    for _ in range(10):
        time.sleep(rng.uniform(0.3, 1.2))  # start-up takes ~0.35 s: most kills land mid-measurement
        proc.kill()
        proc.wait()
        kills += proc.returncode == -signal.SIGKILL
        proc = subprocess.Popen(probe_cmd(dns_port, db, "--quiet", "--concurrency", "4", "--resume"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert kills == 10, "every kill landed on a running probe"
    con = sqlite3.connect(db)
    assert con.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert con.execute("select count(*) from runs").fetchone()[0] == 1
    assert con.execute("select count(*), count(distinct url) from measurements").fetchone() == (n, n)
    assert con.execute("select status from runs").fetchone()[0] == "done"
    nothing_left = subprocess.run(probe_cmd(dns_port, db, "--quiet", "--resume"), capture_output=True, text=True)
    assert nothing_left.returncode == 1 and "no unfinished run" in nothing_left.stderr


def test_config_file_options_and_command_line_wins(internet, tmp_path):
    dns_port, http_port, _ = internet
    listing = _list(tmp_path, http_port, 3)
    config = tmp_path / "probe.toml"
    config.write_text(f"""
db = "from-config.db"
[run]
inputs = ["{listing}"]
resolver = ["127.0.0.1:{dns_port}"]
no-system-resolver = true
no_control = true
allow-net = ["127.0.0.0/8"]
timeout = 2
quiet = true
""")
    proc = subprocess.run([*PROBE, "--config", str(config), "run", "--json"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 3 and proc.stderr == ""
    assert (tmp_path / "from-config.db").exists(), "relative to the config file, not the working directory"
    # Every command finds the same database through the config: `db` is top-level, not `probe run`'s alone.
    listed = subprocess.run([*PROBE, "--config", str(config), "runs", "--json"], capture_output=True, text=True,
                            cwd="/")
    assert listed.returncode == 0 and json.loads(listed.stdout)["urls"] == 3, listed.stderr
    other = tmp_path / "cli.db"
    proc = subprocess.run([*PROBE, "--config", str(config), "run", "--db", str(other)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and other.exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("[run]\nfrobnicate = 1\n")
    proc = subprocess.run([*PROBE, "--config", str(bad), "run"], capture_output=True, text=True)
    assert proc.returncode == 1 and "frobnicate" in proc.stderr
    bad.write_text("[run]\ndb = 'x.db'\n")  # it used to be honoured by `probe run` only
    proc = subprocess.run([*PROBE, "--config", str(bad), "runs"], capture_output=True, text=True)
    assert proc.returncode == 1 and "at the top of the file" in proc.stderr and "Traceback" not in proc.stderr


def on_a_terminal(cmd: list[str], env: dict[str, str], answer: tuple[bytes, bytes] | None = None) -> tuple[int, bytes]:
    """Run `cmd` on a pseudo-terminal until it ends; type answer[1] once answer[0] appears. (exit code, output)"""
    pid, fd = pty.fork()
    if pid == 0:  # the child: probe on a terminal
        os.execvpe(cmd[0], cmd, env)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if answer is not None and answer[0] in out:
            os.write(fd, answer[1])
            answer = None
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def test_consent_is_asked_once_interactively_and_refused_silently_otherwise(internet, tmp_path):
    dns_port, http_port, _ = internet
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    env.pop("PROBE_ACCEPT_RISK")
    cmd = probe_cmd(dns_port, tmp_path / "r.db", f"http://a.test:{http_port}/", "--quiet")
    cron = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert cron.returncode == 1 and "--accept-risk" in cron.stderr
    assert not (tmp_path / "r.db").exists(), "nothing is measured before consent"

    def interactive(answer: bytes) -> tuple[int, str]:
        code, out = on_a_terminal(cmd, env, answer=(b"accept these risks", answer))
        return code, out.decode(errors="replace")

    code, out = interactive(b"n\n")
    assert code == 1 and "your network operator" in out.lower().replace("\r\n", " ").replace("\n", " ")
    code, out = interactive(b"y\n")
    assert code == 0, out
    assert (tmp_path / "cfg" / "probe" / "accepted-risk").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, "asked once, remembered"


def test_low_disk_stops_cleanly_and_resume_finishes(internet, tmp_path):
    dns_port, http_port, _ = internet
    listing = _list(tmp_path, http_port, 10)
    db = tmp_path / "r.db"
    huge = str(10**9)  # more free megabytes than any disk has: the guard trips at the first commit
    proc = subprocess.run(probe_cmd(dns_port, db, str(listing), "--min-free-mb", huge), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--resume" in proc.stderr
    con = sqlite3.connect(db)
    assert con.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert con.execute("select status from runs").fetchone()[0] == "disk-full"
    assert con.execute("select count(*) from measurements").fetchone()[0] == 0
    proc = subprocess.run(probe_cmd(dns_port, db, "--resume", "--quiet"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert con.execute("select count(*) from measurements").fetchone()[0] == 10


def test_quiet_run_prints_nothing_and_logs_to_file(internet, tmp_path):
    dns_port, http_port, _ = internet
    log = tmp_path / "probe.log"
    proc = subprocess.run(probe_cmd(dns_port, tmp_path / "r.db", f"http://a.test:{http_port}/", "http://bad url.test/",
                                    "--quiet", "--log", str(log)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == ""
    assert "bad url" in proc.stderr  # warnings still reach stderr (cron mails them)
    text = log.read_text()
    assert "run 1: done; 1/1 measured" in text and "bad url" in text


def test_progress_line_when_not_a_tty(internet, tmp_path):
    dns_port, http_port, _ = internet
    proc = subprocess.run(probe_cmd(dns_port, tmp_path / "r.db", str(_list(tmp_path, http_port, 5))),
                          capture_output=True, text=True, timeout=60)
    assert "5/5 ok=5" in proc.stderr and "\r" not in proc.stderr


def test_json_is_the_only_stdout(internet, tmp_path):
    dns_port, http_port, _ = internet
    proc = subprocess.run(probe_cmd(dns_port, tmp_path / "r.db", f"http://a.test:{http_port}/", "--json"),
                          capture_output=True, text=True, timeout=60)
    assert [json.loads(x)["status"] for x in proc.stdout.splitlines()] == ["ok"]
    assert sys.executable  # (the JSON went to stdout, progress and summary to stderr)


def test_progress_on_a_tty_moves_every_second_with_elapsed_rate_and_eta(internet, tmp_path):
    dns_port, http_port, sites = internet
    sites.delay = 3.5  # one slow URL: nothing finishes for 3.5 s, the line must still move
    cmd = probe_cmd(dns_port, tmp_path / "r.db", f"http://slow.test:{http_port}/", "--timeout", "10")
    code, out = on_a_terminal(cmd, dict(os.environ))
    assert code == 0, out
    text = out.decode(errors="replace")
    frames = [f for f in text.split("\r") if f.startswith("[")]
    waiting = [f for f in frames if f.split("] ")[1].startswith("0/1")]
    assert len(waiting) >= 3, frames  # redrawn at least every second while the URL is slow
    assert {"0:01 elapsed", "0:02 elapsed", "0:03 elapsed"} <= {f.split(" | ")[1].split(",")[0] for f in waiting}
    assert "URL/s" in frames[-1] and "ETA" in frames[-1] and "1/1 ok=1" in frames[-1]
