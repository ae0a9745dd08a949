"""The lab's scenarios: what the censoring ISP does to each site, and the verdict we must get.

One row per scenario. `censor` says which mechanism topology.py sets up for it (dnsmasq lies, iptables rules in
the ISP router, the nginx transparent proxy); `expect` is the verdict class (interference = blocked or anomaly)
and `layer` the layer the verdict must name. Site addresses come from 198.18.0.0/15, inside the lab only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Expect = Literal["interference", "ok", "down"]
Censor = Literal["none", "dns-nxdomain", "dns-blockpage", "dns-bogon", "dns-intercept", "tcp-drop", "tcp-rst",
                 "sni-rst", "sni-drop", "host-rst", "proxy-200", "proxy-302", "down", "partial-drop"]
DOMAIN = "lab.test"
ISP_BLOCKPAGE_IP = "198.18.3.83"  # the ISP's blockpage server (like Nayatel's 203.82.48.83)
BOGON = "10.10.34.35"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    scheme: Literal["http", "https"]
    ips: tuple[str, ...]
    censor: Censor
    expect: Expect
    layer: str | None
    dynamic: bool = False
    fingerprint: str | None = None  # the signature the verdict must name, when there is one

    @property
    def host(self) -> str:
        return f"{self.name}.{DOMAIN}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}/"


def _ip(n: int) -> str:
    return f"198.18.10.{n}"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("dns-nxdomain", "http", (_ip(1),), "dns-nxdomain", "interference", "dns"),
    Scenario("dns-blockpage", "http", (_ip(2),), "dns-blockpage", "interference", "dns",
             fingerprint="lab.isp-blockpage-dns"),
    Scenario("dns-bogon", "http", (_ip(3),), "dns-bogon", "interference", "dns"),
    Scenario("intercept", "http", (_ip(4),), "dns-intercept", "interference", "dns"),
    Scenario("tcp-drop", "http", (_ip(5),), "tcp-drop", "interference", "tcp"),
    Scenario("tcp-rst", "https", (_ip(6),), "tcp-rst", "interference", "tcp"),
    Scenario("snirst", "https", (_ip(7),), "sni-rst", "interference", "tls"),
    Scenario("snidrop", "https", (_ip(8),), "sni-drop", "interference", "tls"),
    Scenario("hostrst", "http", (_ip(9),), "host-rst", "interference", "http"),
    Scenario("proxy-blockpage", "http", (_ip(10),), "proxy-200", "interference", "http",
             fingerprint="probe.pk.surf-safely"),
    Scenario("proxy-redirect", "http", (_ip(11),), "proxy-302", "interference", "http",
             fingerprint="probe.pk.surf-safely"),
    Scenario("down", "http", (_ip(12),), "down", "down", "tcp"),
    Scenario("dynamic", "http", (_ip(13),), "none", "ok", None, dynamic=True),
    Scenario("multi", "http", (_ip(14), _ip(15)), "partial-drop", "interference", "tcp"),
    *(Scenario(f"clean{i}", "http", (f"198.18.11.{i}",), "none", "ok", None) for i in range(1, 13)),
    *(Scenario(f"secure{i}", "https", (f"198.18.12.{i}",), "none", "ok", None) for i in range(1, 13)),
)


def by_name(names: list[str] | tuple[str, ...]) -> tuple[Scenario, ...]:
    known = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return tuple(known[n] for n in names)
