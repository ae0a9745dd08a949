"""Verdicts on cases the lab does not build, each a plain set of observations (analysis is pure): the traps a
careless rule falls into, most of them false positives. Found by review; kept so they stay fixed."""

from __future__ import annotations

import hashlib

from probe.analysis import analyse
from probe.models import ControlResult, DnsQuery, HttpHop, Observations, Target, TcpConnect, TlsHandshake

T = Target(url="http://site.example/", hostname="site.example", scheme="http", port=80)
TS = Target(url="https://site.example/", hostname="site.example", scheme="https", port=443)
REAL, OTHER, FORGED = "198.51.100.7", "203.0.113.7", "203.0.113.99"


def q(resolver: str, answers=(), qtype="A", failure=None, rcode="NOERROR", late=(), control=False) -> DnsQuery:
    return DnsQuery(resolver=resolver, engine="doh" if control else "udp", hostname="site.example", query_type=qtype,
                    answers=tuple(answers), failure=failure, rcode=rcode, late_answers=tuple(late), control=control)


def page(url: str, *, title="Daily News", chain="", ip=OTHER, body=b"x" * 1000) -> HttpHop:
    return HttpHop(url=url, chain=chain, ip=ip, status=200, headers=(("x-news", "1"),), body_length=len(body),
                   body_sha256=hashlib.sha256(body).hexdigest(), title=title, body=body)


def verdict(obs: Observations) -> tuple[str, str | None, str, str]:
    v = analyse(obs)
    return v.status, v.layer, v.detail, v.rule


def test_an_unreachable_lie_beside_a_working_resolver_is_dns_interference():
    dns = (q("system:isp", [FORGED]), q("system:isp", (), "AAAA", "dns_no_answer"),
           q("udp:public", [REAL]), q("udp:public", (), "AAAA", "dns_no_answer"))
    tcp = (TcpConnect(ip=FORGED, port=80, origin="probe", failure="generic_timeout_error", no_local_route=False),
           TcpConnect(ip=REAL, port=80, origin="probe"))
    http = (page(T.url, chain="dns:udp:public", ip=REAL),)
    doh = (q("doh:c", [REAL], control=True), q("doh:c", (), "AAAA", "dns_no_answer", control=True))
    want = ("blocked", "dns", "dns/inconsistent", "dns-inconsistent-tcp")
    assert verdict(Observations(target=T, dns=dns, tcp=tcp, http=http, control_dns=doh)) == want
    helper = ControlResult(source="h", dns_addrs=(REAL,), tcp_connect={f"{REAL}:80": {"status": True}},
                           http_status=200, http_title="Daily News", http_body_length=1000)
    assert verdict(Observations(target=T, dns=dns, tcp=tcp, http=http, control=helper)) == want


def test_a_cdn_page_with_another_title_at_the_helper_is_not_a_dns_lie():
    """Geo-DNS (another /24 than the helper's) and a localised title: OONI's tests say the page is the same."""
    helper = ControlResult(source="h", dns_addrs=(REAL,), http_status=200, http_title="Weather Karachi today",
                           http_body_length=1000, http_headers={"x-news": "1"})
    obs = Observations(target=T, dns=(q("system:isp", [OTHER]),), control=helper,
                       tcp=(TcpConnect(ip=OTHER, port=80, origin="probe"),),
                       http=(page(T.url, title="Weather London today"),))
    assert verdict(obs)[0] == "ok"


def test_a_late_servfail_or_refused_is_no_injection():
    doh = (q("doh:c", [REAL], control=True),)
    bogon = Observations(target=T, dns=(q("system:isp", ["10.10.34.36"], late=({"answers": [], "rcode": "REFUSED"},)),),
                         control_dns=doh, bogons=("10.10.34.36",))
    assert verdict(bogon) == ("blocked", "dns", "dns/bogon", "dns-bogon")
    fine = Observations(target=T, dns=(q("system:isp", [REAL], late=({"answers": [], "rcode": "SERVFAIL"},)),),
                        control_dns=doh, tcp=(TcpConnect(ip=REAL, port=80, origin="probe"),),
                        http=(page(T.url, ip=REAL),))
    assert verdict(fine)[0] == "ok"
    # A late NXDOMAIN after a right answer is a forgery that lost the race: the control settles it.
    lost = Observations(target=T, dns=(q("system:isp", [REAL], late=({"answers": [], "rcode": "NXDOMAIN"},)),),
                        control_dns=doh, tcp=(TcpConnect(ip=REAL, port=80, origin="probe"),),
                        http=(page(T.url, ip=REAL),))
    assert verdict(lost) == ("blocked", "dns", "dns/injection", "dns-injection")


def test_a_verified_https_page_is_not_spoiled_by_an_address_only_the_control_gave():
    obs = Observations(target=TS, dns=(q("system:isp", [OTHER]),), control_dns=(q("doh:c", [REAL], control=True),),
                       tcp=(TcpConnect(ip=OTHER, port=443, origin="probe"),
                            TcpConnect(ip=REAL, port=443, origin="control")),
                       tls=(TlsHandshake(ip=OTHER, port=443, sni="site.example"),
                            TlsHandshake(ip=REAL, port=443, sni="site.example", failure="generic_timeout_error")),
                       http=(page(TS.url),))
    assert verdict(obs) == ("ok", None, "ok", "https-verified")


def test_a_private_answer_at_the_helper_too_is_down_not_blocked():
    """Ours 127.0.0.1 (a router's rebind protection), the helper's 10.0.0.5: non-public for everyone."""
    obs = Observations(target=T, dns=(q("system:isp", ["127.0.0.1"]),), bogons=("127.0.0.1", "10.0.0.5"),
                       control=ControlResult(source="h", dns_addrs=("10.0.0.5",), http_failure="generic_timeout_error"))
    assert verdict(obs) == ("down", "dns", "dns/bogon", "dns-bogon-everywhere")


def test_an_old_unreachable_with_no_route_lookup_is_not_evidence():
    """Stored before the route lookup existed (no_local_route unknown): it may have been this machine's."""
    obs = Observations(target=T, dns=(q("system:isp", [OTHER]),), control_dns=(q("doh:c", [REAL], control=True),),
                       tcp=(TcpConnect(ip=OTHER, port=80, origin="probe", failure="network_unreachable"),
                            TcpConnect(ip=REAL, port=80, origin="control")))
    assert verdict(obs)[0] == "error"


def test_sni_filtering_on_every_address_is_tls_even_with_geo_dns():
    reset = "connection_reset"
    obs = Observations(target=TS, dns=(q("system:isp", [OTHER]),), control_dns=(q("doh:c", [REAL], control=True),),
                       tcp=(TcpConnect(ip=OTHER, port=443, origin="probe"),
                            TcpConnect(ip=REAL, port=443, origin="control")),
                       tls=(TlsHandshake(ip=OTHER, port=443, sni="site.example", failure=reset),
                            TlsHandshake(ip=OTHER, port=443, sni="example.com", decoy=True),
                            TlsHandshake(ip=REAL, port=443, sni="site.example", failure=reset)))
    assert verdict(obs) == ("blocked", "tls", "tls/connection_reset", "tls-sni")
