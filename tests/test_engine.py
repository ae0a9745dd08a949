"""The measurement engine end to end against real loopback servers (no control: local evidence only)."""

from __future__ import annotations

import json

import pytest

from probe import open_db, read_inputs, run_async
from probe.storage import load_observations, measurements
from tests.conftest import write_golden


async def measure(net, urls, **opts):
    db = open_db(":memory:")
    targets, warnings = read_inputs(urls)
    assert not warnings
    lines: list[str] = []
    summary = await run_async(db, targets, net.options(**opts), emit=lines.append)
    rows = {m["url"]: m for m in measurements(db, summary.run_id)}
    return db, summary, rows, [json.loads(x) for x in lines]


def obs_of(db, rows, url):
    return load_observations(db, rows[url])


async def test_clean_sites_are_ok_over_http_and_https(net):
    urls = [net.http("ok.test"), net.https("ok.test"), net.http("dynamic.test"), net.http("cname.test")]
    db, summary, rows, _lines = await measure(net, urls)
    assert summary.status == "done" and summary.measured == 4
    for url in urls:
        assert rows[url]["status"] == "ok", rows[url]["evidence"]
        assert rows[url]["control"] == "none"
    tls = obs_of(db, rows, net.https("ok.test")).tls[0]
    assert tls.failure is None and tls.version and tls.version.startswith("TLS")
    assert tls.peer_chain[0]["sans"] and "ok.test" in tls.peer_chain[0]["sans"]
    assert len(tls.peer_chain[0]["sha256"]) == 64
    hop = obs_of(db, rows, net.http("ok.test")).http[0]
    assert hop.status == 200 and hop.title == "Welcome to the ok site" and hop.ip == "127.0.0.1"
    cname = obs_of(db, rows, net.http("cname.test")).dns
    assert any("ok.test" in q.cnames for q in cname)


async def test_json_lines_carry_the_contract_fields(net):
    _, summary, rows, lines = await measure(net, [net.http("ok.test"), "http://nx.test/"])
    assert len(lines) == 2
    for line in lines:
        assert {"run_id", "url", "category", "status", "layer", "detail", "fingerprint", "control",
                "runtime_s"} <= set(line)
        assert line["run_id"] == summary.run_id
        assert rows[line["url"]]["status"] == line["status"]


async def test_dns_failures_recorded_and_never_blocked_without_control(net):
    urls = ["http://nx.test/", "http://lie.test/", "http://servfail.test/", "http://absent.test/"]
    db, _, rows, _ = await measure(net, urls)
    nx = obs_of(db, rows, "http://nx.test/")
    assert {q.failure for q in nx.dns} == {"dns_nxdomain_error"}
    assert rows["http://nx.test/"]["detail"] == "dns/dns_nxdomain_error"
    lie = obs_of(db, rows, "http://lie.test/")
    assert lie.bogons == ("10.10.34.35",)
    assert not lie.tcp, "a bogon answer must never be dialled"
    assert rows["http://lie.test/"]["detail"] == "dns/bogon"
    sf = obs_of(db, rows, "http://servfail.test/")
    assert "dns_servfail_error" in {q.failure for q in sf.dns}
    assert all(r["status"] == "anomaly" for r in rows.values()), [r["detail"] for r in rows.values()]
    write_golden(db, rows["http://lie.test/"], "lie-no-control")


async def test_injected_duplicate_reply_is_recorded(net):
    url = net.http("inject.test")
    db, _, rows, _ = await measure(net, [url])
    obs = obs_of(db, rows, url)
    a = next(q for q in obs.dns if q.query_type == "A")
    assert a.answers == ("10.10.34.36",)  # the forgery came first
    assert a.late_answers and a.late_answers[0]["answers"] == ["127.0.0.1"]
    assert rows[url]["detail"] == "dns/injection"


async def test_a_reply_without_qr_or_for_another_name_is_kept_as_evidence_never_as_the_answer(net):
    url = net.http("loose.test")
    db, _, rows, _ = await measure(net, [url])
    a = next(q for q in obs_of(db, rows, url).dns if q.query_type == "A")
    assert a.answers == ("127.0.0.1",) and a.failure is None  # the real reply, which came last
    rejected = [r["rejected"] for r in a.late_answers]
    assert rejected == ["not a response (QR=0)", "addresses for another name: 10.10.34.37"], a.late_answers
    assert rows[url]["status"] == "ok", rows[url]["evidence"]  # no injection claimed on sloppy forgeries alone
    assert "rejected replies" in rows[url]["evidence"]


async def test_tcp_failures_refused_and_timeout(net):
    refused = f"http://ok.test:{net.refused_port}/"
    silent = f"http://ok.test:{net.silent_port}/"
    db, _, rows, _ = await measure(net, [refused, silent], timeout=1.0)
    assert obs_of(db, rows, refused).tcp[0].failure == "connection_refused"
    assert obs_of(db, rows, silent).tcp[0].failure == "generic_timeout_error"
    assert rows[refused]["detail"] == "tcp/connection_refused"
    assert rows[silent]["detail"] == "tcp/generic_timeout_error"
    assert {rows[u]["status"] for u in (refused, silent)} == {"anomaly"}
    write_golden(db, rows[silent], "silent-no-control")


