"""DNS step: one query, one resolver, over UDP (TCP when the answer is truncated).

After the first valid reply we keep the socket open for a short window: an on-path injector races the real
resolver, so a censored name often gets two different replies. Both are recorded; the first one is what the
rest of the measurement uses (as a browser would).
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import trio

from ..failures import TIMEOUT, classify
from ..models import DnsQuery

QueryType = Literal["A", "AAAA"]

_RCODE_FAILURE = {
    dns.rcode.NXDOMAIN: "dns_nxdomain_error",
    dns.rcode.SERVFAIL: "dns_servfail_error",
    dns.rcode.REFUSED: "dns_refused_error",
}
MAX_REPLY = 65535


@dataclass(frozen=True, slots=True)
class Resolver:
    ip: str
    port: int = 53
    system: bool = False

    @property
    def label(self) -> str:
        kind = "system" if self.system else "udp"
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{kind}:{host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Resolver:
        """HOST, HOST:PORT, [V6]:PORT or a bare IPv6 address."""
        text = text.strip()
        if text.startswith("["):
            host, _, port = text[1:].partition("]")
            port = port.lstrip(":")
        elif text.count(":") == 1:
            host, port = text.split(":")
        else:
            host, port = text, ""
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        except OSError:
            raise ValueError(f"resolver must be an IP address, got {text!r}") from None
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"bad resolver port in {text!r}")
        return cls(host, int(port or 53))


def system_resolver(path: str | None = None) -> Resolver | None:
    """The first nameserver of resolv.conf: the resolver the volunteer's applications use.

    PROBE_RESOLV_CONF names another file (tests point it at loopback so the host's resolver is never asked).
    """
    path = path or os.environ.get("PROBE_RESOLV_CONF") or "/etc/resolv.conf"
    try:
        conf = dns.resolver.Resolver(filename=path, configure=True)
    except (OSError, dns.resolver.NoResolverConfiguration):
        return None
    for ns in conf.nameservers:
        try:
            return replace(Resolver.parse(str(ns)), system=True)
        except ValueError:
            continue
    return None


def parse_reply(reply: dns.message.Message, qtype: QueryType) -> dict:
    """Addresses, CNAME chain, minimum TTL and rcode of a reply; failure when there is no usable answer."""
    want = dns.rdatatype.from_text(qtype)
    answers: list[str] = []
    cnames: list[str] = []
    ttls: list[int] = []
    for rrset in reply.answer:
        if rrset.rdtype == want:
            answers.extend(r.to_text() for r in rrset)
            ttls.append(rrset.ttl)
        elif rrset.rdtype == dns.rdatatype.CNAME:
            cnames.extend(r.to_text().rstrip(".") for r in rrset)
    rcode = reply.rcode()
    failure = _RCODE_FAILURE.get(rcode)
    if failure is None and rcode != dns.rcode.NOERROR:
        failure = f"unknown_failure: dns rcode {dns.rcode.to_text(rcode)}"
    if failure is None and not answers:
        failure = "dns_no_answer"
    return {
        "answers": tuple(answers),
        "cnames": tuple(cnames),
        "ttl": min(ttls) if ttls else None,
        "rcode": dns.rcode.to_text(rcode),
        "failure": failure,
    }


def _matches(reply: dns.message.Message, query: dns.message.Message) -> bool:
    return reply.id == query.id and reply.question == query.question


async def query(
    resolver: Resolver,
    hostname: str,
    qtype: QueryType,
    *,
    timeout: float,
    late_window: float,
    clock: Callable[[], float],
    on_first: Callable[[DnsQuery], None] | None = None,
    slots: trio.CapacityLimiter | None = None,
) -> DnsQuery:
    """Ask `resolver`; call `on_first` with the first outcome; listen `late_window` more for duplicates.

    `slots` bounds the queries awaiting a first reply from one resolver: a burst of a thousand queries would
    overflow a home router's forwarder (or any UDP receive buffer) and turn into timeouts.
    """
    base = DnsQuery(resolver=resolver.label, engine="udp", hostname=hostname, query_type=qtype, t0=clock())
    msg = dns.message.make_query(hostname, qtype)
    msg.id = random.randrange(65536)
    wire = msg.to_wire()
    family = socket.AF_INET6 if ":" in resolver.ip else socket.AF_INET
    first: DnsQuery | None = None
    late: list[dict] = []
    try:
        sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    except OSError as e:
        first = replace(base, failure=classify(e), t=clock())
        if on_first:
            on_first(first)
        return first
    with sock:
        async with slots if slots is not None else contextlib.nullcontext():
            base = replace(base, t0=clock())  # the wait for a slot is ours, not the network's
            try:
                await sock.connect((resolver.ip, resolver.port))
                await sock.send(wire)
                first = await _first_reply(sock, msg, base, qtype, timeout, clock, wire)
            except OSError as e:
                first = replace(base, failure=classify(e), t=clock())
            if first.engine == "udp" and first.failure is None and first.rcode == "TRUNCATED":
                first = await _tcp_retry(resolver, msg, base, qtype, timeout, clock)
        if on_first:
            on_first(first)
        got_udp_reply = first.engine == "udp" and first.rcode is not None
        if got_udp_reply and late_window > 0:
            with trio.move_on_after(late_window):
                while True:
                    try:
                        data = await sock.recv(MAX_REPLY)
                    except OSError:
                        break
                    reply = _decode(data)
                    if reply is not None and _matches(reply, msg):
                        info = parse_reply(reply, qtype)
                        late.append({"answers": list(info["answers"]), "rcode": info["rcode"], "t": clock()})
    return replace(first, late_answers=tuple(late))


def _decode(data: bytes) -> dns.message.Message | None:
    try:
        return dns.message.from_wire(data)
    except (dns.exception.DNSException, ValueError):
        return None  # garbage on the socket is not a reply; keep waiting for a real one


async def _first_reply(sock, msg, base: DnsQuery, qtype: QueryType, timeout, clock, wire: bytes) -> DnsQuery:
    # One retransmission half-way: UDP loss on a home link is common and must not look like blocking.
    deadline = trio.current_time() + timeout
    resend_at = trio.current_time() + timeout / 2
    while True:
        wait_until = resend_at if resend_at else deadline
        with trio.move_on_at(wait_until):
            data = await sock.recv(MAX_REPLY)
            reply = _decode(data)
            if reply is None or not _matches(reply, msg):
                continue
            if reply.flags & dns.flags.TC:
                return replace(base, rcode="TRUNCATED", t=clock())
            return replace(base, **parse_reply(reply, qtype), t=clock())
        if resend_at:
            resend_at = 0.0
            await sock.send(wire)
            base = replace(base, retransmits=base.retransmits + 1)  # its answer may still come, late
            continue
        return replace(base, failure=TIMEOUT, t=clock())


async def _tcp_retry(resolver: Resolver, msg, base: DnsQuery, qtype: QueryType, timeout, clock) -> DnsQuery:
    base = replace(base, engine="tcp")
    try:
        with trio.fail_after(timeout):
            reply = await dns.asyncquery.tcp(msg, resolver.ip, port=resolver.port, timeout=timeout)
    except (trio.TooSlowError, dns.exception.Timeout):
        return replace(base, failure=TIMEOUT, t=clock())
    except (OSError, dns.exception.DNSException) as e:
        return replace(base, failure=classify(e), t=clock())
    return replace(base, **parse_reply(reply, qtype), t=clock())
