"""The censorship lab, end to end: real kernel filtering, a lying resolver, a transparent proxy (root only)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from probe.lab.run import report, run_scenarios
from probe.lab.scenarios import SCENARIOS
from probe.lab.topology import Lab, missing_requirements
from tests.conftest import running_lab

# Parallel checkouts on one machine each set their own prefix (namespaces are machine-wide).
LAB_PREFIX = os.environ.get("PROBE_TEST_LAB_PREFIX", "plt")

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(bool(missing_requirements()), reason="; ".join(missing_requirements()))]


@pytest.fixture(scope="module")
def lab():
    with running_lab(LAB_PREFIX) as the_lab:
        yield the_lab


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


def test_a_second_resolver_gives_the_same_verdict_every_time(lab, tmp_path):
    """The ISP's resolver sends the name to its own server (a notice no signature knows); the public resolver the
    probe also asks, and the control, give the real address. The page is fetched through each resolver's own
    answer, so the verdict cannot depend on which address happened to connect first."""
    subset = tuple(s for s in SCENARIOS if s.name in ("dns-unknown", "dns-unknown-doh"))
    seen = Counter()
    for i in range(20):
        for o in run_scenarios(lab, subset, db=tmp_path / f"repeat{i}.db"):
            seen[(o.scenario.name, o.status, o.detail)] += 1
    assert seen == {("dns-unknown", "blocked", "dns/inconsistent"): 20,
                    ("dns-unknown-doh", "blocked", "dns/inconsistent"): 20}


def test_lossy_and_flaky_sites_give_the_same_verdict_ten_times_and_flaky_is_counted_apart(lab, tmp_path):
    """A link that drops 10% of a site's packets, and a box that resets every other connection: a failure that a
    second try does not repeat is never evidence. Ten runs in a row, the same verdicts; the flaky tries are kept
    and counted."""
    import sqlite3

    subset = tuple(s for s in SCENARIOS if s.repeat)
    assert len(subset) >= 6
    seen: Counter[tuple[str, str, str | None]] = Counter()
    flaky: Counter[str] = Counter()
    wrong: list[tuple[int, str, str]] = []  # the exact detail too, where a scenario names it (throttling's)
    for i in range(10):
        db = tmp_path / f"lossy{i}.db"
        for o in run_scenarios(lab, subset, db=db):
            seen[(o.scenario.name, o.status, o.layer)] += 1
            if not o.correct:
                wrong.append((i, o.scenario.name, o.detail))
        con = sqlite3.connect(db)
        flaky.update(url for url, in con.execute("select url from measurements where flaky = 1"))
        tries = con.execute("select count(*) from tcp_connects t join measurements m on m.id = t.measurement_id "
                            "where m.url like 'http://flaky.%' and t.failure = 'connection_refused'").fetchone()[0]
        assert tries == 1, "the refused first try (a RST to the SYN) is kept beside the second that connected"
        con.close()
    assert seen == {(s.name, s.expect, s.layer): 10 for s in subset}
    assert wrong == []
    assert flaky["http://flaky.lab.test/"] == 10 and flaky["https://flaky-tls.lab.test/"] == 10


def test_down_leaves_nothing_and_up_recovers_from_a_crash():
    crashed = Lab(prefix=LAB_PREFIX[:-1] + "r")
    crashed.up()
    # A crash: the lab's internet dies and the state is half gone, namespaces and other processes remain.
    os.killpg(crashed._pids()["net-web"], signal.SIGKILL)
    (crashed.state / "ready").unlink()
    assert not crashed.is_up()
    again = Lab(prefix=LAB_PREFIX[:-1] + "r")
    again.up()  # recovers: tears down the remains first
    assert again.is_up()
    outcomes = run_scenarios(again, tuple(s for s in SCENARIOS if s.name in ("snirst", "clean1")))
    assert all(o.correct for o in outcomes), report(outcomes)
    again.down()
    assert leftovers(LAB_PREFIX[:-1] + "r") == []


def test_vantage_is_the_networks_asn_and_the_ip_is_nowhere(lab, tmp_path):
    from probe.lab.topology import CLIENT_IP, LAB_ASN

    db, log = tmp_path / "v.db", tmp_path / "probe.log"
    subset = tuple(s for s in SCENARIOS if s.name in ("clean1", "secure1", "snirst", "dns-nxdomain"))
    outcomes = run_scenarios(lab, subset, db=db, extra=("--log", str(log)))
    assert all(o.correct for o in outcomes), report(outcomes)
    import sqlite3

    con = sqlite3.connect(db)
    row = con.execute("select vantage_asn, vantage_network, vantage_country, vantage_failure from runs").fetchone()
    assert row == (LAB_ASN, "PROBE-LAB-ISP Probe Lab ISP, PK", "PK", None)
    con.close()
    leaks = []
    for path in tmp_path.iterdir():  # the database, its WAL, the log
        if CLIENT_IP.encode() in path.read_bytes():
            leaks.append(path.name)
    assert leaks == [], f"the probe's own address appears in {leaks}"


def test_readme_cron_line_runs_under_cron_s_bare_environment(lab, tmp_path):
    from probe.lab.topology import DNS_IP, DOH_IP, HELPER_IP, HELPER_PORT

    listing = tmp_path / "list.txt"
    listing.write_text("http://clean2.lab.test/\nhttps://snirst.lab.test/\n")
    config = tmp_path / "probe.toml"  # what a volunteer keeps next to the cron line
    config.write_text(f"""[run]
