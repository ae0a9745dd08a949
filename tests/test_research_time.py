"""Research over time never mistakes a change of method or a missing run for a change in censorship (issue 22).

Every test reads the database of tests/time_world.py (runs made by `probe run` on loopback: two networks, a
method change, an offline run, a resumed run), copied when the test writes to it (reanalysis, claims).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess

import pytest

from probe import open_db
from probe.research import queries
from probe.research.diff import compare_runs, history
from tests import time_world
from tests.test_cli_run import PROBE
from tests.time_world import A, B, needs_unshare

pytestmark = needs_unshare


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return time_world.build(tmp_path_factory.mktemp("time"))


@pytest.fixture
def copy(world, tmp_path):
    """The world's database, copied: for tests that change it."""
    shutil.copy(world.db, tmp_path / "time.db")
    return tmp_path / "time.db"


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROBE, *args], capture_output=True, text=True, timeout=120)


def host(url: str) -> str:
    return url.split("//")[1].split(".")[0]


def kinds(d) -> dict[str, str]:
    return {host(c.url): c.kind for c in d.changes}


# ------------------------------------------------------------------------------------- 1. runs record their method

def test_each_run_records_its_method_and_runs_shows_it(world):
    with sqlite3.connect(world.db) as con:
        stored = {i: json.loads(m) for i, m in con.execute("select id, method from runs order by id")}
    one = stored[1]
    assert one["signatures"][0]["name"] == "builtin" and one["signatures"][1]["name"] == "pack:pack.json"
    assert len(one["signatures"][1]["sha256"]) == 16
    assert one["control"] == {"mode": "none"} and one["timeouts"] == {"step": 2.0, "dns": 1.0, "late_window": 0.1}
    assert one["resolvers"]["system"] is False and len(one["resolvers"]["listed"]) == 1
    assert stored[3]["signatures"] == "off"
    db = open_db(world.db)
    keys = {r["id"]: r["method_key"] for r in queries.run_summaries(db)}
    assert keys[1] == keys[2] == keys[4] == keys[5] == keys[6] != keys[3]
    out = probe("runs", "--db", str(world.db))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith("method") and all(line.endswith(keys[int(line.split()[0])]) for line in lines[1:7])
    methods = lines[lines.index(next(x for x in lines if x.startswith("methods"))) + 1:]
    assert len(methods) == 2 and any("no signatures" in m for m in methods)
    assert any("sigs builtin+pack.json, no control, 1 resolver, timeouts 2/1/0.1s" in m for m in methods)


def test_a_change_between_methods_is_ours_not_the_censors(world):
    db = open_db(world.db)
    same = compare_runs(db, 1, 2)
    assert kinds(same) == {"flip": "newly-blocked"} and same.method_changes == []
    changed = compare_runs(db, 2, 3)
    assert kinds(changed) == {"notice": "our-method-changed", "flip": "our-method-changed"}
    assert changed.method_changes == ["signatures"]
    assert changed.headline() == "2 our-method-changed; method changed (signatures)"
    across = compare_runs(db, 2, 3, across_methods=True)
    assert kinds(across) == {"notice": "unblocked", "flip": "unblocked"}
    out = probe("diff", "--db", str(world.db), "2", "3")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"run 2 ({A}) -> run 3 ({A}): 2 our-method-changed; method changed (signatures)"
    assert lines[2].startswith("method: run 2: rules ") and "; run 3: rules " in lines[2]
    assert "no signatures" in lines[2] and "unblocked" not in out.stdout
    out = probe("diff", "--db", str(world.db), "2", "3", "--across-methods")
    assert out.stdout.splitlines()[0] == f"run 2 ({A}) -> run 3 ({A}): 2 unblocked; method changed (signatures)"


def test_datasettes_changes_query_says_where_the_method_changed(world):
    from probe.research.datasette import QUERIES

    with sqlite3.connect(world.db) as con:
        rows = con.execute(QUERIES["changes"]["sql"]).fetchall()
    # url, asn, run, status, detail, previous status, previous detail, method_changed
    assert {(host(r[0]), r[2], r[7]) for r in rows} == {("flip", 2, 0), ("flip", 3, 1), ("notice", 3, 1),
                                                         ("flip", 5, 1), ("notice", 5, 1)}


