"""The network survey (netview.py) against real loopback servers: NXDOMAIN hijacking beside ghost DNS, and a
captive portal that stops the run before anything is judged."""

from __future__ import annotations

import sqlite3
import sys

import trio

from probe import open_db, read_inputs, run_async
from probe.lab.servers import DnsEntry, Site
from probe.storage import measurements, network_view
from tests.control_world import _url, control_options


def _check_site(net) -> str:
    net.sites.by_host["check.test"] = Site(status=204, body=b"", headers=())
    net.zone.entries["check.test"] = DnsEntry(a=("127.0.0.1",))
    return f"http://check.test:{net.http_port}/generate_204"


async def _run(net, urls, **opts):
    db = open_db(":memory:")
    targets, _ = read_inputs(urls)
    summary = await run_async(db, targets, control_options(net, **opts))
    return db, summary, {m["url"]: m for m in measurements(db, summary.run_id)}


async def test_an_answer_for_a_name_that_does_not_exist_is_blocking_only_from_an_honest_resolver(world):
    net = world
    ghost, gone = _url(net, "ghost.test", "http", "http_port"), _url(net, "nxboth.test", "http", "http_port")
    check = _check_site(net)
    db, summary, rows = await _run(net, [ghost, gone], portal_check=check)
    view = network_view(db, summary.run_id)
    assert view is not None and view.hijacking == {} and view.honest and view.check is None and not view.captive
    assert (rows[ghost]["status"], rows[ghost]["rule"]) == ("blocked", "dns-ghost"), rows[ghost]["evidence"]
    assert (rows[gone]["status"], rows[gone]["rule"]) == ("down", "dns-down")

    # The same names behind a resolver that answers every name that does not exist (an ISP's ad server).
    net.zone.default = DnsEntry(a=("127.0.0.1",))
    net.zone.entries.pop("nxboth.test")
    db, summary, rows = await _run(net, [ghost, gone], portal_check=check)
    view = network_view(db, summary.run_id)
    assert view is not None and list(view.hijacking.values()) == [("127.0.0.1",)] and not view.captive
    for url in (ghost, gone):
        assert (rows[url]["status"], rows[url]["rule"]) == ("down", "dns-hijacked-nxdomain"), rows[url]["evidence"]
        assert "answer names that do not exist" in rows[url]["evidence"]


async def test_behind_a_captive_portal_nothing_is_judged_and_the_run_waits_for_a_login(world, tmp_path):
    net = world
    check = _check_site(net)
    login = Site(title="Hotel WiFi - please log in", body=b"<html><title>Hotel WiFi</title><form>room</form></html>")
    urls = [_url(net, "ok.test", "http", "http_port"), _url(net, "tcpdrop.test", "http", "http_port")]
    # The portal: every name resolves to it, every request gets its login page, the control is out of reach.
    saved_zone, saved_sites = (net.zone.entries, net.zone.default), dict(net.sites.by_host)
    net.zone.entries, net.zone.default = {}, DnsEntry(a=("127.0.0.1",))
    net.sites.by_host.clear()
    net.sites.default = login
    db_path = tmp_path / "p.db"
    cmd = [sys.executable, "-m", "probe", "run", *urls, "--db", str(db_path), "--no-system-resolver",
           "--resolver", f"127.0.0.1:{net.dns_port}", "--doh", "https://127.0.0.1:9/dns-query",
           "--helper", "http://127.0.0.1:9/", "--ca-file", net.ca_file, "--allow-net", "127.0.0.0/8",
           "--portal-check", check, "--timeout", "2", "--dns-timeout", "1"]
    proc = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 5, err
    assert "captive portal" in err and "HTTP 200" in err and "log in" in err and "--resume" in err
    con = sqlite3.connect(db_path)
    assert con.execute("select status from runs").fetchall() == [("captive",)]
    assert con.execute("select count(*) from measurements").fetchone() == (0,)  # nothing stored as blocked or ok
    con.close()
    # Logged in: the network is itself again, and the run is finished with its own options.
    net.zone.entries, net.zone.default = saved_zone
    net.sites.by_host.update(saved_sites)
    _check_site(net)
    proc = await trio.run_process([sys.executable, "-m", "probe", "run", "--resume", "--db", str(db_path),
                                   "--portal-check", check], capture_stdout=True, capture_stderr=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    con = sqlite3.connect(db_path)
    assert con.execute("select status from runs").fetchall() == [("done",)]
    assert con.execute("select count(*) from measurements").fetchone() == (2,)


def test_a_blocked_connectivity_check_alone_is_no_captive_portal() -> None:
    from probe.measure.netview import captive
    from probe.models import DnsQuery, NetworkView

    def answer(*addrs: str) -> DnsQuery:
        return DnsQuery(resolver="system:x", engine="udp", hostname="x", query_type="A", answers=addrs)

    served_wrong = NetworkView(check="HTTP 302 (http://blockpage.example/)", control_reachable=True)
    nxdomain = DnsQuery(resolver="s", engine="udp", hostname="a", query_type="A", failure="dns_nxdomain_error")
    assert captive(served_wrong, [nxdomain] * 2, ["198.51.100.7"]) is None
    # A portal answers every name with itself, the check's own name included...
    assert captive(served_wrong, [answer("10.0.0.1"), answer("10.0.0.1")], ["10.0.0.1"]) is not None
    # ...a resolver that hijacks NXDOMAIN answers made-up names alike but real names truly: no portal, when a
    # censor also blocks the check's site (found in review: every session was taken for a portal).
    assert captive(served_wrong, [answer("198.51.100.9"), answer("198.51.100.9")], ["198.51.100.7"]) is None
    assert captive(NetworkView(check="HTTP 200 ('Login')", control_reachable=False), [], []) is not None
    assert captive(NetworkView(check=None, control_reachable=False), [answer("10.0.0.1")] * 2, ["10.0.0.1"]) is None