inputs = ["{listing}"]
helper = "http://{HELPER_IP}:{HELPER_PORT}/"
doh = ["https://{DOH_IP}/dns-query"]
resolver = ["{DNS_IP}"]
ca-file = "{lab.ca_file}"
allow-net = ["198.18.0.0/15"]
signatures = ["{lab.signatures_file}"]
data-dir = "{tmp_path / 'data'}"
ip-service = "http://{HELPER_IP}:{HELPER_PORT}/ip"
timeout = 4
""")
    cron = subprocess.run([sys.executable, "-m", "probe", "schedule", "--accept-risk", "--every", "6h", "--jitter", "0",
                           "--config", str(config), "--db", str(tmp_path / "cron.db"), "--", "--log",
                           str(tmp_path / "probe.log")],
                          capture_output=True, text=True, check=True).stdout.strip()
    command = cron.split(None, 5)[5]  # what cron hands to /bin/sh
    proc = subprocess.run(["ip", "netns", "exec", lab.client, "env", "-i", "/bin/sh", "-c", command],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "", "cron mails any output: a quiet run prints nothing"
    import sqlite3

    rows = dict(sqlite3.connect(tmp_path / "cron.db").execute("select url, detail from measurements").fetchall())
    assert rows == {"http://clean2.lab.test/": "ok", "https://snirst.lab.test/": "tls/connection_reset"}


def test_throttling_is_told_from_slow_sites_and_slow_lines_and_reanalysis_agrees(lab, tmp_path):
    """Issue 20. The throttled site is blocked http/throttled on two fetches (both kept, the helper's own transfer
    beside them), the trickle-stall handshake blocked tls/throttled; a site slow for everyone and big pages on a
    slow or a fast line are ok, with no throttling detail. `probe reanalyze` (pure analysis, with the run's stored
    survey as the line's baseline) gives every verdict again. The ten runs in a row are the repeat test's."""
    import sqlite3

    from probe import storage
    from probe.storage.reanalysis import reanalyze

    names = ("throttled", "throttled-https", "trickle-stall", "slow-everyone", "slow-everyone-https",
             "big-fast-line", "big-slow-line", "big-slow-line-https")
    subset = tuple(s for s in SCENARIOS if s.name in names)
    db = tmp_path / "throttle.db"
    outcomes = run_scenarios(lab, subset, db=db)
    assert {o.scenario.name: (o.status, o.detail) for o in outcomes} == {
        "throttled": ("blocked", "http/throttled"), "throttled-https": ("blocked", "http/throttled"),
        "trickle-stall": ("blocked", "tls/throttled"), "slow-everyone": ("ok", "ok"),
        "slow-everyone-https": ("ok", "ok"), "big-fast-line": ("ok", "ok"), "big-slow-line": ("ok", "ok"),
        "big-slow-line-https": ("ok", "ok")}
    con = sqlite3.connect(db)
    chains = con.execute("select h.chain, h.transfer, c.http_transfer from http_hops h join measurements m on"
                         " m.id = h.measurement_id join control_results c on c.measurement_id = m.id"
                         " where m.url = 'http://throttled.lab.test/' order by h.id").fetchall()
    assert [c for c, _, _ in chains] == ["", "repeat", "line"]  # both fetches kept, and the line's sample beside
    line_now = json.loads(chains[2][1])
    assert line_now["bytes"] >= 128 * 1024 and line_now["duration"] * 10 < json.loads(chains[1][1])["duration"]
    for _, ours, theirs in chains[:2]:
        ours, theirs = json.loads(ours), json.loads(theirs)
        assert ours["bytes"] >= 128 * 1024 and ours["duration"] > 1.0 and ours["ttfb"] >= 0 and ours["events"]
        assert theirs["bytes"] >= 128 * 1024 and theirs["duration"] * 10 < ours["duration"]
    lines = [json.loads(v)["line"] for v, in con.execute("select view from surveys")]
    assert len(lines) == 2 and all(x["bytes"] >= 256 * 1024 for x in lines)  # one survey per line speed
    handshakes = con.execute("select t.transfer from tls_handshakes t join measurements m on m.id = t.measurement_id"
                             " where m.url = 'https://trickle-stall.lab.test/' and t.decoy = 0").fetchall()
    assert len(handshakes) == 2 and all(0 < json.loads(t)["bytes"] < 2000 for t, in handshakes)
    con.close()
    sdb = storage.open_db(db)
    changed, seen = reanalyze(sdb, None)
    assert (changed, seen) == (0, len(names))