# ----------------------------------------------------------------------------- 3. not measured is never no change

def test_a_run_that_measured_nothing_is_not_compared(world):
    db = open_db(world.db)
    d = compare_runs(db, 3, 4)
    assert d.changes == [] and d.headline() == "not compared: run 4 measured nothing (offline)"
    assert d.coverage_line() == ("run 3 measured 3/3 URLs (done); run 4 measured 0/3 URLs (offline); 0 compared "
                                 "(3 only before)")
    h = history(db, queries.parse_since("2025-10-01"))
    assert list(h) == [A, B] and h[A]["runs"] == [1, 2, 3, 4, 5]
    pairs = {(d["run_a"], d["run_b"]): d for d in h[A]["diffs"]}
    assert pairs[(3, 4)]["headline"] == "not compared: run 4 measured nothing (offline)"
    # Run 5 (resumed) is compared with each URL's latest verdict: run 3's, which measured without signatures.
    assert pairs[(4, 5)]["counts"] == {"our-method-changed": 2} and pairs[(4, 5)]["compared"] == 3
    assert h[A]["flapping"] == {"blocked": [], "anomaly": []}  # a method change is not a flap
    out = probe("diff", "--db", str(world.db), "--since", "2025-10-01")
    assert out.returncode == 0, out.stderr
    assert "  3 -> 4: not compared: run 4 measured nothing (offline)" in out.stdout.splitlines()
    assert ("    coverage: run 4 measured 0/3 URLs (offline); run 5 measured 3/3 URLs (done); 3 compared"
            in out.stdout.splitlines())


def test_results_of_an_empty_run_say_why_and_exit_7(world):
    out = probe("results", "--db", str(world.db), "--run", "4")
    assert (out.returncode, out.stdout) == (7, "")
    assert out.stderr.strip() == (f"error: run 4 measured nothing: the network looked offline (nothing answered), so "
                                  f"nothing was stored; `probe run --resume 4 --db {world.db}` measures its 3 URLs")
    five = probe("results", "--db", str(world.db), "--run", "5")
    assert five.returncode == 0 and len(five.stdout.splitlines()) == 4  # a header and the 3 URLs
    assert five.stderr.startswith("run 5: rules ") and "sigs builtin+pack.json" in five.stderr  # what it rests on
    csv_head = probe("results", "--db", str(world.db), "--run", "5", "--csv").stdout.splitlines()[0]
    assert csv_head.endswith(",rule,rules_version")


def test_probe_run_says_which_runs_wait_to_be_resumed(world):
    assert "wait to be resumed" not in world.outputs["4"].stderr
    assert (f"note: 1 earlier run of this database wait to be resumed (run 4 (offline)): `probe run --resume RUN "
            f"--db {world.db}`") in world.outputs["5-offline"].stderr.splitlines()
    assert "note: 1 earlier run" in world.outputs["6"].stderr  # run 4 still waits; run 5 was resumed


# ------------------------------------------------------------------------------------------------- 2. reanalysis

