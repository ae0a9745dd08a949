"""Control and verdicts on real scenarios: a helper and a DoH server see the truth; censors sit in front of the
real servers on other loopback addresses (same port numbers), the way an ISP's box sits in the path.

PROBE_WRITE_GOLDEN=1 refreshes tests/golden/ from these runs (then review the diff).
"""

from __future__ import annotations

from functools import partial

import pytest

from probe import open_db, read_inputs, run_async
from probe.control.helper_server import serve_forever
from probe.lab.servers import (
    DnsEntry,
    DnsZone,
    Site,
    Sites,
    blackhole,
    serve_dns,
    serve_doh,
    serve_http,
    serve_reset,
    serve_sni_filter,
)
from probe.storage import load_observations, measurements
from tests.conftest import write_golden

BLOCKPAGE = b"<html><head><title>Blocked</title></head><body>This site is not available.</body></html>"

# name, scheme, probe-side DNS answer (None: as the truth), port ("http"/"https"/attribute), expected
SCENARIOS = [
    ("ok.test", "http", None, "http_port", ("ok", None, "ok", "ok")),
    ("ok.test", "https", None, "https_port", ("ok", None, "ok", "https-verified")),
    ("dynamic.test", "http", None, "http_port", ("ok", None, "ok", "ok")),
    ("nxc.test", "http", "nxdomain", "http_port", ("blocked", "dns", "dns/nxdomain", "dns-nxdomain")),
    ("bogon.test", "http", "10.10.34.35", "http_port", ("blocked", "dns", "dns/bogon", "dns-bogon")),
    ("inject.test", "http", "inject", "http_port", ("blocked", "dns", "dns/injection", "dns-injection")),
    ("nxboth.test", "http", "nxdomain", "http_port", ("down", "dns", "dns/nxdomain", "dns-down")),
    ("servfail.test", "http", "servfail", "http_port",
     ("anomaly", "dns", "dns/dns_server_failure", "dns-failure")),
    ("tcpdrop.test", "http", "127.0.0.5", "http_port",
     ("blocked", "tcp", "tcp/generic_timeout_error", "tcp-blocked")),
    ("tcpinc.test", "http", "127.0.1.9", "http_port",
     ("blocked", "dns", "dns/inconsistent", "dns-inconsistent-tcp")),
    ("down.test", "http", None, "refused_port", ("down", "tcp", "tcp/connection_refused", "tcp-down")),
    ("sni.test", "https", "127.0.0.6", "https_port", ("blocked", "tls", "tls/connection_reset", "tls-sni")),
    ("tlsip.test", "https", "127.0.0.7", "https_port", ("blocked", "tcp", "tcp/connection_reset", "tls-ip")),
    ("mitm.test", "https", "127.0.0.8", "https_port",
     ("blocked", "tls", "tls/ssl_invalid_hostname", "tls-mitm")),
    ("tlsdown.test", "https", None, "badcert_port", ("down", "tls", "tls/ssl_invalid_hostname", "tls-down")),
    ("httpreset.test", "http", "127.0.0.9", "http_port",
     ("blocked", "http", "http/connection_reset", "http-failure")),
    ("resetall.test", "http", None, "reset_port", ("down", "http", "http/connection_reset", "http-down")),
    ("diff.test", "http", "127.0.0.10", "http_port", ("anomaly", "http", "http/diff", "http-diff")),
    ("dnspage.test", "http", "127.0.1.10", "http_port",
     ("blocked", "dns", "dns/inconsistent", "dns-inconsistent-page")),
    ("ghost.test", "http", "127.0.0.1", "http_port", ("anomaly", "dns", "dns/inconsistent", "dns-only-here")),
]
NOT_IN_TRUTH = {"nxboth.test", "ghost.test"}


def _url(net, name, scheme, port_attr):
    return f"{scheme}://{name}:{getattr(net, port_attr)}/"


@pytest.fixture
async def world(net, nursery, server_ssl, wrong_name_ssl):
    loop = ("127.0.0.1",)
    truth = DnsZone(entries={n: DnsEntry(a=loop) for n, *_ in SCENARIOS if n not in NOT_IN_TRUTH})
    net.truth = truth
    probe_zone = net.zone.entries
    for name, _, answer, _, _ in SCENARIOS:
        net.sites.by_host.setdefault(name, Site(title=f"The {name.split('.')[0]} website"))
        if answer is None:
            probe_zone[name] = DnsEntry(a=loop)
        elif answer == "inject":
            probe_zone[name] = DnsEntry(a=loop, behaviour="inject", forged=("10.10.34.36",))
        elif answer in ("nxdomain", "servfail"):
            probe_zone[name] = DnsEntry(behaviour=answer)
        else:
            probe_zone[name] = DnsEntry(a=(answer,))
    truth_port = await nursery.start(serve_dns, truth)
    net.helper_port = await nursery.start(partial(
        serve_forever, "127.0.0.1", 0, resolvers=(f"127.0.0.1:{truth_port}",), ca_file=net.ca_file,
        allow_net=("127.0.0.0/8",), timeout=2.0))
    net.doh_port = await nursery.start(partial(serve_doh, truth, ssl_context=server_ssl))
    blocked_sites = Sites(default=Site(body=BLOCKPAGE, headers=()))
    await nursery.start(partial(serve_sni_filter, {"sni.test"}, ("127.0.0.1", net.https_port), "127.0.0.6",
                                net.https_port))
    await nursery.start(partial(serve_reset, "127.0.0.7", net.https_port))
    await nursery.start(partial(serve_http, net.sites, "127.0.0.8", net.https_port, ssl_context=wrong_name_ssl))
    await nursery.start(partial(serve_reset, "127.0.0.9", net.http_port))
    await nursery.start(partial(serve_http, blocked_sites, "127.0.0.10", net.http_port))
    await nursery.start(partial(serve_http, blocked_sites, "127.0.1.10", net.http_port))
    silent = blackhole("127.0.0.5", net.http_port)
    yield net
    for s in (silent[0], *silent[1]):
        s.close()


