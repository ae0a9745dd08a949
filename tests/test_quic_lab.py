"""QUIC in the lab (issue 20; root only): UDP/443 dropped for one site by the ISP router's iptables, QUIC
Initials carrying another site's name dropped by the router's decrypting filter, a site with no QUIC, and QUIC
working. Each gets its exact TCP/TLS status (ok: browsers fall back to TCP) and its exact quic value, ten runs
in a row, and the https sites on a lossy or flaky line get quic `ok` every time (no claim from a lost packet);
QUIC adds one handshake per address where it works and stays within one step's timeout."""

from __future__ import annotations

import os
import sqlite3
from collections import Counter

import pytest
from click.testing import CliRunner

from probe.cli import cli
from probe.lab.run import report, run_scenarios
from probe.lab.scenarios import SCENARIOS
from probe.lab.topology import missing_requirements
from tests.conftest import running_lab

# Our own prefix, derived from the checkout's (namespaces are machine-wide; test_lab.py uses the prefix itself).
LAB_PREFIX = os.environ.get("PROBE_TEST_LAB_PREFIX", "plt")[:-1] + "q"
TIMEOUT = 4.0  # the lab's --timeout (lab/run.py)
QUIC = tuple(s for s in SCENARIOS if s.quic is not None)
# https sites on a line that loses 10% of their packets, or resets every other connection: QUIC must claim
# nothing there (a lost Initial is retransmitted, and a lost handshake is tried again).
LOSSY = tuple(s for s in SCENARIOS if s.censor in ("loss", "flaky-syn") and s.scheme == "https")

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(bool(missing_requirements()), reason="; ".join(missing_requirements()))]


@pytest.fixture(scope="module")
def lab():
    with running_lab(LAB_PREFIX, QUIC + LOSSY) as the_lab:
        yield the_lab


def quic_rows(db) -> dict[str, list[tuple]]:
    con = sqlite3.connect(db)
    out: dict[str, list[tuple]] = {}
    for url, ip, sni, decoy, failure, t0, t in con.execute(
            "select m.url, q.ip, q.sni, q.decoy, q.failure, q.t0, q.t from quic_handshakes q "
            "join measurements m on m.id = q.measurement_id order by q.id"):
        out.setdefault(url, []).append((ip, sni, decoy, failure, t0, t))
    con.close()
    return out


def test_each_quic_scenario_gives_its_status_and_quic_value_ten_times(lab, tmp_path):
    assert {s.quic for s in QUIC} == {"ok", "udp-blocked", "sni-blocked", "unavailable", "failed"}
    assert len(LOSSY) >= 3
    seen: Counter[tuple] = Counter()
    for i in range(10):
        db = tmp_path / f"quic{i}.db"
        outcomes = run_scenarios(lab, QUIC + LOSSY, db=db)
        assert all(o.correct for o in outcomes), report(outcomes)
        seen.update((o.scenario.name, o.status, o.layer, o.quic) for o in outcomes)
        for s in QUIC:
            tries = quic_rows(db)[s.url]
            by_address: dict[str, list[tuple]] = {}
            for row in tries:
                by_address.setdefault(row[0], []).append(row)
            assert set(by_address) == set(s.ips)
            for rows in by_address.values():
                first = rows[0]
                assert not first[2] and all(r[4] >= first[5] for r in rows[1:]), "the real name first, alone"
                if first[3] is None:
                    assert rows == [first], "a handshake that works is the only one at its address"
                else:  # after a loss: the real name again and the decoy, together
                    assert sorted(r[2] for r in rows) == [0, 0, 1] or first[3] == "connection_refused"
                assert max(r[5] for r in rows) - first[4] <= TIMEOUT + 0.5, "QUIC stays within one step's timeout"
    assert seen == {(s.name, s.expect, s.layer, s.quic or "ok"): 10 for s in QUIC + LOSSY}


def test_quic_values_survive_ooni_export_import_and_reanalysis(lab, tmp_path):
    db = tmp_path / "lab.db"
    run_scenarios(lab, QUIC, db=db)
    con = sqlite3.connect(db)
    before = dict(con.execute("select url, quic from measurements").fetchall())
    runs = [r for r, in con.execute("select id from runs order by id")]
    con.close()
    assert set(before.values()) == {s.quic for s in QUIC}
    runner = CliRunner()
    res = runner.invoke(cli, ["results", "--db", str(db), "--run", str(runs[0])])
    assert res.exit_code == 0 and "  quic udp-blocked" in res.stdout, res.output
    assert "quic: 1 ok, 1 sni-blocked, 1 udp-blocked, 1 unavailable" in res.stderr  # beside the statuses
    res = runner.invoke(cli, ["reanalyze", "--db", str(db)])
    assert res.exit_code == 0, res.output
    con = sqlite3.connect(db)
    assert dict(con.execute("select url, quic from measurements").fetchall()) == before
    con.close()
    after: dict[str, str] = {}
    for run_id in runs:
        out = tmp_path / f"ooni-{run_id}.jsonl"
        res = runner.invoke(cli, ["export", "--db", str(db), "--format", "ooni", "--run", str(run_id), "-o", str(out)])
        assert res.exit_code == 0, res.output
        back = tmp_path / f"back-{run_id}.db"
        res = runner.invoke(cli, ["import-ooni", "--db", str(back), "--data-dir", str(tmp_path / "data"), str(out)])
        assert res.exit_code == 0, res.output
        con = sqlite3.connect(back)
        after.update(con.execute("select url, quic from measurements").fetchall())
        con.close()
    assert after == before