async def test_resets_at_tls_and_http(net):
    http_reset = f"http://reset.test:{net.reset_port}/"
    tls_reset = f"https://tlsreset.test:{net.reset_port}/"
    db, _, rows, _ = await measure(net, [http_reset, tls_reset])
    assert obs_of(db, rows, http_reset).http[0].failure == "connection_reset"
    hop = obs_of(db, rows, http_reset).http[0]
    # The TCP step's connection first (a reset before any byte may be the server closing it while it waited:
    # no evidence), then two fresh connections: the failure reproduced, and every try is kept.
    assert [(a["failure"], a["reused"]) for a in hop.attempts] == [("connection_reset", True),
                                                                    ("connection_reset", False),
                                                                    ("connection_reset", False)]
    tls = obs_of(db, rows, tls_reset).tls
    assert [(h.attempt, h.decoy, h.failure) for h in tls] == [(1, False, "connection_reset"),
                                                             (2, False, "connection_reset"),
                                                             (0, True, "connection_reset")]
    assert tls[2].sni == "decoy.test"
    assert rows[http_reset]["detail"] == "http/connection_reset"
    assert rows[tls_reset]["detail"] == "tls/connection_reset"
    write_golden(db, rows[tls_reset], "tlsreset-no-control")
    write_golden(db, rows[http_reset], "reset-no-control")


async def test_certificate_for_another_name(net):
    url = f"https://ok.test:{net.badcert_port}/"
    db, _, rows, _ = await measure(net, [url])
    tls = obs_of(db, rows, url).tls[0]
    assert tls.failure == "ssl_invalid_hostname"
    assert "someone-else.test" in tls.peer_chain[0]["sans"], "the chain is kept even when verification fails"
    assert rows[url]["detail"] == "tls/ssl_invalid_hostname"


async def test_untrusted_certificate_without_ca_file(net):
    url = net.https("ok.test")
    db, _, rows, _ = await measure(net, [url], ca_file=None)
    assert obs_of(db, rows, url).tls[0].failure == "ssl_unknown_authority"


async def test_redirects_followed_hop_by_hop(net):
    url = net.http("redirect.test")
    db, _, rows, _ = await measure(net, [url])
    hops = obs_of(db, rows, url).http
    assert [h.status for h in hops] == [302, 200]
    assert hops[1].url == net.http("ok.test", "/landing")
    assert rows[url]["status"] == "ok"


async def test_redirects_never_reach_home_or_files_or_loop_forever(net):
    loop, home, file = net.http("loop.test"), net.http("tohome.test"), net.http("tofile.test")
    db, _, rows, _ = await measure(net, [loop, home, file])
    loop_hops = obs_of(db, rows, loop).http
    assert len(loop_hops) == 11 and loop_hops[-1].stopped == "too-many-redirects:10"
    home_hops = obs_of(db, rows, home).http
    assert len(home_hops) == 1 and home_hops[0].stopped == "redirect-to-bogon:192.168.1.1"
    assert obs_of(db, rows, file).http[-1].stopped == "redirect-scheme:file"


async def test_big_body_is_capped_and_slow_body_times_out(net):
    big, slow = net.http("big.test"), net.http("slow.test")
    db, _, rows, _ = await measure(net, [big, slow], keep_bodies="all", body_cap=100_000, timeout=1.5)
    hop = obs_of(db, rows, big).http[0]
    assert hop.body_truncated and hop.body_length == 100_000 and len(hop.body) == 100_000
    slow_hop = obs_of(db, rows, slow).http[0]
    assert slow_hop.status == 200 and slow_hop.failure == "generic_timeout_error"
    assert rows[slow]["detail"] == "http/generic_timeout_error"


async def test_ip_literal_url_is_measured_without_dns(net):
    url = f"http://127.0.0.1:{net.http_port}/"
    db, _, rows, _ = await measure(net, [url])
    obs = obs_of(db, rows, url)
    assert not obs.dns and obs.tcp[0].failure is None and obs.http[0].status == 404


async def test_private_ip_literal_is_never_dialled(net):
    url = "http://10.1.2.3/admin"
    db, _, rows, _ = await measure(net, [url])
    obs = obs_of(db, rows, url)
    assert not obs.tcp and not obs.http and obs.bogons == ("10.1.2.3",)
    assert (rows[url]["status"], rows[url]["detail"]) == ("error", "local/not_public_address")
    write_golden(db, rows[url], "private-ip-literal")


async def test_vantage_offline_stores_nothing_not_censorship(net):
    # A resolver that never answers and no control: the whole vantage looks offline. A dead network is not
    # evidence: nothing is stored, and the URLs stay to be measured by --resume.
    from probe import storage
    from tests.conftest import closed_port

    dead = f"127.0.0.1:{closed_port()}"
    db, summary, rows, _ = await measure(net, ["http://a.test/", "http://b.test/"], resolvers=(dead,))
    assert summary.status == "offline" and summary.unstored == 2
    assert rows == {} and summary.run_measured == 0
    assert [t.url for t in storage.remaining_targets(db, summary.run_id)] == ["http://a.test/", "http://b.test/"]
    assert storage.resumable_run(db)["id"] == summary.run_id


@pytest.mark.root("unshare")
def test_no_route_is_told_by_this_machine_s_routing_table():
    """In a network namespace with no routes at all, a connection fails for want of a route here, and the
    route lookup (a UDP connect, which sends nothing) says so; on loopback there is a route."""
    import subprocess
    import sys

    from probe.measure.steps.tcp import has_local_route

    assert has_local_route("127.0.0.1")
    code = ("import trio; from probe.measure.steps import tcp\n"
            "c, s = trio.run(lambda: tcp.connect('198.18.0.1', 80, timeout=2, origin='probe', clock=lambda: 0.0))\n"
            "print(c.failure, c.no_local_route, tcp.has_local_route('198.18.0.1'))")
    out = subprocess.run(["unshare", "--net", sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["network_unreachable", "True", "False"]
