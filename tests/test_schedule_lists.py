"""`probe schedule` output parsed back, and `probe lists update` against a local mirror."""

from __future__ import annotations

import configparser
import functools
import http.server
import os
import shlex
import subprocess
import threading
from pathlib import Path

import pytest

from probe.measure.targets import read_inputs
from probe.volunteer.lists import default_inputs, lists_dir
from tests.test_cli_run import PROBE

SCHEDULE = [*PROBE, "schedule", "--accept-risk"]  # the consent has its own test (test_schedule_needs_consent...)


def test_cron_line_parses_back(tmp_path):
    config = tmp_path / "probe.toml"
    config.write_text("[run]\nquiet = true\n")
    out = subprocess.run([*SCHEDULE, "--every", "6h", "--jitter", "20m", "--config", str(config), "--",
                          "--log", "/var/log/probe.log"], capture_output=True, text=True, check=True).stdout
    line = out.strip()
    fields = line.split(None, 5)
    minute, hour, dom, month, dow, command = fields
    assert 0 <= int(minute) < 60 and hour == "*/6" and (dom, month, dow) == ("*", "*", "*")
    argv = shlex.split(command.split(" # ")[0])
    assert Path(argv[0]).is_absolute()
    assert argv[argv.index("--config") + 1] == str(config.resolve())
    assert argv[argv.index("run"):][:3] == ["run", "--quiet", "--accept-risk"]
    assert argv[argv.index("--jitter") + 1] == "1200" and "--log" in argv
    bad = subprocess.run([*SCHEDULE, "--every", "7h"], capture_output=True, text=True)
    assert bad.returncode == 1 and "divide a day" in bad.stderr


