"""A small world for control tests: a helper and a DoH server that see the truth, and censors in front of the
real servers on other loopback addresses (same port numbers), the way an ISP's box sits in the path."""

from __future__ import annotations

from functools import partial

import pytest

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
     ("anomaly", "dns", "dns/dns_servfail_error", "dns-failure")),
    ("tcpdrop.test", "http", "127.0.0.5", "http_port",
     ("blocked", "tcp", "tcp/generic_timeout_error", "tcp-blocked")),
    ("tcpinc.test", "http", "127.0.1.9", "http_port",
     ("blocked", "dns", "dns/inconsistent", "dns-inconsistent-tcp")),
    ("down.test", "http", None, "refused_port", ("down", "tcp", "tcp/connection_refused", "tcp-down")),
    ("sni.test", "https", "127.0.0.6", "https_port", ("blocked", "tls", "tls/connection_reset", "tls-sni")),
    ("tlsip.test", "https", "127.0.0.7", "https_port", ("blocked", "tcp", "tcp/connection_reset", "tls-ip")),
    # Our answer leads to a server whose certificate is wrong for the name, and the helper's handshake there
    # fails the same way: the answer is at fault (a real on-path MITM is a hand-written golden, tls-mitm).
    ("mitm.test", "https", "127.0.1.8", "https_port",
     ("blocked", "dns", "dns/inconsistent", "dns-inconsistent-tls")),
    ("tlsdown.test", "https", None, "badcert_port", ("down", "tls", "tls/ssl_invalid_hostname", "tls-down")),
    ("httpreset.test", "http", "127.0.0.9", "http_port",
     ("blocked", "http", "http/connection_reset", "http-failure")),
    ("resetall.test", "http", None, "reset_port", ("down", "http", "http/connection_reset", "http-down")),
    ("diff.test", "http", "127.0.0.10", "http_port", ("anomaly", "http", "http/diff", "http-diff")),
    ("dnspage.test", "http", "127.0.1.10", "http_port",
     ("blocked", "dns", "dns/inconsistent", "dns-inconsistent-page")),
    ("ghost.test", "http", "127.0.0.1", "http_port", ("blocked", "dns", "dns/inconsistent", "dns-ghost")),
    ("bogonall.test", "http", "10.10.34.35", "http_port", ("down", "dns", "dns/bogon", "dns-bogon-everywhere")),
    # An honest, slow resolver rotating its answers: our retransmission's reply is no injection.
    ("rotate.test", "http", "rotate-slow", "http_port", ("ok", None, "ok", "ok")),
    # Redirect chains failing at the second hop, each judged at that hop's own step.
    ("redir-nx.test", "http", None, "http_port", ("blocked", "dns", "dns/nxdomain", "redirect-blocked")),
    ("redir-drop.test", "http", None, "http_port",
     ("blocked", "tcp", "tcp/generic_timeout_error", "redirect-blocked")),
    ("redir-sni.test", "http", None, "http_port", ("blocked", "tls", "tls/connection_reset", "redirect-blocked")),
    ("redir-reset.test", "http", None, "http_port",
     ("blocked", "http", "http/connection_reset", "redirect-blocked")),
    ("redir-gone.test", "http", None, "http_port", ("down", "dns", "dns/nxdomain", "redirect-down")),
    ("redir-loop.test", "http", None, "http_port",
     ("down", "http", "http/too-many-redirects:10", "redirect-stopped")),
    ("redir-bogon.test", "http", None, "http_port",
     ("anomaly", "http", "http/redirect-to-bogon:10.10.34.35", "redirect-unfinished")),
]
NOT_IN_TRUTH = {"nxboth.test", "ghost.test"}
TRUTH_ANSWERS = {"bogonall.test": ("10.10.34.35",)}  # non-public for everyone: misconfigured, not censored
# name -> where it redirects: (scheme, host, port attribute of Net)
REDIRECTS = {"redir-nx.test": ("http", "nxc.test", "http_port"),
             "redir-drop.test": ("http", "tcpdrop.test", "http_port"),
             "redir-sni.test": ("https", "sni.test", "https_port"),
             "redir-reset.test": ("http", "httpreset.test", "http_port"),
             "redir-gone.test": ("http", "nxboth.test", "http_port"),
             "redir-bogon.test": ("http", "bogon.test", "http_port")}


def _url(net, name, scheme, port_attr):
    return f"{scheme}://{name}:{getattr(net, port_attr)}/"


@pytest.fixture
async def world(net, nursery, server_ssl, wrong_name_ssl):
    loop = ("127.0.0.1",)
    truth = DnsZone(entries={n: DnsEntry(a=TRUTH_ANSWERS.get(n, loop)) for n, *_ in SCENARIOS
                             if n not in NOT_IN_TRUTH})
    net.truth = truth
    probe_zone = net.zone.entries
    for name, _, answer, _, _ in SCENARIOS:
        net.sites.by_host.setdefault(name, Site(title=f"The {name.split('.')[0]} website"))
        if answer is None:
            probe_zone[name] = DnsEntry(a=loop)
        elif answer == "rotate-slow":
            probe_zone[name] = DnsEntry(a=("127.0.0.1", "127.0.0.12"), behaviour="rotate-slow")
        elif answer == "inject":
            probe_zone[name] = DnsEntry(a=loop, behaviour="inject", forged=("10.10.34.36",))
        elif answer in ("nxdomain", "servfail"):
            probe_zone[name] = DnsEntry(behaviour=answer)
        else:
            probe_zone[name] = DnsEntry(a=(answer,))
    for name, (scheme, target, port_attr) in REDIRECTS.items():
        net.sites.by_host[name] = Site(status=302, location=_url(net, target, scheme, port_attr))
    net.sites.by_host["redir-loop.test"] = Site(status=302, location="/again")
    truth_port = await nursery.start(serve_dns, truth)
    net.helper_port = await nursery.start(partial(
        serve_forever, "127.0.0.1", 0, resolvers=(f"127.0.0.1:{truth_port}",), ca_file=net.ca_file,
        allow_net=("127.0.0.0/8",), timeout=2.0))
    net.doh_port = await nursery.start(partial(serve_doh, truth, ssl_context=server_ssl))
    blocked_sites = Sites(default=Site(body=BLOCKPAGE, headers=()))
    await nursery.start(partial(serve_sni_filter, {"sni.test"}, ("127.0.0.1", net.https_port), "127.0.0.6",
                                net.https_port))
    await nursery.start(partial(serve_reset, "127.0.0.7", net.https_port))
    await nursery.start(partial(serve_http, net.sites, "127.0.1.8", net.https_port, ssl_context=wrong_name_ssl))
    await nursery.start(partial(serve_reset, "127.0.0.9", net.http_port))
    await nursery.start(partial(serve_http, net.sites, "127.0.0.12", net.http_port))  # a CDN's second node
    await nursery.start(partial(serve_http, blocked_sites, "127.0.0.10", net.http_port))
    await nursery.start(partial(serve_http, blocked_sites, "127.0.1.10", net.http_port))
    silent = blackhole("127.0.0.5", net.http_port)
    yield net
    for s in (silent[0], *silent[1]):
        s.close()


def control_options(net, **kw):
    # DNS timeout 2 s (rotate.test's resolver answers the first copy after 0.8 s, past the retransmission at
    # 0.5 s and within the late window after its answer); late window 0.5 s, as in a real run.
    kw = {"dns_timeout": 2.0, "late_window": 0.5, **kw}
    return net.options(no_control=False, helper=f"http://127.0.0.1:{net.helper_port}/",
                       doh=(f"https://127.0.0.1:{net.doh_port}/dns-query",), **kw)


