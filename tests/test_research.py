"""Research workflows on runs measured for real (loopback): diffs, history, claims, report, exports, OONI."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import zlib
from pathlib import Path

import pytest

from probe import open_db, read_inputs, run_async
from probe.lab.servers import DnsEntry
from probe.research import claims, queries
from probe.research.datasette import QUERIES
from probe.research.diff import DiffError, compare_runs, history
from probe.research.exchange import export, import_ooni
from probe.research.report import render
from probe.storage import measurements, set_vantage
from tests.conftest import IN_CI

LOOP = ("127.0.0.1",)
# What each name resolves to, run after run: None is NXDOMAIN, "reset" points at the resetting port.
PLAN = {
    "a": ["ok", "nx", "reset"],   # ok -> anomaly (dns; no control here) -> another URL (the port differs)
    "b": ["ok", "ok", "ok"],
    "c": ["nx", "ok", "nx"],      # flaps
}


async def _run(net, db, step: int, asn: int) -> int:
    urls = []
    for name, states in PLAN.items():
        state = states[step]
        host = f"{name}.test"
        net.zone.entries[host] = DnsEntry(behaviour="nxdomain") if state == "nx" else DnsEntry(a=LOOP)
        port = net.reset_port if state == "reset" else net.http_port
        urls.append(f"http://{host}:{port}/")
    net.sites.by_host.update({f"{n}.test": net.sites.by_host["ok.test"] for n in PLAN})
    targets, _ = read_inputs(urls)
    # The URL of `a` changes port when it is reset: measure it under one URL by naming the port in the list.
    summary = await run_async(db, targets, net.options(keep_bodies="all"))
    set_vantage(db, summary.run_id, asn, f"TESTNET-{asn}", "PK", None)
    return summary.run_id


@pytest.fixture
async def history_db(net, tmp_path):
    db = open_db(tmp_path / "h.db")
    runs = [await _run(net, db, step, 64500) for step in range(3)]
    other = await _run(net, db, 0, 64501)
    return db, runs, other


def _by_kind(diff) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in diff.changes:
        out.setdefault(c.kind, []).append(c.url.split("//")[1].split(":")[0])
    return out


async def test_diff_finds_newly_blocked_unblocked_and_method_changes(history_db):
    db, (r1, r2, r3), other = history_db
    # Without a control an NXDOMAIN is an anomaly, not a block: the diff must not call it "newly blocked".
    assert _by_kind(compare_runs(db, r1, r2)) == {"newly-anomalous": ["a.test"], "anomaly-cleared": ["c.test"]}
    d23 = compare_runs(db, r2, r3)
    assert _by_kind(d23) == {"newly-anomalous": ["c.test"]}
    # a.test: dns/nxdomain (run 2) then http/connection_reset (run 3, another URL because the port differs)
    assert d23.only_in_a == 1 and d23.only_in_b == 1
    with pytest.raises(DiffError, match="different networks"):
        compare_runs(db, r1, other)
    assert compare_runs(db, r1, other, across_networks=True).changes == []


async def test_history_per_network_with_flapping(history_db):
    db, runs, _other = history_db
    h = history(db, "2000-01-01")
    assert set(h) == {"AS64500 TESTNET-64500", "AS64501 TESTNET-64501"}
    assert h["AS64500 TESTNET-64500"]["runs"] == runs
    flapping = h["AS64500 TESTNET-64500"]["flapping"]
    assert flapping["blocked"] == [] and [u.split(":")[1] for u in flapping["anomaly"]] == ["//c.test"]


async def test_method_change_is_reported(net, tmp_path):
    db = open_db(tmp_path / "m.db")
    net.zone.entries["m.test"] = DnsEntry(behaviour="nxdomain")
    url = f"http://m.test:{net.reset_port}/"
    targets, _ = read_inputs([url])
    r1 = (await run_async(db, targets, net.options())).run_id
    net.zone.entries["m.test"] = DnsEntry(a=LOOP)
    r2 = (await run_async(db, targets, net.options())).run_id
    d = compare_runs(db, r1, r2)
    assert [(c.kind, c.before, c.after) for c in d.changes] == [
        ("method-changed", "anomaly dns/dns_nxdomain_error", "anomaly http/connection_reset")]


async def test_claims_compare_states_the_gap_and_checks_items(history_db, tmp_path):
    db, runs, _ = history_db
    for doc in claims.builtin_claims():
        claims.add(db, doc)
    cid = claims.add(db, {"key": "test-list", "authority": "Test Authority", "date": "2025-10-01",
                          "claimed_count": 3, "covers": "websites"})
    a_url = next(m["url"] for m in measurements(db, runs[1]) if m["url"].startswith("http://a.test"))
    b_url = next(m["url"] for m in measurements(db, runs[1]) if m["url"].startswith("http://b.test"))
    n, warnings = claims.import_items(db, cid, f"url,date_published,authority\n{a_url},2025-10-01,TA\n"
                                               f"{b_url},2025-10-01,TA\nhttp://never.example/,2025-10-01,TA\n"
                                               "not a url,2025-10-01,TA\n", "items.csv")
    assert n == 3 and len(warnings) == 1 and "items.csv:5" in warnings[0]
    october = claims.compare(db, "pta-2025-10-personal-data")
    assert october.testable["testable"] == 17 and october.testable["partly"] == 18
    assert "104 are accounts, channels or groups" in october.summary
    assert "nothing measured can be compared with this claim" in october.summary
    assert set(october.networks) == {"AS64500 TESTNET-64500", "AS64501 TESTNET-64501"}
    assert {c["measured"] for c in october.networks.values()} == {0}  # unrelated URLs are no evidence
    september = claims.compare(db, "pta-2025-09-personal-data")
    assert "No breakdown by kind was published" in september.summary
    listed = claims.compare(db, "test-list")
    items = {i["url"]: i for i in listed.items}
    assert items[b_url]["reachable_on"] and not items[b_url]["blocked_on"]
    assert items[a_url]["anomalous_on"] and not items[a_url]["blocked_on"]  # an NXDOMAIN without control
    assert items["http://never.example/"]["tested"] is False
    assert "Of the 3 listed items, 2 were measured: 0 found blocked with strong evidence" in listed.summary


async def test_report_is_self_contained_and_escapes_what_it_shows(history_db, tmp_path):
    db, _runs, _ = history_db
    db.execute("update measurements set category = '<script>alert(1)</script>', evidence = '<b>x</b>'")
    page = render(db, queries.runs(db, since="2000-01-01"), "runs since 2000-01-01")
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert page.count("<svg") >= 4
    assert "http://" in page and "src=" not in page and "href=\"http" not in page  # nothing loaded from outside
    path = tmp_path / "report.html"
    path.write_text(page)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if IN_CI:
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; CI installs it)")
    errors, png = _render_in_chromium(chromium, path, tmp_path)
    assert errors == []
    assert _distinct_bytes(png) > 20, "the screenshot is blank"
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>undefinedFunction()</script></body></html>")
    assert _render_in_chromium(chromium, broken, tmp_path)[0], "the console check must see a real error"


def _render_in_chromium(chromium: str, page: Path, tmp: Path) -> tuple[list[str], bytes]:
    shot = tmp / "shot.png"
    shot.unlink(missing_ok=True)
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={tmp / 'chrome'}", "--enable-logging=stderr",
                           "--v=0", "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if "CONSOLE" in line and ("Uncaught" in line or
                                                                                  "Error" in line)]
    return errors, shot.read_bytes() if shot.exists() else b""


def _distinct_bytes(png: bytes) -> int:
    """How varied the decompressed pixels are: a blank page gives a handful of values."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data = 8, b""
    while pos < len(png):
        length = int.from_bytes(png[pos:pos + 4], "big")
        kind = png[pos + 4:pos + 8]
        if kind == b"IDAT":
            data += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(data)))


