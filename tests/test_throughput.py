"""Transfer evidence and throttling (issue 20) outside the lab: what the HTTP step records of a page that comes
slowly, the OONI export and import of it, the helper's sized body, and page speeds over time in `probe diff` and
the report. (The verdicts themselves: tests/golden/*throttled*, and the lab's scenarios in tests/test_lab.py.)"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import trio
from click.testing import CliRunner

from probe import open_db
from probe.analysis.throughput import DROP, MIN_BODY, rate
from probe.cli import cli
from probe.control.helper_server import LINE_MAX, line_body
from probe.lab.servers import Site, Sites, serve_http
from probe.measure.netpolicy import NetPolicy
from probe.measure.steps import http
from probe.measure.steps.tls import TlsContexts
from probe.measure.targets import normalise
from probe.models import HttpHop, NetworkView, Observations, Verdict
from probe.research.diff import compare_runs
from probe.research.ooni import export_measurement, import_measurement
from probe.research.report import render
from probe.serialize import from_dict
from probe.storage import create_run, finish_run, set_network, set_vantage, write_measurement

GOLDEN = Path(__file__).parent / "golden"


async def _fetch(port: int) -> HttpHop:
    async def no_names(name: str) -> tuple[str | None, list[str]]:
        return "dns_no_answer", []

    hops = await http.fetch(f"http://paced.test:{port}/", hostname="paced.test", ip="127.0.0.1", resolve=no_names,
                            policy=NetPolicy.from_cidrs(["127.0.0.0/8"]), contexts=TlsContexts.build(None),
                            timeout=10, body_cap=1 << 20, max_redirects=0, clock=trio.current_time)
    return hops[0]


async def test_a_paced_page_s_first_byte_bytes_duration_and_first_reads_are_recorded(nursery):
    """A server that sends its 96 KiB page at 64 KiB/s: the hop says so, and a fast one says otherwise."""
    sites = Sites(by_host={"paced.test": Site(title="Paced", paragraphs=96 * 1024 // 28, rate=64 * 1024)},
                  default=Site(title="Fast", paragraphs=96 * 1024 // 28))
    port = await nursery.start(partial(serve_http, sites, "127.0.0.1", 0))
    hop = await _fetch(port)
    t = hop.transfer
    assert hop.status == 200 and (hop.body_length or 0) >= MIN_BODY
    assert t["bytes"] > hop.body_length  # the head's bytes too
    assert 0 <= t["ttfb"] < 1.0
    assert 1.0 < t["duration"] < 3.0  # 96 KiB at 64 KiB/s, in tenths of a second
    assert len(t["events"]) == 16 and all(n > 0 for _, n in t["events"])  # capped, in order of time
    assert [e[0] for e in t["events"]] == sorted(e[0] for e in t["events"])
    speed = rate(t)
    assert speed is not None and 40 * 1024 < speed < 90 * 1024
    sites.by_host.clear()  # the same page from a server that sends at once
    fast = await _fetch(port)
    fast_speed = rate(fast.transfer)
    assert fast_speed is None or fast_speed > DROP * speed


async def test_a_stall_between_bursts_is_summed_apart_and_left_out_of_the_speed(nursery):
    """Loss that only a retransmission timeout recovers: a burst, 0.5 s of nothing, the rest at full speed. The
    hop's transfer says how long it stalled, and its speed is the speed between the stall's two sides."""
    body = b"x" * (128 * 1024)

    async def stalling(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:65536])
        await trio.sleep(0.5)
        await stream.send_all(body[65536:])
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(trio.serve_listeners, stalling, listeners)
    hop = await _fetch(listeners[0].socket.getsockname()[1])
    t = hop.transfer
    assert hop.body_length == len(body) and t["duration"] >= 0.5
    assert 0.5 <= t["stalled"] <= t["duration"]
    speed = rate(t)
    assert speed is not None and speed > 20 * len(body)  # far faster than 128 KiB over the 0.5 s


def test_the_ooni_export_carries_transfer_evidence_and_the_import_reads_it_back():
    doc = json.loads((GOLDEN / "http-throttled--lab-throttled.json").read_text())
    obs = from_dict(doc["observations"])
    verdict = Verdict(status="blocked", layer="http", detail="http/throttled", rule="http-throttled", control="ok")
    run = {"id": 1, "started": "2026-12-04T18:00:00+00:00", "vantage_asn": 64512, "vantage_network": "lab"}
    m = json.loads(json.dumps(export_measurement(obs, verdict, run, "test")))
    assert m["test_keys"]["control"]["http_request"]["x_transfer"]["bytes"] >= 128 * 1024
    events = m["test_keys"]["network_events"]  # OONI's own field, for OONI's tools: the main chain's first reads
    assert events and all(e["operation"] == "read" and e["num_bytes"] > 0 for e in events)
    assert [[e["t"], e["num_bytes"]] for e in events] == obs.http[0].transfer["events"]
    back = import_measurement(m)
    assert [h.transfer for h in back.http] == [h.transfer for h in obs.http]
    assert {h.chain for h in back.http} == {"", "repeat", "line"}  # the page twice, the line's sample beside
    assert back.control is not None and obs.control is not None
    assert back.control.http_transfer == obs.control.http_transfer
    trickle = from_dict(json.loads((GOLDEN / "tls-throttled--lab-trickle-stall.json").read_text())["observations"])
    again = import_measurement(json.loads(json.dumps(export_measurement(trickle, verdict, run, "test"))))
    assert [h.transfer for h in again.tls] == [h.transfer for h in trickle.tls]
    assert all(h.transfer["bytes"] == 600 for h in again.tls)


def test_the_helper_serves_a_sized_body_for_the_line_survey():
    assert len(line_body("/x/bytes?n=262144").body) == 262144
    assert len(line_body(f"/x/bytes?n={10 * LINE_MAX}").body) == LINE_MAX
    assert line_body("/x/bytes?n=lots").status == 400


def _transfer(kib: int, seconds: float) -> dict:
    return {"bytes": kib * 1024, "duration": seconds, "ttfb": 0.01, "events": []}


def _world(path: Path) -> None:
    """Two runs on one network: a page that came at 1000 KiB/s and then at 10; one that stayed; a small one."""
    db = open_db(path)
    pages = {"big": (200, [1.0, 20.0]), "steady": (200, [0.5, 0.6]), "small": (10, [0.001, 1.0])}
    for i, line in enumerate((4.0, 4.2)):
        targets = [normalise(f"http://{name}.test/") for name in pages]
        run_id = create_run(db, options={}, software_version="test", rules_version="test", targets=targets,
                            resolvers=[])
        set_vantage(db, run_id, 64500, "TESTNET", "PK", None)
        survey = set_network(db, run_id, NetworkView(line=_transfer(1024, 1 / line)))
        for t in targets:
            kib, seconds = pages[t.hostname.removesuffix(".test")]
            hop = HttpHop(url=t.url, ip="192.0.2.1", status=200, body_length=kib * 1024,
                          transfer=_transfer(kib, seconds[i]))
            with db.atomic():
                write_measurement(db, run_id, Observations(target=t, http=(hop,)),
                                  Verdict(status="ok", layer=None, detail="ok", rule="ok", control="ok"), "test",
                                  keep_body=False, survey_id=survey)
        finish_run(db, run_id, "done")
    db.close()


def test_diff_and_the_report_show_page_speeds_that_changed_and_the_line_s(tmp_path):
    path = tmp_path / "speeds.db"
    _world(path)
    db = open_db(path)
    d = compare_runs(db, 1, 2)
    assert [(c.url, c.before, c.after) for c in d.speeds] == [("http://big.test/", 200.0, 10.0)]
    assert (d.line_a, d.line_b) == (4096.0, 4300.8)
    out = CliRunner().invoke(cli, ["diff", "1", "2", "--db", str(path)])
    assert out.exit_code == 0, out.output
    assert "speed   0.05x http://big.test/: 200.0 -> 10.0 KiB/s" in out.output
    assert "line speed: 4096.0 -> 4300.8 KiB/s" in out.output
    as_json = json.loads(CliRunner().invoke(cli, ["diff", "1", "2", "--db", str(path), "--json"]).output)
    assert as_json["speeds"] == [{"url": "http://big.test/", "before": 200.0, "after": 10.0}]
    history = json.loads(CliRunner().invoke(cli, ["diff", "--since", "2000-01-01", "--db", str(path),
                                                  "--json"]).output)
    assert [c["url"] for d in history["AS64500 TESTNET"]["diffs"] for c in d["speeds"]] == ["http://big.test/"]
    page = render(db, [dict(r) for r in db.query("select * from runs order by id")], "test")
    assert "<td>http://big.test/</td><td>200.0</td><td>10.0</td><td>0.05×</td>" in page
    assert "steady.test" not in page.split("class='speeds'")[1]
