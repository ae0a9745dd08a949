"""Small edges of the research CLI: `probe runs` has a header and durations; importing nothing is an error."""

from __future__ import annotations

import subprocess
import sys

from probe import open_db, read_inputs, run_async


def _probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True, text=True, timeout=60)


async def test_runs_has_a_header_and_a_duration(net, tmp_path):
    db_path = tmp_path / "r.db"
    db = open_db(db_path)
    targets, _ = read_inputs([net.http("ok.test")])
    await run_async(db, targets, net.options())
    db.close()
    out = _probe("runs", "--db", str(db_path))
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()
    assert header.split()[:6] == ["run", "started", "duration", "status", "network", "urls"]
    assert header.split()[6:] == ["blocked", "anomaly", "down", "ok", "error"]
    fields = row.split()
    assert fields[0] == "1" and fields[2].endswith("s") and fields[2][0].isdigit()  # e.g. 0m01s
    assert fields[-5:] == ["0", "0", "0", "1", "0"]


def test_importing_nothing_is_an_error(tmp_path):
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text('{"test_name": "ndt"}\nnot json at all\n')
    out = _probe("import-ooni", "--db", str(tmp_path / "i.db"), str(garbage))
    assert out.returncode == 1
    assert "nothing imported" in out.stderr and str(garbage) in out.stderr