def test_reanalysis_uses_each_runs_own_signatures_and_keeps_the_old_verdicts(world, copy):
    # The pack the runs named improves: its signature gets another id.
    world.pack.write_text(time_world.pack("test.notice-v2"))
    try:
        dry = probe("reanalyze", "--db", str(copy), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        with sqlite3.connect(copy) as con:
            assert con.execute("select count(*) from verdict_history").fetchone()[0] == 0
        lines = dry.stdout.splitlines()
        # Runs 1, 2, 5, 6 used the pack: their notices change id. Run 3 (--no-signatures) stays without signatures.
        changed = [x for x in lines if x.startswith("run ")]
        assert [x.split(":")[0] for x in changed] == ["run 1 " + A, "run 2 " + A, "run 2 " + A, "run 5 " + A,
                                                      "run 5 " + A, "run 6 " + B, "run 6 " + B]
        assert lines[1].startswith("    blocked http/blockpage:test.notice (http-blockpage, rules ")
        assert lines[1].endswith("-> blocked http/blockpage:test.notice-v2 (http-blockpage)")
        assert lines[-1].startswith("15 measurements re-judged with rules ")
        assert lines[-1].endswith(", 7 verdicts would change (dry run: nothing written)")
        before = {r["id"]: r["method_key"] for r in queries.run_summaries(open_db(copy))}
        done = probe("reanalyze", "--db", str(copy), "--run", "1")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1].endswith("1 verdicts changed (earlier verdicts kept in verdict_history)")
    finally:
        world.pack.write_text(time_world.pack("test.notice"))
    db = open_db(copy)
    old = list(db.query("select h.detail, h.rule, m.detail as now from verdict_history h "
                        "join measurements m on m.id = h.measurement_id"))
    assert old == [{"detail": "http/blockpage:test.notice", "rule": "http-blockpage",
                    "now": "http/blockpage:test.notice-v2"}]
    after = {r["id"]: r["method_key"] for r in queries.run_summaries(db)}
    assert after[1] != before[1]
    assert {k: v for k, v in after.items() if k != 1} == {k: v for k, v in before.items() if k != 1}
    # The reanalysed run measured with the pack as it is now: against run 2 (the old pack) that is a method change.
    # (notice.test's new blockpage id, flip.test newly blocked: both could be ours).
    assert kinds(compare_runs(db, 1, 2)) == {"notice": "our-method-changed", "flip": "our-method-changed"}


