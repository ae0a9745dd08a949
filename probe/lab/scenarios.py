"""The lab's scenarios: what the censoring ISP does to each site, and the verdict we must get.

One row per scenario. `censor` says which mechanism topology.py sets up for it (dnsmasq lies, iptables rules in
the ISP router, the nginx transparent proxy, a packet injector); `expect` is the exact status the verdict must
have and `layer` the layer it must name; `control` whether the probe runs with the helper or with DoH alone.
Site addresses come from 198.18.0.0/15, inside the lab only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Expect = Literal["blocked", "anomaly", "ok", "down"]
Censor = Literal["none", "dns-nxdomain", "dns-blockpage", "dns-bogon", "dns-intercept", "dns-unknown-server",
                 "tcp-drop", "tcp-unreachable", "tcp-rst", "sni-rst", "sni-drop", "host-rst", "proxy-200",
                 "proxy-302", "proxy-notice", "inject-302", "dns-inject", "down", "partial-drop"]
# How the probe runs: with the lab's helper and DoH ("full"), or with DoH alone, as most volunteers will.
Control = Literal["full", "doh"]
DOMAIN = "lab.test"
ISP_BLOCKPAGE_IP = "198.18.3.83"  # the ISP's blockpage server (like Nayatel's 203.82.48.83)
ISP_NOTICE_IP = "198.18.3.84"  # another ISP server, with a notice no signature knows
MOBILINK_NOTICE = "119.73.65.87"  # a known censor's notice server, bound inside the (routeless) ISP namespace
BOGON = "10.10.34.35"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    scheme: Literal["http", "https"]
    ips: tuple[str, ...]
    censor: Censor
    expect: Expect  # the exact status: a regression from blocked to anomaly shows
    layer: str | None
    dynamic: bool = False
    fingerprint: str | None = None  # the signature the verdict must name, when there is one
    control: Control = "full"
    redirect: str | None = None  # the site answers 302 to this scenario's URL (a chain failing at hop two)
    inject_to: str | None = None  # for inject-302: where the forged redirect points; for dns-inject: the address

    @property
    def host(self) -> str:
        return f"{self.name}.{DOMAIN}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}/"


def _ip(n: int) -> str:
    return f"198.18.10.{n}"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("dns-nxdomain", "http", (_ip(1),), "dns-nxdomain", "blocked", "dns"),
    Scenario("dns-blockpage", "http", (_ip(2),), "dns-blockpage", "blocked", "dns",
             fingerprint="lab.isp-blockpage-dns"),
    Scenario("dns-bogon", "http", (_ip(3),), "dns-bogon", "blocked", "dns"),
    Scenario("intercept", "http", (_ip(4),), "dns-intercept", "blocked", "dns"),
    Scenario("tcp-drop", "http", (_ip(5),), "tcp-drop", "blocked", "tcp"),
    Scenario("tcp-rst", "https", (_ip(6),), "tcp-rst", "blocked", "tcp"),
    # The router answers with an ICMP host-unreachable: the network's doing, not a missing route here.
    Scenario("tcp-unreach", "http", (_ip(25),), "tcp-unreachable", "blocked", "tcp"),
    Scenario("snirst", "https", (_ip(7),), "sni-rst", "blocked", "tls"),
    Scenario("snidrop", "https", (_ip(8),), "sni-drop", "blocked", "tls"),
    Scenario("hostrst", "http", (_ip(9),), "host-rst", "blocked", "http"),
    Scenario("proxy-blockpage", "http", (_ip(10),), "proxy-200", "blocked", "http",
             fingerprint="probe.pk.surf-safely"),
    Scenario("proxy-redirect", "http", (_ip(11),), "proxy-302", "blocked", "http",
             fingerprint="probe.pk.surf-safely"),
    Scenario("down", "http", (_ip(12),), "down", "down", "tcp"),
    Scenario("dynamic", "http", (_ip(13),), "none", "ok", None, dynamic=True),
    Scenario("multi", "http", (_ip(14), _ip(15)), "partial-drop", "blocked", "tcp"),
    # The ISP's resolver sends the name to its own server, which shows a notice no signature knows; the public
    # resolver the probe also asks and the control give the real address.
    Scenario("dns-unknown", "http", (_ip(16),), "dns-unknown-server", "blocked", "dns"),
    Scenario("dns-unknown-doh", "http", (_ip(17),), "dns-unknown-server", "blocked", "dns", control="doh"),
    # On-path injection (a raw socket in the ISP router; iptables drops the real request): a 302 to a notice on
    # another host, as long as the real page. Mobilink's notice URL is a known signature; the other is not.
    Scenario("inject-mobilink", "http", (_ip(18),), "inject-302", "blocked", "http",
             fingerprint="probe.pk.mobilink-redirect-location",
             inject_to=f"http://{MOBILINK_NOTICE}:8080/redirect.html?accessurl=inject-mobilink.{DOMAIN}/"),
    Scenario("inject-unknown", "http", (_ip(19),), "inject-302", "anomaly", "http",
             inject_to=f"http://{ISP_NOTICE_IP}/notice.html"),
    # On-path DNS injection: a forged A answer to the query sent to the public resolver races the real one
    # (the late-reply listener hears both; the control says which is forged).
    Scenario("dns-inject", "http", (_ip(26),), "dns-inject", "blocked", "dns", inject_to=ISP_NOTICE_IP),
    # A transparent proxy with a notice no signature knows, and only DoH as control: the host's https:// page
    # (verified TLS) is the reference.
    Scenario("proxy-notice", "http", (_ip(20),), "proxy-notice", "anomaly", "http", control="doh"),
    # Redirect chains that fail at the second hop, at each layer.
    Scenario("redir-dns", "http", (_ip(21),), "none", "blocked", "dns", redirect="dns-nxdomain"),
    Scenario("redir-tcp", "http", (_ip(22),), "none", "blocked", "tcp", redirect="tcp-drop"),
    Scenario("redir-tls", "http", (_ip(23),), "none", "blocked", "tls", redirect="snirst"),
    Scenario("redir-http", "http", (_ip(24),), "none", "blocked", "http", redirect="hostrst"),
    # A name that points to loopback for everyone: misconfigured or internal, not censored.
    Scenario("loopback", "http", ("127.0.0.1",), "none", "down", "dns"),
    *(Scenario(f"clean{i}", "http", (f"198.18.11.{i}",), "none", "ok", None) for i in range(1, 13)),
    *(Scenario(f"secure{i}", "https", (f"198.18.12.{i}",), "none", "ok", None) for i in range(1, 13)),
    Scenario("clean-doh", "http", ("198.18.11.13",), "none", "ok", None, control="doh"),
    Scenario("secure-doh", "https", ("198.18.12.13",), "none", "ok", None, control="doh"),
)


def url_of(name: str) -> str:
    return next(s.url for s in SCENARIOS if s.name == name)


def by_name(names: list[str] | tuple[str, ...]) -> tuple[Scenario, ...]:
    known = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return tuple(known[n] for n in names)
