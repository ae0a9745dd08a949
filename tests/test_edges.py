"""Edges a new user meets in an afternoon with every command: each is one line, `error: ...`, with its exit code,
and a failing command leaves nothing behind (issue 23)."""

from __future__ import annotations

import inspect
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from probe.cli import cli
from tests.test_cli_run import PROBE, probe_cmd


def _probe(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
           stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROBE, *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env,
                          stdin=stdin)


def one_line_error(proc: subprocess.CompletedProcess[str], *named: str, code: int = 1) -> str:
    """The command failed with `code`, said so in one line starting `error: `, naming each of `named`."""
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for value in named:
        assert value in lines[0], (value, lines[0])
    return lines[0]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# -------------------------------------------------------------------------------------------- helper serve

def test_helper_serve_says_where_it_listens_and_stops_on_ctrl_c_with_0():
    proc = subprocess.Popen([*PROBE, "helper", "serve", "--listen", "127.0.0.1:0", "--resolver", "127.0.0.1:9"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("helper listening on http://127.0.0.1:"), line
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # it does listen there
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert err.strip() == "helper stopped", err


def test_helper_serve_port_in_use_bad_port_and_bad_certificate_are_one_line(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        in_use = _probe("helper", "serve", "--listen", f"127.0.0.1:{port}", "--resolver", "127.0.0.1:9")
    finally:
        taken.close()
    one_line_error(in_use, f"127.0.0.1:{port}", "in use")
    for bad in ("127.0.0.1:99999", "127.0.0.1", "127.0.0.1:http"):
        one_line_error(_probe("helper", "serve", "--listen", bad, "--resolver", "127.0.0.1:9"), repr(bad))
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    one_line_error(_probe("helper", "serve", "--listen", "127.0.0.1:0", "--resolver", "127.0.0.1:9", "--tls-cert",
                          str(cert), "--tls-key", str(cert)), str(cert))


# -------------------------------------------------------------------------------------------- export parquet

def test_export_parquet_without_or_with_a_missing_db_creates_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PROBE_DB"}
    before = _tree(tmp_path)
    one_line_error(_probe("export", "--format", "parquet", "-o", "out", cwd=tmp_path, env=env),
                   "no database at results/probe.db")
    one_line_error(_probe("export", "--format", "parquet", "--db", "missing.db", "-o", "out", cwd=tmp_path,
                          env=env), "no database at missing.db")
    assert _tree(tmp_path) == before, "no database, no output directory"


# -------------------------------------------------------------------------------------------- schedule

def test_schedule_needs_consent_given_here_or_typed_into_it(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env["PROBE_ACCEPT_RISK"] = "1"  # an environment variable is nobody saying yes to a cron line
    units = tmp_path / "units"
    refused = _probe("schedule", "--every", "6h", "--systemd", "--install", "--unit-dir", str(units), env=env)
    one_line_error(refused, "--accept-risk", "interactive")
    assert refused.stdout == "" and not units.exists(), "nothing printed to paste, nothing installed"
    typed = _probe("schedule", "--accept-risk", "--every", "6h", env=env)
    assert typed.returncode == 0 and " run --quiet --accept-risk " in typed.stdout, typed.stderr
    (tmp_path / "config" / "probe").mkdir(parents=True)
    (tmp_path / "config" / "probe" / "accepted-risk").write_text("2026-12-04T10:00:00+00:00\n")  # as `probe run`
    given = _probe("schedule", "--every", "6h", env=env)
    assert given.returncode == 0 and "--accept-risk" in given.stdout, given.stderr


# -------------------------------------------------------------------------------------------- probe run

def test_quiet_still_says_how_to_resume_a_run_that_stopped_early(internet, tmp_path):
    dns_port, http_port, sites = internet
    sites.delay = 1.5
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"http://s{i}.test:{http_port}/\n" for i in range(6)))
    db = tmp_path / "q.db"
    proc = subprocess.run(probe_cmd(dns_port, db, str(listing), "--quiet", "--concurrency", "1", "--max-runtime",
                                    "1"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"run 1 stopped at --max-runtime; resume with `probe run --resume --db {db}`"]


def test_probe_toml_errors_name_the_file_and_the_key(tmp_path):
    config = tmp_path / "probe.toml"
    for text, named in (('[run]\nconcurrency = "lots"\n', "[run] concurrency = 'lots'"),
                        ("[run]\nresolver = 5\n", "[run] resolver = 5: takes a list"),
                        ("[run]\ntimeout = -3\n", "[run] timeout = -3"),
                        ("[results]\nrun = \"x\"\n", "[results] run = 'x'")):
        config.write_text(text)
        command = named.split("]")[0].lstrip("[")
        one_line_error(_probe("--config", str(config), command, cwd=tmp_path), str(config), named)
    config.write_text('[run]\nresolver = "127.0.0.1:9"\n')  # one value for a list: a list of one
    ok = _probe("--config", str(config), "run", "--db", str(tmp_path / "r.db"), "--no-control", "--no-vantage",
                "--no-system-resolver", "--dns-timeout", "0.2", "--late-window", "0", "http://nx.test/")
    assert ok.returncode == 3 and "offline" in ok.stderr, ok.stderr  # read, and used: nothing listens there


def test_a_binary_or_huge_list_is_one_line_and_creates_no_database(tmp_path):
    binary = tmp_path / "list.txt"
    binary.write_bytes(bytes(range(256)) * 40)
    db = tmp_path / "b.db"
    one_line_error(_probe("run", "--db", str(db), str(binary)), str(binary), "binary")
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as f:
        f.truncate(3 << 30)  # sparse: 3 GB that take no room
    one_line_error(_probe("run", "--db", str(db), str(huge)), str(huge), "64 MB")
    assert not db.exists()


# -------------------------------------------------------------------------------------------- output

def test_results_have_a_header_and_list_urls_in_order(tmp_path):
    from tests import research_world

    db = tmp_path / "k.db"
    research_world.build(db)
    for run in ("1", "4"):
        out = _probe("results", "--db", str(db), "--run", run)
        assert out.returncode == 0, out.stderr
        header, *rows = out.stdout.splitlines()
        assert header.split() == ["status", "detail", "url"]
        urls = [r.split()[-1] for r in rows]
        assert urls == sorted(urls) and len(urls) > 3
        as_json = _probe("results", "--db", str(db), "--run", run, "--json").stdout.splitlines()
        assert [line.split('"url": "')[1].split('"')[0] for line in as_json] == urls


def test_claim_errors_show_no_class_name(tmp_path):
    bad = tmp_path / "claims.json"
    bad.write_text('{"claims": [{"key": "k"}]}')
    line = one_line_error(_probe("claims", "import", str(bad), "--db", str(tmp_path / "c.db")), str(bad))
    assert "Error" not in line and not (tmp_path / "c.db").exists()


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def test_help_never_wraps_inside_a_word_or_an_example():
    checked = 0
    for path, cmd in _commands(cli):
        doc = inspect.cleandoc(cmd.help or "")
        examples = [line.strip() for line in doc.split("Example:", 1)[-1].splitlines()
                    if line.startswith("    ")] if "Example:" in doc else []
        words = set(doc.split())
        for p in cmd.params:
            words |= set((getattr(p, "help", None) or "").split())
        for width in (60, 100):
            out = CliRunner().invoke(cli, [*path, "--help"], terminal_width=width).output
            lines = [line.strip() for line in out.splitlines()]
            for example in examples:
                assert example in lines, (path, width, example)
            for line in lines:
                # A word cut at a hyphen leaves "YYYY-MM-" or "--max-" at the end of a line.
                last = line.split()[-1] if line else ""
                assert not (last.endswith("-") and last not in words and last.strip("-")), (path, width, line)
        checked += 1
    assert checked >= 25


def test_usage_errors_are_one_line_too():
    line = one_line_error(_probe("run", "--no-such-option"), "--no-such-option", "probe run --help")
    assert line.startswith("error: ")
    assert sys.executable  # the same interpreter as the tests
