"""DNS step: one query, one resolver, over UDP (TCP when the answer is truncated).

After the first valid reply the query keeps listening for a short window: an on-path injector races the real
resolver, so a censored name often gets two different replies. Both are recorded; the first one is what the
rest of the measurement uses (as a browser would). The listening happens on the run's sockets to the resolver
(dns_socket.py), so the URL does not wait for the window to pass.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import trio

from ...failures import TIMEOUT, classify
from ...models import DnsQuery
from .dns_socket import DnsSockets, Exchange, ResolverSocket
from .dns_wire import fields, parse_reply, question

QueryType = Literal["A", "AAAA"]



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


@dataclass(frozen=True, slots=True, eq=False)
class LateReplies:
    """A query still listening for late replies on its resolver's socket, until `until` (trio time)."""

    socket: ResolverSocket
    exchange: Exchange
    qtype: QueryType

    @property
    def until(self) -> float:
        return self.exchange.listen_until

    def settle(self, first: DnsQuery) -> DnsQuery:
        """`first` with the replies heard within the window; stops listening."""
        self.release()
        return replace(first, late_answers=late_replies(self.exchange))

    def release(self) -> None:
        self.socket.release(self.exchange)


def late_replies(exchange: Exchange) -> tuple[dict[str, Any], ...]:
    """The replies an exchange heard besides its answer, as stored (`rejected` says why one was no answer)."""
    return tuple({"answers": list(info["answers"]), "rcode": info["rcode"], "t": t,
                  **({"rejected": info["rejected"]} if "rejected" in info else {})} for info, t in exchange.late)


async def query(
    resolver: Resolver,
    hostname: str,
    qtype: QueryType,
    *,
    sockets: DnsSockets,
    timeout: float,
    late_window: float,
    clock: Callable[[], float],
    slots: trio.CapacityLimiter | None = None,
) -> tuple[DnsQuery, LateReplies | None]:
    """Ask `resolver`; return the first outcome, and what keeps listening `late_window` more for duplicates.

    The query goes out of the run's socket to this resolver (see dns_socket.py); the caller settles the late
    replies once the window has passed (`LateReplies.settle`) without waiting for it. `slots` bounds the
    queries awaiting a first reply from one resolver: a burst of a thousand queries would overflow a home
    router's forwarder (or any UDP receive buffer) and turn into timeouts.
    """
    base = DnsQuery(resolver=resolver.label, engine="udp", hostname=hostname, query_type=qtype, t0=clock())
    try:
        wanted = question(hostname, qtype)
    except ValueError as e:
        return replace(base, failure=f"unknown_failure: {e}", t=clock()), None
    async with slots if slots is not None else contextlib.nullcontext():
        base = replace(base, t0=clock())  # the wait for a slot is ours, not the network's
        try:
            rs = await sockets.get(resolver.ip, resolver.port)
        except OSError as e:
            return replace(base, failure=classify(e), t=clock()), None
        exchange = rs.register(wanted, qtype, clock)
        try:
            first = await _first_reply(rs, exchange, base, timeout, clock)
        except OSError as e:
            first = replace(base, failure=classify(e), t=clock())
        except BaseException:
            rs.release(exchange)
            raise
    if first.rcode is not None and first.rcode != "TRUNCATED" and late_window > 0:
        exchange.listen_until = exchange.answered_at + late_window
        return first, LateReplies(rs, exchange, qtype)
    rs.release(exchange)
    if exchange.late:  # replies rejected before the answer (or instead of one)
        first = replace(first, late_answers=late_replies(exchange))
    if first.failure is None and first.rcode == "TRUNCATED":
        first = await _tcp_retry(resolver, dns.message.make_query(hostname, qtype), base, qtype, timeout, clock)
    return first, None


# Copies of a query sent in all: UDP loss on a home link is common and must not look like blocking. On a line
# that loses 10% each way, one copy in five goes unanswered; four copies leave one query in 700 without a reply.
SENDS = 4


async def _first_reply(rs: ResolverSocket, exchange: Exchange, base: DnsQuery, timeout, clock) -> DnsQuery:
    # The copies go out evenly over the timeout (0, 1/4, 1/2, 3/4 of it), each only while no reply has come.
    wire = rs.wire(exchange)
    sent = trio.current_time()
    deadline = sent + timeout
    resends = [sent + timeout * k / SENDS for k in range(1, SENDS)]
    await rs.send(wire)
    while True:
        with trio.move_on_at(resends[0] if resends else deadline):
            await exchange.answered.wait()
        if exchange.answered.is_set() or rs.broken is not None:
            break
        if resends:
            resends.pop(0)
            await rs.send(wire)
            base = replace(base, retransmits=base.retransmits + 1)  # its answer may still come, late
            continue
        if rs.icmp is not None and rs.icmp[0] >= sent:
            return replace(base, failure=classify(rs.icmp[1]), t=clock())  # e.g. the resolver unreachable
        return replace(base, failure=TIMEOUT, t=clock())
    if exchange.error is None and exchange.first is None and rs.broken is not None:
        exchange.error = rs.broken  # the socket broke before this query was registered on it
    if exchange.error is not None:
        return replace(base, failure=classify(exchange.error), t=clock())
    assert exchange.first is not None
    info, truncated = exchange.first
    if truncated:
        return replace(base, rcode="TRUNCATED", t=clock())
    return replace(base, **fields(info), t=clock())


async def _tcp_retry(resolver: Resolver, msg, base: DnsQuery, qtype: QueryType, timeout, clock) -> DnsQuery:
    import dns.asyncquery  # rarely needed: loaded when a reply is truncated

    base = replace(base, engine="tcp")
    try:
        with trio.fail_after(timeout):
            reply = await dns.asyncquery.tcp(msg, resolver.ip, port=resolver.port, timeout=timeout)
    except (trio.TooSlowError, dns.exception.Timeout):
        return replace(base, failure=TIMEOUT, t=clock())
    except (OSError, dns.exception.DNSException) as e:
        return replace(base, failure=classify(e), t=clock())
    return replace(base, **fields(parse_reply(reply, qtype)), t=clock())
