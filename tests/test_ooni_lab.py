"""A lab run, exported with `probe export --format ooni` and read back with `probe import-ooni`, is judged the
same: OONI's format carries everything our verdicts rest on (root only: the lab needs network namespaces)."""

from __future__ import annotations

import os
import sqlite3

import pytest
from click.testing import CliRunner

from probe.cli import cli
from probe.lab.run import report, run_scenarios
from probe.lab.scenarios import SCENARIOS
from probe.lab.topology import Lab, missing_requirements

# Our own prefix, derived from the checkout's (namespaces are machine-wide; test_lab.py uses the prefix itself).
LAB_PREFIX = os.environ.get("PROBE_TEST_LAB_PREFIX", "plt")[:-1] + "o"

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(bool(missing_requirements()), reason="; ".join(missing_requirements()))]


def verdicts(db, run_id: int) -> dict[str, tuple]:
    con = sqlite3.connect(db)
    rows = con.execute("select url, status, layer, detail, rule, fingerprint from measurements where run_id = ?",
                       [run_id]).fetchall()
    con.close()
    return {r[0]: r[1:] for r in rows}


def test_lab_run_exported_to_ooni_and_imported_is_judged_the_same(tmp_path):
    lab = Lab(prefix=LAB_PREFIX)
    lab.up()
    try:
        chosen = tuple(s for s in SCENARIOS if s.expect != "ok" or s.name in ("clean1", "secure1", "dynamic"))
        outcomes = run_scenarios(lab, chosen, db=tmp_path / "lab.db")
        signatures = tmp_path / "lab-signatures.json"  # the lab's pack goes with the lab: keep a copy
        signatures.write_bytes(lab.signatures_file.read_bytes())
    finally:
        lab.down()
    assert all(o.correct for o in outcomes), report(outcomes)
    runner = CliRunner()
    seen = 0
    runs = sqlite3.connect(tmp_path / "lab.db").execute("select id from runs order by id").fetchall()
    assert len(runs) == 4  # the lab runs a probe run per control and resolver: full, DoH only, hijacking, down
    for (run_id,) in runs:
        out = tmp_path / f"lab-ooni-{run_id}.jsonl"
        res = runner.invoke(cli, ["export", "--db", str(tmp_path / "lab.db"), "--format", "ooni", "--run",
                                  str(run_id), "-o", str(out)])
        assert res.exit_code == 0, res.output
        back = tmp_path / f"back-{run_id}.db"
        res = runner.invoke(cli, ["import-ooni", "--db", str(back), "--signatures", str(signatures),
                                  "--data-dir", str(tmp_path / "data"), str(out)])
        assert res.exit_code == 0, res.output
        before, after = verdicts(tmp_path / "lab.db", run_id), verdicts(back, 1)
        assert after == before
        seen += len(before)
    assert seen == len(chosen)
