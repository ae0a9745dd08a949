"""One meaning of "blocked" in every research output: a database with known verdicts (tests/research_world.py)
and the exact numbers and words of diff, claims compare, results, Datasette, the report and the OONI export."""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from probe.cli import cli
from probe.research import claims, queries
from probe.research.datasette import QUERIES
from probe.research.diff import DiffError, compare_runs, history
from probe.research.exchange import export
from probe.research.report import render
from probe.verdicts import STATUSES, VerdictError, ooni_blocking, parse_status
from tests import research_world as world
from tests.research_world import A, B


@pytest.fixture
def known(tmp_path):
    path = tmp_path / "known.db"
    return world.build(path), path


def probe(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def changes(diff) -> list[tuple[str, str, str, str]]:
    return [(c.kind, c.url.removeprefix("http://").removesuffix(".test/"), c.before, c.after) for c in diff.changes]


# ------------------------------------------------------------------------------------------- the vocabulary

def test_statuses_and_their_parsing():
    assert STATUSES == ("blocked", "anomaly", "filtered", "down", "ok", "error")
    assert parse_status(" Blocked ") == "blocked"
    with pytest.raises(VerdictError,
                       match=r"unknown status 'blockd': use one of blocked, anomaly, filtered, down, ok, error"):
        parse_status("blockd")


@pytest.mark.parametrize(("status", "layer", "detail", "expected"), [
    ("blocked", "dns", "dns/nxdomain", ("dns", False)),
    ("blocked", "dns", "dns/censor-ip:nayatel_dns", ("dns", False)),
    ("blocked", "tcp", "tcp/generic_timeout_error", ("tcp_ip", False)),
    ("blocked", "tcp", "tcp/connection_reset", ("tcp_ip", False)),  # tls-ip: the address is blocked
    ("blocked", "tls", "tls/connection_reset", ("http-failure", False)),  # OONI files TLS under http-failure
    ("blocked", "tls", "tls/ssl_invalid_hostname", ("http-failure", False)),
    ("blocked", "http", "http/connection_reset", ("http-failure", False)),
    ("blocked", "http", "http/blockpage:pk_surfsafely", ("http-diff", False)),
    ("anomaly", "http", "http/diff", ("http-diff", False)),
    ("anomaly", "http", "http/server-side:cloudflare", ("http-diff", False)),
    ("anomaly", "dns", "dns/dns_server_failure", ("dns", False)),
    ("anomaly", None, "unknown", (None, None)),
    ("down", "tcp", "tcp/connection_refused", (False, False)),  # OONI's website-down case
    ("ok", None, "ok", (False, True)),
    ("error", None, "local/network_unreachable", (None, None)),
])
def test_ooni_blocking_and_accessible(status, layer, detail, expected):
    assert ooni_blocking(status, layer, detail) == expected


# ------------------------------------------------------------------------------------------------- diff

def test_diff_keeps_strong_evidence_and_anomalies_apart(known):
    db, _ = known
    d12 = compare_runs(db, 1, 2)
    assert changes(d12) == [
        ("newly-anomalous", "anomaly", "ok ok", "anomaly http/diff"),
        ("newly-blocked", "blocked", "ok ok", "blocked dns/nxdomain"),
        ("status-changed", "error", "ok ok", "error local/network_unreachable"),
        ("unblocked", "flap", "blocked http/blockpage:pk_surfsafely", "ok ok"),
        ("blockpage-changed", "page", "blocked http/blockpage:pk_surfsafely",
         "blocked http/blockpage:pk_mobilink_redirect"),
    ]
    assert d12.counts() == {"newly-blocked": 1, "unblocked": 1, "newly-anomalous": 1, "blockpage-changed": 1,
                            "status-changed": 1}
    d24 = compare_runs(db, 2, 4)
    assert changes(d24) == [
        ("anomaly-cleared", "anomaly", "anomaly http/diff", "ok ok"),
        ("method-changed", "blocked", "blocked dns/nxdomain", "blocked tls/connection_reset"),
        ("newly-blocked", "flap", "ok ok", "blocked http/blockpage:pk_surfsafely"),
        ("newly-anomalous", "odd", "ok ok", "anomaly tcp/generic_timeout_error"),
    ]
    with pytest.raises(DiffError, match="different networks"):
        compare_runs(db, 2, 3)
    across = compare_runs(db, 2, 3, across_networks=True)
    assert changes(across) == [
        ("blockpage-changed", "blocked", "blocked dns/nxdomain", "blocked dns/censor-ip:nayatel_dns"),
        ("blockpage-changed", "page", "blocked http/blockpage:pk_mobilink_redirect",
         "blocked http/blockpage:pk_surfsafely")]
    assert (across.only_in_a, across.only_in_b) == (1, 0)  # odd.test is measured on A only


def test_history_counts_flapping_per_kind(known):
    db, _ = known
    h = history(db, queries.parse_since("2025-10-01"))
    assert list(h) == [A, B]
    assert h[A]["runs"] == [1, 2, 4] and h[B]["runs"] == [3]
    assert h[A]["flapping"] == {"blocked": ["http://flap.test/"], "anomaly": ["http://anomaly.test/"]}
    assert h[B] == {"runs": [3], "diffs": [], "flapping": {"blocked": [], "anomaly": []}}
    assert [d["headline"] for d in h[A]["diffs"]] == [
        "1 newly-blocked, 1 unblocked, 1 newly-anomalous, 1 blockpage-changed, 1 status-changed",
        "1 newly-blocked, 1 newly-anomalous, 1 anomaly-cleared, 1 method-changed"]
    later = history(db, queries.parse_since("2025-10-01T15:00"))  # only runs 3 and 4
    assert {n: h["runs"] for n, h in later.items()} == {A: [4], B: [3]}


def test_diff_cli_says_each_kind(known):
    _, path = known
    code, out, _ = probe("diff", "--db", str(path), "2", "4")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ("run 2 (AS64500 TESTNET-A) -> run 4 (AS64500 TESTNET-A): 1 newly-blocked, 1 newly-anomalous, "
                        "1 anomaly-cleared, 1 method-changed")
    assert "newly-anomalous: now anomalous (was reachable)" in lines
    code, out, _ = probe("diff", "--db", str(path), "--since", "2025-10-01")
    assert code == 0
    assert out.splitlines()[:5] == [
        "AS64500 TESTNET-A: runs [1, 2, 4]; flapping: blocked: http://flap.test/; anomaly: http://anomaly.test/",
        "  1 -> 2: 1 newly-blocked, 1 unblocked, 1 newly-anomalous, 1 blockpage-changed, 1 status-changed",
        "    coverage: run 1 measured 8/8 URLs (done); run 2 measured 8/8 URLs (done); 8 compared",
        "  2 -> 4: 1 newly-blocked, 1 newly-anomalous, 1 anomaly-cleared, 1 method-changed",
        "    coverage: run 2 measured 8/8 URLs (done); run 4 measured 8/8 URLs (done); 8 compared",
    ]


# ----------------------------------------------------------------------------------------------- claims

def test_claim_with_a_list_is_measured_against_its_items(known):
    db, _ = known
    cmp = claims.compare(db, "test-list")
    assert cmp.basis == "items"
    assert cmp.testable["testable"] == 4 and cmp.testable["partly"] == 0
    assert cmp.networks == {
        A: {"claimed": 5, "testable": 4, "measured": 3, "blocked": 1, "anomaly": 0, "filtered": 0, "down": 1, "ok": 1,
            "error": 0},
        B: {"claimed": 5, "testable": 4, "measured": 3, "blocked": 1, "anomaly": 1, "filtered": 0, "down": 1, "ok": 0,
            "error": 0},
    }
    items = {i["url"]: i for i in cmp.items}
    assert items["http://blocked.test/"]["blocked_on"] == [A, B]
    assert items["http://anomaly.test/"]["anomalous_on"] == [B] and items["http://anomaly.test/"]["blocked_on"] == []
    assert items["http://anomaly.test/"]["reachable_on"] == [A]
    assert items["http://never.test/"]["tested"] is False
    assert items["https://facebook.com/someone"]["testable"].startswith("no:")
    assert cmp.summary == (
        "Test Authority claims 5 items blocked (websites and an account, 2025-10-01). The published list has 5 items; "
        "of these, 4 are websites a network probe can test, and 1 is an account, channel or group that platforms "
        "withhold and no network probe can see. Compared with the 5 items of the published list. "
        f"On {A}, 3 URLs were measured: 1 blocked, 0 anomalous, 1 down, 1 reachable. "
        f"On {B}, 3 URLs were measured: 1 blocked, 1 anomalous, 1 down, 0 reachable. "
        "Of the 5 listed items, 3 were measured: 1 found blocked with strong evidence on at least one network, "
        "1 only anomalous.")


def test_claim_without_a_list_compares_nothing_unless_told_what(known, tmp_path):
    db, _ = known
    september = claims.compare(db, "pta-2025-09-personal-data")
    assert september.basis == "none" and september.items == [] and september.categories == {}
    assert all(c["measured"] == 0 and c["testable"] is None for c in september.networks.values())
    assert september.summary.endswith(
        "No breakdown by kind was published, so how many of them a network probe can test is unknown. No list of the "
        "blocked items was published and no --list, --category or --run names what to compare it with, so nothing "
        "measured can be compared with this claim: unrelated URLs are not evidence for or against it.")
    assert "blocked with strong evidence" not in september.summary
    named = claims.compare(db, "pta-2025-09-personal-data", claims.Scope(
        urls=frozenset(map(world.url, ("blocked", "ok", "page", "missing"))), list_name="pta.txt"))
    assert named.basis == "user"
    assert {n: (c["measured"], c["blocked"], c["anomaly"], c["ok"]) for n, c in named.networks.items()} == {
        A: (3, 2, 0, 1), B: (3, 2, 0, 1)}
    assert "Compared with what you named: the URLs of pta.txt (4 URLs)" in named.summary
    october = claims.compare(db, "pta-2025-10-personal-data", claims.Scope(category="NEWS", run_id=4))
    assert october.networks == {
        A: {"claimed": 139, "testable": 17, "measured": 3, "blocked": 2, "anomaly": 0, "filtered": 0, "down": 0,
            "ok": 1, "error": 0}}
    assert "Of these, 17 are websites a network probe can test, 18 are apps testable only through their (unlisted) " \
           "domains, and 104 are accounts, channels or groups" in october.summary
    assert october.categories == {"NEWS": {"measured": 3, "blocked": 2, "anomaly": 0, "filtered": 0, "down": 0, "ok": 1,
                                               "error": 0}}


def test_claims_compare_cli(known, tmp_path):
    _, path = known
    listing = tmp_path / "pta.txt"
    listing.write_text("http://blocked.test/\nhttp://ok.test/\n")
    code, out, _ = probe("claims", "compare", "--db", str(path), "pta-2025-09-personal-data", "--list", str(listing),
                         "--run", "3")
    assert code == 0
    block = out.split(f"\n{B}:\n", 1)[1].splitlines()
    assert [re.split(r"\s+", line.strip(), maxsplit=2)[:2] for line in block[:9]] == [
        ["claimed", "1,372"], ["testable", "unknown"], ["measured", "2"], ["blocked", "1"], ["anomaly", "0"],
        ["filtered", "0"], ["down", "0"], ["ok", "1"], ["error", "0"]]
    assert "blocked with strong evidence" in block[3] and "not attributable" in block[4]
    code, out, _ = probe("claims", "compare", "--db", str(path), "pta-2025-09-personal-data")
    assert code == 0 and "nothing measured can be compared with this claim" in out and "\nAS64500" not in out


# ------------------------------------------------------------------------------------------ bad filters

@pytest.mark.parametrize(("args", "message"), [
    (["results", "--status", "blockd"],
     "error: --status: unknown status 'blockd': use one of blocked, anomaly, filtered, down, ok, error"),
    (["results", "--layer", "ip"], "error: --layer: unknown layer 'ip': use one of dns, tcp, tls, http"),
    (["results", "--run", "99"], "error: no run 99 in this database (4 runs, ids 1 to 4)"),
    (["report", "--run", "99", "--html", "{tmp}/r.html"], "error: no run 99 in this database (4 runs, ids 1 to 4)"),
    (["report", "--since", "garbage", "--html", "{tmp}/r.html"],
     "error: --since: 'garbage' is not a date: use YYYY-MM-DD, or YYYY-MM-DDTHH:MM[:SS] with an optional UTC "
     "offset (default UTC)"),
    (["report", "--since", "2030-01-01", "--html", "{tmp}/r.html"],
     "error: no run since 2030-01-01 in {db} (the latest, run 4, started 2025-10-02T09:30:00+00:00)"),
    (["diff", "--since", "yesterday"],
     "error: --since: 'yesterday' is not a date: use YYYY-MM-DD, or YYYY-MM-DDTHH:MM[:SS] with an optional UTC "
     "offset (default UTC)"),
    (["diff", "1", "99"], "error: no run 99 in this database (4 runs, ids 1 to 4)"),
    (["diff", "--since", "2025-10-03"],
     "error: no run since 2025-10-03 in {db} (the latest, run 4, started 2025-10-02T09:30:00+00:00)"),
    (["claims", "compare", "pta-2025-09-personal-data", "--since", "garbage"],
     "error: --since: 'garbage' is not a date: use YYYY-MM-DD, or YYYY-MM-DDTHH:MM[:SS] with an optional UTC "
     "offset (default UTC)"),
    (["claims", "compare", "pta-2025-09-personal-data", "--run", "99"],
     "error: no run 99 in this database (4 runs, ids 1 to 4)"),
    (["claims", "compare", "pta-2025-09-personal-data", "--category", "NOPE"],
     "error: no measurement has category 'NOPE' (measured categories: COMT, GMB, HUMR, NEWS, POLR)"),
    (["claims", "compare", "test-list", "--category", "NEWS"],
     "error: claim 'test-list' has a published list of 5 items, which is what it is compared against: --list and "
     "--category are for claims without one"),
    (["claims", "compare", "nope"], "error: no claim 'nope' (see `probe claims list`)"),
    (["export", "--run", "99", "--format", "ooni", "-o", "{tmp}/x.jsonl"],
     "error: no run 99 in this database (4 runs, ids 1 to 4)"),
])
def test_bad_filters_are_one_line_errors(known, tmp_path, args, message):
    _, path = known
    args = [a.format(tmp=tmp_path) for a in args]
    code, out, err = probe(*args[:2] if args[0] == "claims" else args[:1], "--db", str(path),
                           *args[2:] if args[0] == "claims" else args[1:])
    assert (code, out, err) == (1, "", message.format(db=path) + "\n")
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "x.jsonl").exists()