def control_options(net, **kw):
    return net.options(no_control=False, helper=f"http://127.0.0.1:{net.helper_port}/",
                       doh=(f"https://127.0.0.1:{net.doh_port}/dns-query",), **kw)


async def test_every_rule_fires_on_its_scenario(world):
    net = world
    urls = [_url(net, n, s, p) for n, s, _, p, _ in SCENARIOS]
    targets, _ = read_inputs(urls)
    db = open_db(":memory:")
    summary = await run_async(db, targets, control_options(net), emit=None)
    rows = {m["url"]: m for m in measurements(db, summary.run_id)}
    got, want = {}, {}
    for (*_, expected), url in zip(SCENARIOS, urls, strict=True):
        m = rows[url]
        got[url] = (m["status"], m["layer"], m["detail"], m["rule"])
        want[url] = expected
        assert m["control"] == "ok", (url, m["evidence"])
    assert got == want, "\n".join(f"{u}: got {got[u]} want {want[u]}\n   {rows[u]['evidence']}"
                                  for u in urls if got[u] != want[u])
    for (name, scheme, *_), url in zip(SCENARIOS, urls, strict=True):
        write_golden(db, rows[url], f"{name.split('.')[0]}-{scheme}")


async def test_control_runs_in_parallel_and_is_recorded(world):
    net = world
    targets, _ = read_inputs([net.https("ok.test")])
    db = open_db(":memory:")
    summary = await run_async(db, targets, control_options(net), emit=None)
    obs = load_observations(db, next(measurements(db, summary.run_id)))
    assert obs.control is not None and obs.control.http_status == 200
    assert obs.control.http_title == "Welcome to the ok site"
    assert obs.control.tcp_connect[f"127.0.0.1:{net.https_port}"]["status"] is True
    assert {q.resolver for q in obs.control_dns} == {f"doh:https://127.0.0.1:{net.doh_port}/dns-query"}
    assert all(q.answers == ("127.0.0.1",) for q in obs.control_dns if q.query_type == "A")


async def test_unreachable_control_gives_error_not_blocked(world):
    from tests.conftest import closed_port

    net = world
    targets, _ = read_inputs(["http://nxc.test/", net.http("ok.test")])
    db = open_db(":memory:")
    opts = net.options(no_control=False, helper=f"http://127.0.0.1:{closed_port()}/",
                       doh=(f"https://127.0.0.1:{closed_port()}/dns-query",))
    summary = await run_async(db, targets, opts, emit=None)
    rows = {m["url"]: m for m in measurements(db, summary.run_id)}
    assert rows["http://nxc.test/"]["status"] == "error"
    assert rows["http://nxc.test/"]["detail"] == "control/failed"
    assert rows[net.http("ok.test")]["status"] == "ok"  # reachable is reachable, control or not
    assert {r["control"] for r in rows.values()} == {"failed"}
    write_golden(db, rows["http://nxc.test/"], "nxc-control-unreachable")


async def test_blockpage_and_censor_ip_are_named_and_reanalysis_finds_them(world, nursery, shared_data):
    from probe.reanalysis import reanalyze
    from probe.signatures import SignatureSet
    from probe.signatures.loaders import load_builtin
    from probe.signatures.model import make

    net = world
    page = (shared_data / "pk-surf-safely-blockpage-censoredplanet-quack-2021-05-31.html").read_bytes()
    await nursery.start(partial(serve_http, Sites(default=Site(body=page, headers=())), "127.0.0.11",
                                net.http_port))
    await nursery.start(partial(serve_http, Sites(default=Site(body=BLOCKPAGE, headers=())), "127.0.2.12",
                                net.http_port))
    for name, answer in (("pkblock.test", "127.0.0.11"), ("censorip.test", "127.0.2.12")):
        net.zone.entries[name] = DnsEntry(a=(answer,))
        net.truth.entries[name] = DnsEntry(a=("127.0.0.1",))
        real = b"<html><head><title>The real site</title></head><body>" + b"<p>News of the day.</p>" * 900
        net.sites.by_host[name] = Site(body=real + b"</body></html>")
    # A lab censor's blockpage address, as a DNS signature (the real ones are public addresses we never dial).
    sigs = [*load_builtin()[0], make(id="lab.dns-blockpage-server", where="dns", kind="full", pattern="127.0.2.12",
                                     scope="isp", source="this test")]
    sigset = SignatureSet(sigs)
    urls = [net.http("pkblock.test"), net.http("censorip.test")]
    targets, _ = read_inputs(urls)
    db = open_db(":memory:")
    summary = await run_async(db, targets, control_options(net, keep_bodies="suspect"), emit=None)
    before = {m["url"]: m["detail"] for m in measurements(db, summary.run_id)}
    assert before == {urls[0]: "http/diff", urls[1]: "dns/inconsistent"}  # no signatures yet
    changed, total = reanalyze(db, summary.run_id, sigset.hits)
    rows = {m["url"]: m for m in measurements(db, summary.run_id)}
    assert (changed, total) == (2, 2)
    assert (rows[urls[0]]["status"], rows[urls[0]]["detail"], rows[urls[0]]["fingerprint"]) == (
        "blocked", "http/blockpage:probe.pk.surf-safely", "probe.pk.surf-safely")
    assert (rows[urls[1]]["status"], rows[urls[1]]["detail"]) == ("blocked", "dns/censor-ip:lab.dns-blockpage-server")
    write_golden(db, rows[urls[0]], "pk-surf-safely-in-path")