def test_schedule_writes_where_the_database_and_config_are_as_absolute_paths(tmp_path):
    """cron starts in $HOME and systemd in /: a relative --db would land in ~/results or /results."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "probe.toml").write_text('db = "data/probe.db"\n[run]\nquiet = true\n')
    env = {**os.environ}
    env.pop("PROBE_DB", None)
    line = subprocess.run([*SCHEDULE, "--every", "1h"], capture_output=True, text=True, check=True,
                          cwd=work, env=env).stdout.strip()
    argv = shlex.split(line.split(None, 5)[5].split(" # ")[0])
    assert argv[argv.index("--config") + 1] == str(work / "probe.toml"), "the config found here, made absolute"
    assert argv[argv.index("--db") + 1] == str(work / "data" / "probe.db"), "the config's db, made absolute"
    plain = tmp_path / "plain"
    plain.mkdir()
    line = subprocess.run([*SCHEDULE, "--every", "1h"], capture_output=True, text=True, check=True,
                          cwd=plain, env=env).stdout.strip()
    argv = shlex.split(line.split(None, 5)[5].split(" # ")[0])
    assert "--config" not in argv and argv[argv.index("--db") + 1] == str(plain / "results" / "probe.db")
    env["PROBE_DB"] = "elsewhere.db"
    units = subprocess.run([*SCHEDULE, "--systemd", "--every", "1d"], capture_output=True, text=True,
                           check=True, cwd=plain, env=env).stdout
    service = configparser.ConfigParser(interpolation=None)
    service.read_string(units.split("# probe.timer")[0].replace("# probe.service\n", ""))
    assert service["Service"]["WorkingDirectory"] == str(plain)
    exec_start = shlex.split(service["Service"]["ExecStart"])
    assert exec_start[exec_start.index("--db") + 1] == str(plain / "elsewhere.db")
    inside = subprocess.run([*SCHEDULE, "--every", "1h", "--", "--db", "x.db"], capture_output=True,
                            text=True, cwd=plain)
    assert inside.returncode == 1 and "before `--`" in inside.stderr
    # A list file and a log named after `--`, relative here, are absolute in the line; URLs stay as they are.
    (plain / "pk.txt").write_text("http://a.test/\n")
    line = subprocess.run([*SCHEDULE, "--every", "1h", "--", "pk.txt", "http://b.test/", "--log",
                           "logs/probe.log", "--timeout", "5"], capture_output=True, text=True, check=True,
                          cwd=plain, env=env).stdout.strip()
    argv = shlex.split(line.split(None, 5)[5].split(" # ")[0])
    assert str(plain / "pk.txt") in argv and "http://b.test/" in argv
    assert argv[argv.index("--log") + 1] == str(plain / "logs" / "probe.log") and "5" in argv


def test_systemd_units_parse_back_and_install(tmp_path):
    out = subprocess.run([*SCHEDULE, "--systemd", "--every", "1d", "--jitter", "1h"], capture_output=True,
                         text=True, check=True).stdout
    service_text = out.split("# probe.timer")[0].replace("# probe.service\n", "")
    service = configparser.ConfigParser(interpolation=None)
    service.read_string(service_text)
    exec_start = shlex.split(service["Service"]["ExecStart"])
    assert Path(exec_start[0]).is_absolute() and "run" in exec_start and "--accept-risk" in exec_start
    timer = configparser.ConfigParser(interpolation=None)
    timer.read_string(out.split("# probe.timer\n")[1])
    assert timer["Timer"]["OnUnitActiveSec"] == "86400s" and timer["Timer"]["RandomizedDelaySec"] == "3600s"
    subprocess.run([*SCHEDULE, "--systemd", "--install", "--unit-dir", str(tmp_path)], check=True,
                   capture_output=True)
    assert {p.name for p in tmp_path.iterdir()} == {"probe.service", "probe.timer"}


@pytest.fixture
def mirror(tmp_path, shared_data):
    root = tmp_path / "mirror"
    root.mkdir()
    (root / "global.csv").write_bytes((shared_data / "citizenlab-global.csv").read_bytes())
    (root / "pk.csv").write_bytes((shared_data / "citizenlab-pk.csv").read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_lists_update_downloads_validates_and_reports_changes(mirror, tmp_path):
    root, base = mirror
    data = tmp_path / "data"
    cmd = [*PROBE, "lists", "update", "--country", "pk", "--base", base, "--data-dir", str(data)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "global: 1722 URLs" in first.stdout and "pk: 670 URLs" in first.stdout
    lines = (root / "global.csv").read_text().splitlines()
    removed = lines[1].split(",")[0]
    (root / "global.csv").write_text("\n".join([lines[0], *lines[2:], "https://new-site.example/,NEWS,News,"
                                                                       "2026-11-24,probe test,"]) + "\n")
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert "global: 1722 URLs (+1 -1)" in second.stdout
    assert "+ https://new-site.example/" in second.stdout and f"- {removed}" in second.stdout
    (root / "pk.csv").write_text("<html>not a list</html>")
    broken = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1 and "not a Citizen Lab list" in broken.stderr
    assert len((lists_dir(data) / "pk.csv").read_text().splitlines()) > 600, "a bad download keeps the cache"
    inputs = default_inputs(data, "PK")
    assert [Path(p).name for p in inputs] == ["global.csv", "pk.csv"]
    targets, _ = read_inputs(inputs)
    assert len(targets) > 2200


def test_lists_update_says_whether_a_cached_copy_was_kept(tmp_path):
    from tests.conftest import closed_port

    base = f"http://127.0.0.1:{closed_port()}/"  # nothing listens: as offline
    cmd = [*PROBE, "lists", "update", "--base", base, "--data-dir", str(tmp_path / "data")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert first.returncode == 1 and "there is no cached copy yet" in first.stderr
    assert "the cached copy is kept" not in first.stderr
    cached = lists_dir(tmp_path / "data") / "global.csv"
    cached.write_text("url,category_code,category_description,date_added,source,notes\nhttp://a.test/,NEWS,,,,\n")
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1 and "the cached copy is kept" in second.stderr


def test_run_without_input_measures_the_list_shipped_in_the_package(tmp_path):
    """No INPUT and no cached list: the small list inside the package (a wheel has it), found wherever the cli is."""
    from probe.volunteer.lists import run_inputs, shipped_list

    assert run_inputs(tmp_path / "no-cache", None) == [shipped_list()]
    targets, warnings = read_inputs([shipped_list()])
    assert len(targets) > 10 and not warnings
