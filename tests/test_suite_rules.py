"""The test suite's own rules: a root-only test skips, with its reason, for a developer who is not root; a skip
that gives no reason fails the run (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pytest(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # the rule under test, not CI's stricter one
    return subprocess.run([*prefix, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


@pytest.mark.root("unshare")
def test_root_only_tests_skip_with_their_reason_for_a_developer_who_is_not_root():
    # A user namespace without a mapping: the same files, but this process is uid 65534 and holds no privilege
    # outside it, as a developer's own account would.
    proc = _pytest("tests/test_dns_socket.py",
                   "tests/test_engine.py::test_no_route_is_told_by_this_machine_s_routing_table",
                   prefix=("unshare", "--user"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    skipped = [line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 2, proc.stdout[-3000:]
    assert all("root only: needs root" in line and "(not root)" in line for line in skipped), skipped
    assert "2 skipped" in proc.stdout


def test_a_skip_without_a_reason_fails_the_run(tmp_path):
    case = ROOT / "tests" / f"test_zz_reasonless_{os.getpid()}.py"  # beside conftest.py, so its rules apply
    case.write_text("import pytest\n\n\n@pytest.mark.skip\ndef test_a():\n    pass\n\n\n"
                    "@pytest.mark.skipif(True, reason='the reason is given')\ndef test_b():\n    pass\n")
    try:
        proc = _pytest(str(case))
    finally:
        case.unlink()
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout[-3000:]
    assert "skipped without saying why" in proc.stdout
    assert "test_a: 'unconditional skip'" in proc.stdout and "test_b" not in proc.stdout.split("saying why")[1]
