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
    header, row, *methods = out.stdout.splitlines()
    assert header.split()[:6] == ["run", "started", "duration", "status", "network", "urls"]
    assert header.split()[6:] == ["blocked", "anomaly", "filtered", "down", "ok", "error", "flaky", "method"]
    fields = row.split()
    assert fields[0] == "1" and fields[2].endswith("s") and fields[2][0].isdigit()  # e.g. 0m01s
    assert fields[-8:-1] == ["0", "0", "0", "0", "1", "0", "0"]
    assert len(methods) == 2 and methods[1].strip().endswith(f"[{fields[-1]}]")  # the method, in words


def test_importing_nothing_is_an_error(tmp_path):
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text('{"test_name": "ndt"}\nnot json at all\n')
    out = _probe("import-ooni", "--db", str(tmp_path / "i.db"), str(garbage))
    assert out.returncode == 1
    assert "nothing imported" in out.stderr and str(garbage) in out.stderr


def test_claims_count_what_could_not_be_measured_apart_and_items_once(tmp_path):
    from tests import research_world

    db = tmp_path / "k.db"
    research_world.build(db)
    out = _probe("claims", "compare", "pta-2025-09-personal-data", "--run", "2", "--db", str(db))
    assert out.returncode == 0, out.stderr
    assert ("7 URLs were measured: 2 blocked, 1 anomalous, 1 down, 3 reachable. 1 more could not be measured."
            in out.stdout)
    items = tmp_path / "items.csv"
    items.write_text("url,kind\nhttp://flap.test/,website\nhttp://flap.test/,website\n")
    first = _probe("claims", "import", "--items-for", "test-list", str(items), "--db", str(db))
    again = _probe("claims", "import", "--items-for", "test-list", str(items), "--db", str(db))
    assert first.stdout.startswith("1 items added") and "already on this claim's list" in first.stderr
    assert again.stdout.startswith("0 items added")


def test_bad_claims_files_missing_runs_and_unwritable_outputs_are_one_line_errors(tmp_path):
    from tests import research_world

    db = tmp_path / "k.db"
    research_world.build(db)
    bad = tmp_path / "bad.json"
    cases = []
    for text in ("[]", '{"claims": [1]}', "not json"):
        bad.write_text(text)
        cases.append(_probe("claims", "import", str(bad), "--db", str(db)))
    cases.append(_probe("claims", "add", "--db", str(db), "--key", "k", "--authority", "A", "--date", "notadate",
                        "--count", "5"))
    cases.append(_probe("reanalyze", "--run", "99", "--db", str(db)))
    cases.append(_probe("export", "--db", str(db), "-o", str(tmp_path / "missing-dir" / "x.csv")))
    cases.append(_probe("report", "--db", str(db), "--html", str(tmp_path / "missing-dir" / "r.html")))
    for proc in cases:
        assert proc.returncode == 1, (proc.args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_history_sees_a_change_across_a_run_that_did_not_reach_the_url(tmp_path):
    """Run 1: x blocked; run 2 (partial) never measured x; run 3: x reachable. The change shows in 2 -> 3."""
    from probe import storage
    from tests import research_world as w

    db_path = tmp_path / "h.db"
    db = storage.open_db(db_path)
    net = (64999, "HISTORYNET")
    w.add_runs(db, [(net, "2025-12-01T08:00:00+00:00", {"x": w.NXDOMAIN, "y": w.OK}),
                    (net, "2025-12-02T08:00:00+00:00", {"y": w.OK}),
                    (net, "2025-12-03T08:00:00+00:00", {"x": w.OK, "y": w.OK})])
    storage.close(db)
    out = _probe("diff", "--since", "2025-12-01", "--db", str(db_path))
    assert out.returncode == 0, out.stderr
    lines = [line.strip() for line in out.stdout.splitlines()]
    assert "1 -> 2: no change (1 measured only before)" in lines
    assert "coverage: run 1 measured 2/2 URLs (done); run 2 measured 1/1 URLs (done); 1 compared (1 only before)" \
        in lines
    assert "2 -> 3: 1 unblocked (1 only after)" not in lines  # x was known from run 1: not "only after"
    assert "2 -> 3: 1 unblocked" in lines