async def test_exports_and_datasette_queries(history_db, tmp_path):
    db, runs, _ = history_db
    buf = io.StringIO()
    assert export(db, runs[0], "csv", buf) == 3
    assert buf.getvalue().splitlines()[0].startswith("run_id,url,category,status")
    buf = io.StringIO()
    export(db, runs[0], "jsonl", buf)
    assert all("observations" in json.loads(line) for line in buf.getvalue().splitlines())
    for q in QUERIES.values():
        sqlite3.connect(db.conn.execute("pragma database_list").fetchone()[2]).execute(q["sql"]).fetchall()


async def test_ooni_round_trip_gives_the_same_verdicts(world, tmp_path):
    from tests.control_world import SCENARIOS, _url, control_options

    net = world
    urls = [_url(net, n, s, p) for n, s, _, p, _ in SCENARIOS]
    targets, _ = read_inputs(urls)
    db = open_db(tmp_path / "a.db")
    summary = await run_async(db, targets, control_options(net, keep_bodies="all"))
    set_vantage(db, summary.run_id, 64500, "TESTNET", "PK", None)
    out = tmp_path / "ooni.jsonl"
    with out.open("w") as f:
        export(db, summary.run_id, "ooni", f)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert {m["probe_ip"] for m in lines} == {"127.0.0.1"}
    assert {m["test_name"] for m in lines} == {"web_connectivity"} and {m["probe_asn"] for m in lines} == {"AS64500"}
    other = open_db(tmp_path / "b.db")
    run_ids, n, warnings = import_ooni(other, [out])
    assert (n, warnings) == (len(urls), [])
    before = {m["url"]: (m["status"], m["detail"], m["rule"], m["uuid"]) for m in measurements(db, summary.run_id)}
    after = {m["url"]: (m["status"], m["detail"], m["rule"], m["uuid"]) for m in measurements(other, run_ids[0])}
    assert after == before  # the same verdicts, and each measurement keeps its identity
    _, again, warnings = import_ooni(other, [out])
    assert again == 0 and len(warnings) == len(urls) and "already in this database" in warnings[0]


