"""The censorship lab, end to end: real kernel filtering, a lying resolver, a transparent proxy (root only)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from probe.lab.run import report, run_scenarios
from probe.lab.scenarios import SCENARIOS
from probe.lab.topology import Lab, missing_requirements

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(bool(missing_requirements()), reason="; ".join(missing_requirements()))]


@pytest.fixture(scope="module")
def lab():
    the_lab = Lab(prefix="plt")
    the_lab.up()
    try:
        yield the_lab
    finally:
        the_lab.down()


def leftovers(prefix: str) -> list[str]:
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"namespace {line.split()[0]}" for line in netns.splitlines() if line.startswith(f"{prefix}-")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"link {line.split(':')[1].strip()}" for line in links.splitlines() if f" {prefix}-" in line]
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    found += [f"rule {line}" for line in rules.splitlines() if "lab.test" in line or "198.18." in line]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"/run/probe-lab/{prefix}" in cmd:
                found.append(f"process {pid}: {cmd[:80]}")
    if Path(f"/etc/netns/{prefix}-client").exists():
        found.append(f"/etc/netns/{prefix}-client")
    if Path(f"/run/probe-lab/{prefix}").exists():
        found.append(f"/run/probe-lab/{prefix}")
    return found


def test_every_scenario_gives_its_expected_verdict(lab, tmp_path):
    outcomes = run_scenarios(lab, SCENARIOS, db=tmp_path / "lab.db")
    print(report(outcomes))
    wrong = [(o.scenario.name, o.scenario.expect, o.scenario.layer, o.status, o.detail) for o in outcomes
             if not o.correct]
    assert wrong == []
    assert not any(o.false_positive for o in outcomes)
    assert len([o for o in outcomes if o.scenario.expect == "ok"]) >= 25


def test_down_leaves_nothing_and_up_recovers_from_a_crash():
    crashed = Lab(prefix="plr")
    crashed.up()
    # A crash: the lab's internet dies and the state is half gone, namespaces and other processes remain.
    os.killpg(crashed._pids()["net"], signal.SIGKILL)
    (crashed.state / "ready").unlink()
    assert not crashed.is_up()
    again = Lab(prefix="plr")
    again.up()  # recovers: tears down the remains first
    assert again.is_up()
    outcomes = run_scenarios(again, tuple(s for s in SCENARIOS if s.name in ("snirst", "clean1")))
    assert all(o.correct for o in outcomes), report(outcomes)
    again.down()
    assert leftovers("plr") == []
