"""Which network is this? ASN, network name and country of the vantage, never its IP address.

The public IP comes from a what-is-my-IP service (plain text or {"ip": ...}; our helper answers at /ip), and is
turned into an ASN with DNS TXT queries in Team Cymru's style (`<reversed ip>.origin.asn.cymru.com`, then
`AS<n>.asn.cymru.com`). The IP lives in one local variable and is dropped: it is never stored, logged or
returned. Every service is overridable.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.message
import dns.rdatatype
import httpx
import trio

from .steps.dns import Resolver

DEFAULT_IP_SERVICE = "https://api.ipify.org"
ORIGIN_ZONE, ORIGIN6_ZONE, ASN_ZONE = "origin.asn.cymru.com", "origin6.asn.cymru.com", "asn.cymru.com"


@dataclass(frozen=True, slots=True)
class Vantage:
    asn: int | None = None
    network: str | None = None
    country: str | None = None
    failure: str | None = None


def _reverse_name(ip: str, v4_zone: str, v6_zone: str) -> str:
    addr = ipaddress.ip_address(ip)
    if addr.version == 4:
        return ".".join(reversed(ip.split("."))) + "." + v4_zone
    nibbles = addr.exploded.replace(":", "")
    return ".".join(reversed(nibbles)) + "." + v6_zone


async def _txt(resolver: Resolver, name: str, timeout: float) -> list[str]:
    query = dns.message.make_query(name, dns.rdatatype.TXT)
    with trio.fail_after(timeout):
        reply = await dns.asyncquery.udp(query, resolver.ip, port=resolver.port, timeout=timeout)
    return ["".join(part.decode("utf-8", "replace") for part in r.strings) for rr in reply.answer
            if rr.rdtype == dns.rdatatype.TXT for r in rr]


def _fields(text: str) -> list[str]:
    return [f.strip() for f in text.split("|")]


async def lookup(client: httpx.AsyncClient, ip_service: str, resolver: Resolver, *, timeout: float = 5.0,
                 origin_zone: str = ORIGIN_ZONE, origin6_zone: str = ORIGIN6_ZONE,
                 asn_zone: str = ASN_ZONE) -> Vantage:
    try:
        with trio.fail_after(timeout):
            resp = await client.get(ip_service)
        body = resp.text.strip()
        ip = str(json.loads(body)["ip"]) if body.startswith("{") else body
        ipaddress.ip_address(ip)
    except (httpx.HTTPError, trio.TooSlowError, ValueError, KeyError, TypeError) as e:
        return Vantage(failure=f"public address unknown: {type(e).__name__}")
    try:
        origin = await _txt(resolver, _reverse_name(ip, origin_zone, origin6_zone), timeout)
        del ip  # from here on only the ASN is kept
        if not origin:
            return Vantage(failure="no ASN for this address")
        asn_text, _, country, *_ = [*_fields(origin[0]), "", "", ""]
        asn = int(asn_text.split()[0])
        names = await _txt(resolver, f"AS{asn}.{asn_zone}", timeout)
        network = _fields(names[0])[-1] if names else None
    except (dns.exception.DNSException, OSError, trio.TooSlowError, ValueError, IndexError) as e:
        return Vantage(failure=f"ASN lookup failed: {type(e).__name__}")
    return Vantage(asn=asn, network=network, country=country.upper() or None)