def test_results_filters_by_status(known):
    _, path = known
    code, out, _ = probe("results", "--db", str(path), "--run", "4", "--status", "blocked")
    assert code == 0
    assert out.splitlines()[0].split() == ["status", "detail", "url"], "a header, then the URLs in order"
    assert [line.split()[::2] for line in out.splitlines()[1:]] == [
        ["blocked", "http://blocked.test/"], ["blocked", "http://flap.test/"], ["blocked", "http://page.test/"]]
    code, out, _ = probe("results", "--db", str(path), "--run", "4", "--status", "anomaly", "--csv")
    assert out.splitlines()[1:] == ["4,http://odd.test/,HUMR,anomaly,tcp,tcp/generic_timeout_error,,ok,0.5,test-anomaly,"
                                    "test"]
    code, out, _ = probe("results", "--db", str(path), "--status", "down", "--json")  # the latest run: 4
    assert [json.loads(x)["url"] for x in out.splitlines()] == ["http://down.test/"]


# -------------------------------------------------------------------------------------------- Datasette

def _query(path: Path, name: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(QUERIES[name]["sql"]).fetchall()


def test_datasette_queries_keep_blocked_and_anomalies_apart(known):
    _, path = known
    assert [(r[0], r[4]) for r in _query(path, "blocked_now")] == [
        (64500, "http://blocked.test/"), (64500, "http://flap.test/"), (64500, "http://page.test/"),
        (64501, "http://blocked.test/"), (64501, "http://page.test/")]
    assert [(r[0], r[4]) for r in _query(path, "anomalies_now")] == [(64500, "http://odd.test/"),
                                                                       (64501, "http://anomaly.test/")]
    # asn, network, run, urls, blocked, anomaly, filtered, down, ok, error
    assert [(r[0], *r[2:]) for r in _query(path, "verdicts_by_network")] == [
        (64500, 4, 8, 3, 1, 0, 1, 2, 1), (64501, 3, 7, 2, 1, 0, 1, 2, 1)]
    assert {(r[0], r[2], r[3], r[4]) for r in _query(path, "methods")} == {
        (64500, "http/blockpage", 2, 0), (64500, "tls/connection_reset", 1, 0),
        (64500, "tcp/generic_timeout_error", 0, 1), (64501, "dns/censor-ip", 1, 0), (64501, "http/blockpage", 1, 0),
        (64501, "http/diff", 0, 1)}
    # run, urls, blocked, anomaly, filtered, down, ok, error
    assert [(r[0], *r[4:]) for r in _query(path, "blocked_over_time")] == [
        (1, 8, 2, 0, 0, 1, 5, 0), (2, 8, 2, 1, 0, 1, 3, 1), (3, 7, 2, 1, 0, 1, 2, 1), (4, 8, 3, 1, 0, 1, 2, 1)]
    # key, items listed, asn, comparable, measured, blocked, anomaly, filtered, down, ok, error
    rows = [(r[0], r[4], r[5], r[8].split(":")[0], *r[9:]) for r in _query(path, "claims_vs_measured")]
    assert rows == [
        ("pta-2025-09-personal-data", 0, 64500, "no", None, None, None, None, None, None, None),
        ("pta-2025-09-personal-data", 0, 64501, "no", None, None, None, None, None, None, None),
        ("test-list", 5, 64500, "yes", 3, 1, 0, 0, 1, 1, 0),
        ("test-list", 5, 64501, "yes", 3, 1, 1, 0, 1, 0, 0),
        ("pta-2025-10-personal-data", 0, 64500, "no", None, None, None, None, None, None, None),
        ("pta-2025-10-personal-data", 0, 64501, "no", None, None, None, None, None, None, None)]
    assert len(_query(path, "changes")) == 9  # 5 changes from run 1 to 2 and 4 from 2 to 4, none across networks


# ------------------------------------------------------------------------------------------- OONI export

# Hand-worked from OONI's vocabulary for the known verdicts of runs 3 and 4: (blocking, accessible).
OONI_EXPECTED = {
    (3, "blocked"): ("dns", False), (3, "anomaly"): ("http-diff", False), (3, "flap"): (False, True),
    (3, "page"): ("http-diff", False), (3, "down"): (False, False), (3, "ok"): (False, True),
    (3, "error"): (None, None),
    (4, "blocked"): ("http-failure", False), (4, "anomaly"): (False, True), (4, "flap"): ("http-diff", False),
    (4, "page"): ("http-diff", False), (4, "down"): (False, False), (4, "ok"): (False, True),
    (4, "error"): (None, None), (4, "odd"): ("tcp_ip", False),
}


def known_ooni_export(db, out: Path) -> dict[str, list]:
    """Runs 3 and 4 exported as OONI measurements into `out`; returns the expected keys per line."""
    expected = []
    with out.open("w") as f:
        for run_id in (3, 4):
            buf = io.StringIO()
            export(db, run_id, "ooni", buf)
            f.write(buf.getvalue())
            for line in buf.getvalue().splitlines():
                host = json.loads(line)["input"].removeprefix("http://").removesuffix(".test/")
                expected.append(list(OONI_EXPECTED[(run_id, host)]))
    return {"expected": expected}


def test_ooni_export_uses_oonis_vocabulary(known, tmp_path):
    db, _ = known
    out = tmp_path / "ooni.jsonl"
    expected = known_ooni_export(db, out)["expected"]
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == len(OONI_EXPECTED) == 15
    assert [[r["test_keys"]["blocking"], r["test_keys"]["accessible"]] for r in rows] == expected
    statuses = [r["test_keys"]["x_probe_status"] for r in rows]
    assert statuses.count("down") == 2 and statuses.count("error") == 2 and statuses.count("anomaly") == 2


# ------------------------------------------------------------------------------------------------ report

def test_report_counts_urls_and_says_what_changed(known):
    db, _ = known
    page = render(db, queries.runs(db), "all runs")
    text = re.sub(r"<[^>]+>", " ", page)
    text = re.sub(r"\s+", " ", text)
    assert ("4 runs on 2 networks, from 2025-10-01 08:00 UTC to 2025-10-02 09:30 UTC; 8 distinct URLs.") in text
    assert "Latest verdict of each URL on each network (15 URL–network pairs):" in text
    assert "5 blocked 2 anomalous 2 down 4 reachable 2 not measured" in text
    assert (f"{A} : run 2 (2025-10-01 14:00 UTC) → run 4 (2025-10-02 09:30 UTC): 1 newly-blocked, "
            "1 newly-anomalous, 1 anomaly-cleared, 1 method-changed.") in text
    assert f"{B} : only one run so far (run 3, 2025-10-01 20:00 UTC); nothing to compare with." in text
    # Measured vs claimed: side by side on one scale per claim, "unknown" where there is no breakdown.
    claim_svg = page.split("<h3>Measured vs claimed</h3>", 1)[1].split("</svg>", 1)[0]
    assert "unknown: no breakdown or list published" in claim_svg
    assert "not comparable: no list published" in claim_svg
    assert claim_svg.count("<title>claimed: ") == 3 and "<title>confirmed blocked on AS64500 TESTNET-A: 1</title>" \
        in claim_svg and "1 (1 more anomalous)" in claim_svg
    assert "1,385" not in page and "1,377" not in page  # no sum of subsets
    # The table: latest verdict per URL per network, with run and time; blocked before anomalous.
    table = page.rsplit("<tbody>", 1)[1]
    rows = re.findall(r"<tr><td class='url'>(.*?)</td><td>(.*?)</td><td>(\d+)</td><td class='nowrap'>(.*?)</td>",
                      table)
    assert [(u.removeprefix("http://").removesuffix(".test/"), n == A, int(r), t) for u, n, r, t in rows] == [
        ("blocked", True, 4, "2025-10-02 09:30 UTC"), ("flap", True, 4, "2025-10-02 09:30 UTC"),
        ("page", True, 4, "2025-10-02 09:30 UTC"), ("blocked", False, 3, "2025-10-01 20:00 UTC"),
        ("page", False, 3, "2025-10-01 20:00 UTC"), ("odd", True, 4, "2025-10-02 09:30 UTC"),
        ("anomaly", False, 3, "2025-10-01 20:00 UTC")]
    # The time axis says date and time of each run, and the y-axis has ticks.
    chart = page.split("per run, per network</h3>", 1)[1].split("</svg>", 1)[0]
    for label in ("2025-10-01", "08:00 UTC · run 1", "14:00 UTC · run 2", "20:00 UTC · run 3", "09:30 UTC · run 4"):
        assert f">{label}</text>" in chart
    assert [int(t) for t in re.findall(r'text-anchor="end" >(\d+)</text>', chart)] == [0, 1, 2, 3]


def test_report_of_one_run(known):
    db, _ = known
    page = render(db, queries.runs(db, run_id=3), "run 3")
    assert f"Run 3 on {B}, started 2025-10-01 20:00 UTC; 7 distinct URLs." in page
    assert "Only one run so far: no trend yet." in page
    assert ">2 blocked</text>" in page and ">1 anomalous</text>" in page


CHECK_TEXTS = """<script>
const clipped = [], overlapping = []; let texts = 0;
const label = t => t.lastChild.textContent;
for (const svg of document.querySelectorAll('svg')) {
  const box = svg.getBoundingClientRect(), seen = [];
  for (const t of svg.querySelectorAll('text')) {
    texts++;
    const r = t.getBoundingClientRect();
    if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
      clipped.push(label(t));
    for (const [other, o] of seen)
      if (Math.min(r.right, o.right) - Math.max(r.left, o.left) > 1
          && Math.min(r.bottom, o.bottom) - Math.max(r.top, o.top) > 3)
        overlapping.push(label(other) + ' / ' + label(t));
    seen.push([t, r]);
  }
}
document.body.setAttribute('data-texts', texts);
document.body.setAttribute('data-bad', JSON.stringify({clipped, overlapping}));
</script></body>"""


def _texts_in_chromium(chromium: str, page: str, tmp: Path) -> tuple[int, dict[str, list[str]]]:
    """How many SVG texts the page has, which of them stick out of their SVG and which overlap another, as
    Chromium lays them out."""
    checked = tmp / "checked.html"
    checked.write_text(page.replace("</body>", CHECK_TEXTS))
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp / 'chrome-dom'}", "--window-size=1200,1600", "--dump-dom",
                           checked.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'data-texts="(\d+)" data-bad="([^"]*)"', proc.stdout)
    assert found, proc.stdout[-500:] + proc.stderr[-2000:]
    return int(found.group(1)), json.loads(found.group(2).replace("&quot;", '"'))