async def test_export_is_read_by_oonis_own_parser(world, tmp_path):
    """oonidata pins an old click: it gets a virtual environment of its own, made by .ci/run before the tests."""
    from tests.control_world import SCENARIOS, _url, control_options

    net = world
    targets, _ = read_inputs([_url(net, n, s, p) for n, s, _, p, _ in SCENARIOS])
    db = open_db(tmp_path / "a.db")
    summary = await run_async(db, targets, control_options(net, keep_bodies="all"))
    out = tmp_path / "ooni.jsonl"
    with out.open("w") as f:
        export(db, summary.run_id, "ooni", f)
    # What OONI's `blocking`/`accessible` must say for each scenario's expected verdict (ts-017's vocabulary).
    words = {_url(net, n, s, p): list(_ooni_words(status, detail, rule)) for n, s, _, p, (status, _, detail, rule)
             in SCENARIOS}
    exported = [json.loads(line)["input"] for line in out.read_text().splitlines()]
    expected = {"file": str(out), "expected": [words[url] for url in exported]}
    # The database with known verdicts adds what the loopback world has no case of (error, a censor address).
    from tests import research_world
    from tests.test_research_outputs import known_ooni_export

    known = tmp_path / "known-ooni.jsonl"
    expectations = [expected, {"file": str(known)} | known_ooni_export(research_world.build(tmp_path / "k.db"), known)]
    (tmp_path / "expected.json").write_text(json.dumps(expectations))
    venv = _oonidata_venv(tmp_path)
    check = tmp_path / "check.py"
    check.write_text("""
import json, sys
from oonidata.dataclient import load_measurement
n = 0
for spec in json.load(open(sys.argv[1])):
    lines = open(spec["file"]).read().splitlines()
    assert len(lines) == len(spec["expected"]), (spec["file"], len(lines))
    for line, (blocking, accessible) in zip(lines, spec["expected"]):
        raw = json.loads(line)
        m = load_measurement(msmt=raw)
        tk = m.test_keys
        assert m.probe_ip == "127.0.0.1" and m.input == raw["input"] and m.probe_asn == raw["probe_asn"]
        assert len(tk.queries or []) == len(raw["test_keys"]["queries"])
        assert len(tk.tcp_connect or []) == len(raw["test_keys"]["tcp_connect"])
        assert len(tk.requests or []) == len(raw["test_keys"]["requests"])
        for r, rr in zip(tk.requests or [], raw["test_keys"]["requests"]):
            assert (r.response.code if r.response else None) == (rr["response"] or {}).get("code")
        if raw["test_keys"]["control"]:
            assert tk.control.http_request.status_code == raw["test_keys"]["control"]["http_request"]["status_code"]
        got = (tk.blocking, tk.accessible)
        assert got == (blocking, accessible), (raw["input"], raw["test_keys"]["x_probe_status"], got)
        assert tk.blocking in (False, None, "dns", "tcp_ip", "http-failure", "http-diff"), tk.blocking
        n += 1
print("ok", n)
""")
    proc = subprocess.run([str(venv / "bin" / "python"), str(check), str(tmp_path / "expected.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == f"ok {len(SCENARIOS) + 15}"


def _ooni_words(status: str, detail: str, rule: str) -> tuple[str | bool | None, bool | None]:
    """OONI's (blocking, accessible) for an expected verdict, worked out from ts-017 by hand: TLS failures are
    http-failure, a differing page http-diff; a site down everywhere false/false; a failed analysis null/null;
    a redirect target that fails to connect or shake hands http-failure (OONI's HTTP client followed it)."""
    if status in ("ok", "down", "error"):
        return {"ok": (False, True), "down": (False, False), "error": (None, None)}[status]
    layer = detail.split("/")[0]
    if rule.startswith("redirect-") and layer in ("tcp", "tls", "http"):
        return "http-failure", False
    words = {"dns": "dns", "tcp": "tcp_ip", "tls": "http-failure"}
    return words.get(layer, "http-diff" if detail == "http/diff" else "http-failure"), False


OONIDATA_VENV = Path(os.environ.get("PROBE_OONIDATA_VENV") or "/opt/probe-oonidata")


def _oonidata_venv(tmp_path: Path) -> Path:
    """The virtual environment with oonidata that .ci/run prepares ($PROBE_OONIDATA_VENV): never installed here."""
    python = OONIDATA_VENV / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import oonidata"], capture_output=True).returncode == 0:
        return OONIDATA_VENV
    missing = (f"no oonidata virtual environment at {OONIDATA_VENV}: make one with `python3 -m venv "
               f"{OONIDATA_VENV} && {OONIDATA_VENV}/bin/pip install oonidata` (.ci/run does) or set "
               "PROBE_OONIDATA_VENV")
    if IN_CI:
        pytest.fail(missing)
    pytest.skip(missing)
