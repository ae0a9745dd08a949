"""Which addresses count as public: the probe never connects to the others.

A DNS answer of 127.0.0.1, 10.x or fe80:: for a public name is a censor's trick (or a misconfiguration); it is
recorded as a bogon and never dialled, so that a measured name cannot make the probe reach into the volunteer's
own network. Labs and tests open ranges with `--allow-net CIDR`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    nets = []
    for c in cidrs:
        try:
            nets.append(ipaddress.ip_network(c.strip(), strict=False))
        except ValueError as e:
            raise ValueError(f"not a network: {c!r} ({e})") from None
    return tuple(nets)


def _unwrap(addr: IPAddress) -> IPAddress:
    """IPv4-mapped and 6to4/compat forms hide an IPv4 address: judge the IPv4 one."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr.sixtofour is not None:
            return addr.sixtofour
        packed = addr.packed
        if packed[:12] == b"\x00" * 12 and packed[12:] not in (b"\x00\x00\x00\x00", b"\x00\x00\x00\x01"):
            return ipaddress.IPv4Address(packed[12:])  # IPv4-compatible (deprecated) form
    return addr


@dataclass(frozen=True, slots=True)
class NetPolicy:
    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> NetPolicy:
        return cls(parse_networks(cidrs))

    def is_public(self, ip: str) -> bool:
        try:
            raw = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        addr = _unwrap(raw)
        for a in (raw, addr):
            if any(a.version == n.version and a in n for n in self.allowed):
                return True
        return not (
            addr.is_private
            or addr.is_loopback
            or addr.is_link_local
            or addr.is_multicast
            or addr.is_reserved
            or addr.is_unspecified
            or (isinstance(addr, ipaddress.IPv4Address) and addr in _SHARED_CGNAT)
        )


# 100.64.0.0/10 (carrier-grade NAT) is not "private" to Python but is not public either.
_SHARED_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def is_ip_literal(host: str) -> bool:
    """Is the URL's host an IP address rather than a name (nothing to resolve)?"""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