def test_report_in_chromium_has_no_clipped_or_overlapping_label(known, tmp_path):
    from tests.test_research import _distinct_bytes, _render_in_chromium

    db, _ = known
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is needed (CI installs Debian's chromium)"
    pages = [("all", render(db, queries.runs(db), "all")), ("one", render(db, queries.runs(db, run_id=3), "run 3"))]
    world.many_runs(db, 30)  # a crowded time axis: three runs a day for ten days
    pages.append(("many", render(db, queries.runs(db), "many")))
    for name, page in pages:
        texts, bad = _texts_in_chromium(chromium, page, tmp_path)
        assert texts > 60 and bad == {"clipped": [], "overlapping": []}, (name, bad)
        path = tmp_path / f"{name}.html"
        path.write_text(page)
        errors, png = _render_in_chromium(chromium, path, tmp_path)
        assert errors == [] and _distinct_bytes(png) > 20
    # The check sees a label that sticks out and two that overlap.
    broken = ('<html><body><svg width="200" height="40"><text x="-30" y="20">clipped label</text>'
              '<text x="120" y="20">one</text><text x="125" y="22">two</text></svg></body></html>')
    assert _texts_in_chromium(chromium, broken, tmp_path) == (3, {"clipped": ["clipped label"],
                                                                  "overlapping": ["one / two"]})


def test_diff_since_counts_only_finished_runs(known):
    from probe.storage import create_run

    db, path = known
    create_run(db, options={}, software_version="test", rules_version="test", targets=[], resolvers=[])  # going on
    code, out, err = probe("diff", "--db", str(path), "--since", "2025-10-03")
    assert (code, out, err) == (1, "", f"error: no finished run since 2025-10-03 in {path} (only runs still going)\n")
