"""Locate step: where on the path a TLS handshake is interfered with, by TTL-limited ClientHellos.

As OONI's `tlsmiddlebox` does: for each TTL n in 1..N, a fresh TCP connection (made with the normal TTL), then
the socket's IP TTL (IPv6: hop limit) set to n and the ClientHello sent. A ClientHello that expires before the
censor gets no answer from it (a router's ICMP time exceeded instead); from the censor's hop on, the interference
(a reset, or nothing at all) comes back; past the server, its reply. All TTLs run at once, so locating costs one
wait, not N.

Unprivileged, what each TTL tells:
- The TCP socket has IP_RECVERR on: Linux then turns an ICMP error for an established connection into a hard
  error (EHOSTUNREACH, recorded as `host_unreachable`), so an expired ClientHello is told apart from a dropped one
  without root. It does not say *who* sent the ICMP: Linux queues no TCP errors on the socket's error queue.
- So a UDP datagram with the same TTL to the same address, and IP_RECVERR, as tracepath does: the router's
  time exceeded lands on that socket's error queue with the router's address (the offender in sock_extended_err).
  The UDP datagram may take another path than the TCP segments where load balancers hash on ports, and a router
  that answers UDP need not answer for TCP; a raw socket (root) would see the ICMP quoting our own TCP segment,
  and the TTL of the reset that came back (how far away its sender is): both are lost here.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ...failures import TIMEOUT, classify
from ...models import TlsHandshake, TtlProbe
from .tls import INTERFERENCE_FAILURES

ADDRESSES = 2  # per URL: the first addresses whose handshakes failed so (a name with many fails alike)
MAX_TTL = 16  # a home network's path to a national gateway is well inside this
WAIT = 4.0  # seconds each TTL waits for an answer, at most (and never longer than the step's timeout)
GRACE = 0.5  # seconds the datagram's ICMP may come after the TCP's own ICMP (at least)
EXPIRED = "host_unreachable"  # what the TCP socket says when a router's ICMP came for the ClientHello
TRACE_PORT = 33434  # traceroute's: the UDP datagrams go to TRACE_PORT + ttl
# Linux's constants (socket does not export all of them): IP_RECVERR, IPV6_RECVERR, sock_extended_err origins.
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 2, 3
ICMP_TIME_EXCEEDED, ICMP6_TIME_EXCEEDED = 11, 3


@dataclass(frozen=True, slots=True)
class IcmpAnswer:
    router: str | None  # the ICMP's sender (the offender), None when nothing came
    icmp: str | None  # "time_exceeded" or "unreachable" (the address itself answered: no router in between)


def client_hello(context: ssl.SSLContext, sni: str) -> bytes:
    """The first flight of a handshake with `sni`, as bytes: what the TLS step sends first."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def _ttl_options(family: int) -> tuple[int, int, int, int]:
    """(level, TTL option, level, RECVERR option) for an address family."""
    if family == socket.AF_INET6:
        return socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, socket.IPPROTO_IPV6, IPV6_RECVERR
    return socket.IPPROTO_IP, socket.IP_TTL, socket.IPPROTO_IP, IP_RECVERR


def router_label(address: str | None) -> str | None:
    """A router's address as we keep it: a public one as its /24 (IPv6: /48), as OONI publishes them.

    The first public routers of a home line (the ISP's access router) sit in the volunteer's own /24: their full
    address would all but name the probe's, which is never stored. Private and reserved ones (a home router, the
    lab's) say nothing of the volunteer and are kept whole.
    """
    if address is None:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if not ip.is_global:
        return address
    return str(ipaddress.ip_network(f"{address}/{24 if ip.version == 4 else 48}", strict=False))


def parse_error_queue(ancillary: list[tuple[int, int, bytes]]) -> IcmpAnswer:
    """The ICMP error a UDP socket's error queue holds (its cmsg data: sock_extended_err, then the offender)."""
    for level, kind, data in ancillary:
        if (level, kind) not in ((socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)):
            continue
        if len(data) < 16:
            continue
        _errno, origin, icmp_type, _code = struct.unpack_from("=IBBB", data)
        if origin not in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
            continue  # a local error (the datagram never left)
        offender = data[16:]
        router = None
        if len(offender) >= 8 and struct.unpack_from("=H", offender)[0] == socket.AF_INET:
            router = socket.inet_ntop(socket.AF_INET, offender[4:8])
        elif len(offender) >= 24 and struct.unpack_from("=H", offender)[0] == socket.AF_INET6:
            router = socket.inet_ntop(socket.AF_INET6, offender[8:24])
        expired = icmp_type == (ICMP_TIME_EXCEEDED if origin == SO_EE_ORIGIN_ICMP else ICMP6_TIME_EXCEEDED)
        return IcmpAnswer(router=router_label(router), icmp="time_exceeded" if expired else "unreachable")
    return IcmpAnswer(router=None, icmp=None)