def test_reanalysis_of_a_run_without_signatures_changes_nothing(world, copy):
    out = probe("reanalyze", "--db", str(copy), "--run", "3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1].startswith("3 measurements re-judged")
    assert out.stdout.splitlines()[-1].endswith(", 0 verdicts changed (earlier verdicts kept in verdict_history)")


# ------------------------------------------------------------------------------------------------------ 6. claims

def test_claims_add_refuses_an_existing_key_without_replace(copy):
    add = ["claims", "add", "--db", str(copy), "--key", "k1", "--authority", "PTA", "--date", "2025-10-01"]
    assert probe(*add, "--count", "5").returncode == 0
    again = probe(*add, "--count", "7")
    assert again.returncode == 1
    assert again.stderr.strip() == ("error: a claim 'k1' is already recorded (PTA, 2025-10-01, 5): pass --replace to "
                                    "replace it")
    assert probe(*add, "--count", "7", "--replace").returncode == 0
    cmp = probe("claims", "compare", "--db", str(copy), "k1", "--run", "5")
    assert cmp.returncode == 0, cmp.stderr
    assert "\nverdicts measured with: rules " in cmp.stdout and "sigs builtin+pack.json" in cmp.stdout
    with sqlite3.connect(copy) as con:
        assert con.execute("select claimed_count from claims where key = 'k1'").fetchall() == [(7,)]


# ------------------------------------------------------------------------------------------------------ the report

def test_report_marks_method_changes_and_gaps_on_its_time_axis(world, tmp_path):
    import re

    from probe.research.report import render

    db = open_db(world.db)
    page = render(db, queries.runs(db), "all runs")
    chart = page.split("per run, per network</h3>", 1)[1].split("</svg>", 1)[0]
    gaps = re.findall(r'class="gap"><title>(.*?)</title>', chart)
    assert gaps == [f"{A}, run 4: measured nothing (offline): a gap, not a zero"]
    marks = re.findall(r'class="method-change"><title>(.*?)</title>', chart)
    assert [m.split(" (")[0] for m in marks] == [f"{A}: the method changed between run 2 and run 3",
                                                 f"{A}: the method changed between run 3 and run 4"]
    assert all("(signatures); run " in m for m in marks)
    # Network A's blocked line breaks at run 4: one stretch of runs 1-3, one point (run 5) after the gap.
    solid = [p for p in re.findall(r'<path d="([^"]+)" fill="none" stroke="#1f77b4" stroke-width="2"/>', chart)]
    assert [p.count("L") + 1 for p in solid] == [3]
    assert "grey band: a run that measured nothing (a gap, not a zero)" in chart
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    # What changed since the previous run: run 5 against run 3, the last that measured, run 4 named as a gap.
    assert (f"{A} : run 3 (2025-10-03 06:00 UTC) → run 5 (2025-10-05 06:00 UTC): 2 our-method-changed; method "
            "changed (signatures). coverage: run 3 measured 3/3 URLs (done); run 5 measured 3/3 URLs (done); "
            "3 compared; in between, run 4 measured nothing") in text
    assert "no change" not in text
    assert "no signatures, no control, 1 resolver, timeouts 2/1/0.1s" in text and ": run 3 " in text
    # The timelines of the blocked URLs: notice.test on A, blocked since run 5, two changes that were only ours.
    lines = page.split("<h3>Timelines of the blocked and anomalous URLs</h3>", 1)[1].split("</table>", 1)[0]
    assert (f"<tr><td class='url'>{world.urls['notice']}</td><td>{A}</td><td>blocked http/blockpage:test.notice</td>"
            "<td class='nowrap'>2025-10-05 06:00 UTC</td><td class='nowrap'>2025-10-01 06:00 UTC</td>"
            "<td class='nowrap'>2025-10-03 06:00 UTC</td><td>4</td><td>0</td><td>2</td><td>3, 5</td></tr>") in lines
    assert lines.count("<tr><td class='url'>") == 4
    short = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", render(db, queries.runs(db), "all runs", limit=1)))
    assert "Showing the first 1 of 4 rows; the full list: `probe report --all`" in short  # 2 URLs on 2 networks
    assert "Showing the first 1 of 2 rows" in short  # the changes of network A


def test_report_with_gaps_and_method_changes_renders_cleanly_in_chromium(world, tmp_path):
    from probe.research.report import render
    from tests.test_research import _distinct_bytes, _render_in_chromium
    from tests.test_research_outputs import _texts_in_chromium

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is needed (CI installs Debian's chromium)"
    db = open_db(world.db)
    page = render(db, queries.runs(db), "all runs")
    texts, bad = _texts_in_chromium(chromium, page, tmp_path)
    assert texts > 40 and bad == {"clipped": [], "overlapping": []}
    path = tmp_path / "report.html"
    path.write_text(page)
    errors, png = _render_in_chromium(chromium, path, tmp_path)
    assert errors == [] and _distinct_bytes(png) > 20


# ----------------------------------------------------------------------------------------------------- timelines

def test_timeline_per_url_and_network(world):
    from probe.research.timeline import timelines

    db = open_db(world.db)
    got = {(t.network, host(t.url)): t for t in timelines(db, urls=list(world.urls.values()))}
    assert sorted(got) == [(A, "flip"), (A, "notice"), (A, "plain"), (B, "flip"), (B, "notice"), (B, "plain")]
    notice = got[(A, "notice")]
    assert (notice.runs, notice.latest, notice.latest_run) == (4, "blocked http/blockpage:test.notice", 5)
    assert notice.first_seen_blocked == "2025-10-01T06:00:00+00:00"
    assert notice.last_seen_reachable == "2025-10-03T06:00:00+00:00"  # run 3, without signatures
    assert notice.blocked_since == "2025-10-05T06:00:00+00:00"
    assert (notice.flaps, notice.method_flips, notice.method_changes) == (0, 2, [3, 5])
    flip = got[(A, "flip")]
    assert (flip.flaps, flip.method_flips, flip.flapping) == (1, 2, False)  # one real change, two of ours
    assert flip.first_seen_blocked == "2025-10-02T06:00:00+00:00"
    plain = got[(A, "plain")]
    assert (plain.first_seen_blocked, plain.blocked_since, plain.latest) == (None, None, "ok ok")
    assert got[(B, "notice")].runs == 1 and got[(B, "notice")].method_changes == []
    out = probe("timeline", "--db", str(world.db), world.urls["notice"], "--csv")
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert rows[0] == ("url,network,category,runs,latest,latest_run,first_seen_blocked,last_seen_reachable,"
                       "blocked_since,flaps,flapping,method_flips,method_changes,blockpage_changes")
    assert rows[1] == (f"{world.urls['notice']},{A},,4,blocked http/blockpage:test.notice,5,2025-10-01T06:00:00+00:00,"
                       "2025-10-03T06:00:00+00:00,2025-10-05T06:00:00+00:00,0,False,2,3;5,")
    out = probe("timeline", "--db", str(world.db), "--category", "", "--json")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 6 and json.loads(out.stdout.splitlines()[0])["verdicts"][0]["run_id"] == 1
    table = probe("timeline", "--db", str(world.db), "--list", str(world.listing))
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 7
    assert probe("timeline", "--db", str(world.db), "http://never.test/").stderr.strip() == (
        "error: no measurement of URL http://never.test/ in this database")
    assert probe("timeline", "--db", str(world.db)).returncode == 1
    empty = world.listing.with_name("empty.txt")
    empty.write_text("")
    assert probe("timeline", "--db", str(world.db), "--list", str(empty)).stderr.strip() == (
        f"error: --list: {empty} names no URL")


def test_which_items_were_blocked_on_the_claims_date(world, copy, tmp_path):
    add = probe("claims", "add", "--db", str(copy), "--key", "c1", "--authority", "PTA", "--date", "2025-10-02",
                "--count", "4")
    assert add.returncode == 0, add.stderr
    items = tmp_path / "items.csv"
    items.write_text("url,date_published,authority\n" + "".join(f"{u},2025-10-02,PTA\n" for u in
                                                               [*world.urls.values(), "http://never.test/"]))
    assert probe("claims", "import", "--db", str(copy), "--items-for", "c1", str(items)).returncode == 0
    out = probe("timeline", "--db", str(copy), "--claim", "c1", "--json")
    assert out.returncode == 0, out.stderr
    rows = {(r["network"], host(r["url"])): (r["status"], r["run_id"])
            for r in map(json.loads, out.stdout.splitlines())}
    # On 2025-10-02 network A had measured runs 1 and 2; network B nothing yet (its run is of 2025-10-06).
    assert rows == {(A, "notice"): ("blocked", 2), (A, "flip"): ("blocked", 2), (A, "plain"): ("ok", 2),
                    (A, "never"): (None, None), **{(B, h): (None, None) for h in ("notice", "flip", "plain", "never")}}
    later = probe("timeline", "--db", str(copy), "--claim", "c1", "--on", "2025-10-06")
    lines = later.stdout.splitlines()
    assert lines[0] == "verdict in force on 2025-10-06 (the latest measured up to the end of that day, UTC):"
    assert any(x.startswith(B) and "blocked  http/blockpage:test.notice (run 6, 2025-10-06T06:00)" in x
               for x in lines)
    assert any(x.startswith(B) and x.endswith("not measured by 2025-10-06") for x in lines)


# ------------------------------------------------------------------------------------------ 5. a year stays fast

def test_the_full_integrity_check_runs_once_a_day_and_on_probe_check(tmp_path):
    from probe import storage
    from probe.measure.targets import normalise

    path = tmp_path / "c.db"
    db = storage.open_db(path)
    storage.create_run(db, options={}, software_version="t", rules_version="t",
                       targets=[normalise(f"http://s{i}.test/") for i in range(2000)], resolvers=[])
    storage.close(db)
    assert storage.check_database(path) is True  # never checked: due
    out = probe("check", "--db", str(path))
    assert (out.returncode, out.stdout.strip()) == (0, f"{path}: quick_check ok")
    assert storage.check_database(path) is False  # passed today: only the header and schema are read
    assert storage.check_database(path, full=True) is True
    with sqlite3.connect(path) as con:
        con.execute("update probe_meta set value = '2020-01-01T00:00:00+00:00' where key = 'quick_check_passed'")
    assert storage.check_database(path) is True  # a day old: due again
    storage.close(storage.open_db(path))  # the check a writer makes is recorded
    assert storage.check_database(path) is False
    pages = path.stat().st_size // 4096
    with path.open("r+b") as f:  # garbage over a page of the run's targets: the schema still reads
        f.seek(4096 * (pages // 2))
        f.write(b"\xff" * 4096)
    damaged = probe("check", "--db", str(path))
    assert damaged.returncode == 1 and "is damaged" in damaged.stderr and "Traceback" not in damaged.stderr
