"""The lab's second router: a gateway one hop further than the ISP, on the path to some sites only.

    <p>-client ── <p>-isp 198.18.5.1 ──veth── 198.18.5.2 <p>-gw 198.18.6.1 ──veth── 198.18.6.2 <p>-net
                  (hop 1)                     (hop 2: the gateway's censor)           (sites 198.18.16.x)

Only the gateway's sites (scenarios.GATEWAY_NET) go this way, both ways (the lab's internet sends their replies
back through the gateway by a source rule), so every other scenario keeps its path and its verdict. Routers
answer expired packets with ICMP time exceeded, unthrottled: the locate step (steps/locate.py) asks each hop at
once, and Linux's default rate limit (one a second per peer after a short burst) would hide some of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .scenarios import GATEWAY_NET, Scenario

if TYPE_CHECKING:
    from .topology import Lab

ISP_GW_IP, GW_ISP_IP, GW_NET_IP, NET_GW_IP = "198.18.5.1", "198.18.5.2", "198.18.6.1", "198.18.6.2"
ROUTE_TABLE = "16"  # the lab internet's table for replies from the gateway's sites


def unthrottled_icmp(lab: Lab, ns: str) -> None:
    """A router that answers every expired packet (sysctls of this namespace only)."""
    for key in ("net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0", "net.ipv4.icmp_msgs_per_sec=100000"):
        lab.ns(ns, "sysctl", "-qw", key, check=False)  # the last is not per namespace on older kernels


def build(lab: Lab) -> None:
    """The gateway namespace, its two links and the routes through it (after the other namespaces exist)."""
    from .topology import _run

    p, gw = lab.prefix, lab.gateway
    _run("ip", "netns", "add", gw)
    lab.ns(gw, "ip", "link", "set", "lo", "up")
    for a, a_ns, a_ip, b, b_ns, b_ip in ((f"{p}-i2", lab.isp, ISP_GW_IP, f"{p}-g0", gw, GW_ISP_IP),
                                         (f"{p}-g1", gw, GW_NET_IP, f"{p}-n1", lab.net, NET_GW_IP)):
        _run("ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns)
        for ns, dev, addr in ((a_ns, a, a_ip), (b_ns, b, b_ip)):
            lab.ns(ns, "ip", "addr", "add", f"{addr}/24", "dev", dev)
            lab.ns(ns, "ip", "link", "set", dev, "up")
    lab.ns(lab.isp, "ip", "route", "add", f"{GATEWAY_NET}.0/24", "via", GW_ISP_IP)
    lab.ns(gw, "ip", "route", "add", f"{GATEWAY_NET}.0/24", "via", NET_GW_IP)
    lab.ns(gw, "ip", "route", "add", "default", "via", ISP_GW_IP)
    lab.ns(gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    lab.ns(lab.net, "ip", "rule", "add", "from", f"{GATEWAY_NET}.0/24", "lookup", ROUTE_TABLE)
    lab.ns(lab.net, "ip", "route", "add", "default", "via", GW_NET_IP, "table", ROUTE_TABLE)
    for ns in (lab.isp, gw):
        unthrottled_icmp(lab, ns)


def censor(lab: Lab, scenarios: tuple[Scenario, ...]) -> None:
    """The gateway's interference: ClientHellos naming a site reset or dropped (as the ISP's sni-rst/sni-drop)."""
    fwd = ["iptables", "-A", "FORWARD", "-i", f"{lab.prefix}-g0", "-p", "tcp", "--dport", "443"]
    for s in scenarios:
        if s.censor in ("gw-sni-rst", "gw-sni-drop"):
            action = ["REJECT", "--reject-with", "tcp-reset"] if s.censor == "gw-sni-rst" else ["DROP"]
            lab.ns(lab.gateway, *fwd, "-m", "string", "--algo", "kmp", "--string", s.host, "-j", *action)