async def router_at(ip: str, ttl: int, *, wait: float) -> IcmpAnswer:
    """Who answers a UDP datagram to `ip` that expires after `ttl` hops (nothing: IcmpAnswer(None, None))."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    level, ttl_opt, err_level, err_opt = _ttl_options(family)
    try:
        sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    except OSError:
        return IcmpAnswer(None, None)
    with sock, trio.move_on_after(wait):
        try:
            sock.setsockopt(err_level, err_opt, 1)
            sock.setsockopt(level, ttl_opt, ttl)
            await sock.connect((ip, TRACE_PORT + ttl))
            await sock.send(b"probe locate\n")
            while True:
                # The error queue makes the socket readable (EPOLLERR); trio retries when it is empty.
                _, ancillary, _, _ = await sock.recvmsg(512, 1024, MSG_ERRQUEUE)
                answer = parse_error_queue(ancillary)
                if answer.icmp is not None:
                    return answer
        except OSError:
            pass
    return IcmpAnswer(None, None)


async def _hello(ip: str, port: int, ttl: int, hello: bytes, *, wait: float) -> tuple[str | None, int, str]:
    """(failure, bytes read, step) of one ClientHello limited to `ttl` hops, on a connection of its own."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    level, ttl_opt, err_level, err_opt = _ttl_options(family)
    step = "tcp"
    try:
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        return classify(e), 0, step
    with sock:
        try:
            with trio.move_on_after(wait) as scope:
                await sock.connect((ip, port))  # the normal TTL: the connection itself must get through
                step = "tls"
                sock.setsockopt(err_level, err_opt, 1)  # an ICMP error for this connection becomes a hard error
                sock.setsockopt(level, ttl_opt, ttl)
                await sock.send(hello)
                data = await sock.recv(4096)
                return (None if data else "eof_error"), len(data), step
        except OSError as e:
            return classify(e), 0, step
        assert scope.cancelled_caught
        return TIMEOUT, 0, step


async def locate(
    ip: str,
    port: int,
    *,
    sni: str,
    context: ssl.SSLContext,
    timeout: float,
    clock: Callable[[], float],
    max_ttl: int = MAX_TTL,
) -> list[TtlProbe]:
    """One TtlProbe per TTL 1..max_ttl, all at once; the whole step lasts at most min(timeout, WAIT) seconds."""
    wait = min(timeout, WAIT)
    found: list[TtlProbe] = []

    async def one(ttl: int) -> None:
        t0 = clock()
        hop: list[IcmpAnswer] = []
        heard = trio.Event()

        async def udp() -> None:
            hop.append(await router_at(ip, ttl, wait=wait))
            heard.set()

        async with trio.open_nursery() as n:
            n.start_soon(udp)
            started = trio.current_time()
            failure, read, step = await _hello(ip, port, ttl, client_hello(context, sni), wait=wait)
            # The datagram's ICMP comes about when the TCP answer did: waiting the whole `wait` for one that never
            # comes (the address itself rate-limits its port unreachables) would make every reset slow. Only the
            # router of a TTL that expired is read (it names where the interference is not yet); past it, the
            # datagram gets whatever already came.
            elapsed = trio.current_time() - started
            grace = max(GRACE, 2 * elapsed) if failure in (EXPIRED, TIMEOUT) else 2 * elapsed
            with trio.move_on_after(grace):
                await heard.wait()
            n.cancel_scope.cancel()
        answer = hop[0] if hop else IcmpAnswer(None, None)
        found.append(TtlProbe(ip=ip, port=port, sni=sni, ttl=ttl, failure=failure, failed_step=step if failure
                              else None, reply_bytes=read, router=answer.router, icmp=answer.icmp, t0=t0, t=clock()))

    async with trio.open_nursery() as nursery:
        for ttl in range(1, max_ttl + 1):
            nursery.start_soon(one, ttl)
    return sorted(found, key=lambda p: p.ttl)


def worth_locating(handshakes: list[TlsHandshake]) -> bool:
    """Both handshakes with the real name failed as an SNI filter makes them fail (a reset, EOF or timeout): a
    failure that reproduced. A certificate failure, a refused connection or one try alone says nothing of where."""
    real = [h for h in handshakes if not h.decoy]
    return len(real) >= 2 and all(h.failure in INTERFERENCE_FAILURES for h in real)
