"""TCP step: one socket to one address, so the failure we record is exactly this address's."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

import trio

from ...failures import TIMEOUT, classify
from ...models import TcpConnect

UNREACHABLE = {"network_unreachable", "host_unreachable", "network_down"}


def has_local_route(ip: str) -> bool:
    """Does this machine have a route to `ip`? Connecting a UDP socket looks the route up and sends nothing.

    An unreachable error with a route here came from the network (a router's ICMP, as some censors answer);
    without one it is a fact about this machine (an IPv6 address on an IPv4-only host).
    """
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((ip, 9))
    except OSError:
        return False
    return True


async def connect(
    ip: str,
    port: int,
    *,
    timeout: float,
    origin: Literal["probe", "control"],
    clock: Callable[[], float],
) -> tuple[TcpConnect, trio.SocketStream | None]:
    """Connect and return the observation and, on success, the open stream (the caller closes it)."""
    t0 = clock()
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        return TcpConnect(ip=ip, port=port, origin=origin, failure=classify(e), t0=t0, t=clock()), None
    try:
        with trio.move_on_after(timeout) as scope:
            await sock.connect((ip, port))
    except OSError as e:
        sock.close()
        failure = classify(e)
        # EADDRNOTAVAIL: no source address (or port) for it here, a fact about this machine whatever the route.
        local = failure in UNREACHABLE and (e.errno == errno.EADDRNOTAVAIL or not has_local_route(ip))
        return TcpConnect(ip=ip, port=port, origin=origin, failure=failure, no_local_route=local, t0=t0,
                          t=clock()), None
    if scope.cancelled_caught:
        sock.close()
        return TcpConnect(ip=ip, port=port, origin=origin, failure=TIMEOUT, t0=t0, t=clock()), None
    return TcpConnect(ip=ip, port=port, origin=origin, t0=t0, t=clock()), trio.SocketStream(sock)


async def connect_confirmed(
    ip: str,
    port: int,
    *,
    timeout: float,
    origin: Literal["probe", "control"],
    clock: Callable[[], float],
) -> tuple[list[TcpConnect], trio.SocketStream | None]:
    """Connect, and try once more on a fresh socket when the first try fails: a failure that happens once (a lost
    SYN on a congested line) is no evidence of blocking, one that reproduces may be. Every try that ended is
    returned, numbered, with the stream of the first that connected.

    The second try does not wait for the first to time out: it starts when the first fails, or half-way through
    the first's timeout, so confirming a dropped connection costs 1.5 timeouts, not 2. A try still pending when
    the other connected is cancelled and not recorded: it ended neither way, so it says nothing.
    """
    tries: list[TcpConnect] = []
    streams: list[trio.SocketStream] = []
    first_over = trio.Event()

    async def attempt(n: int, nursery: trio.Nursery) -> None:
        conn, stream = await connect(ip, port, timeout=timeout, origin=origin, clock=clock)
        tries.append(replace(conn, attempt=n))
        if n == 1:
            first_over.set()
        if stream is not None:
            streams.append(stream)
            nursery.cancel_scope.cancel()  # connected: the other try is not needed

    async with trio.open_nursery() as nursery:
        nursery.start_soon(attempt, 1, nursery)
        with trio.move_on_after(timeout / 2):
            await first_over.wait()
        if not streams and not (tries and tries[0].no_local_route):  # no route here: trying again says nothing
            nursery.start_soon(attempt, 2, nursery)
    for extra in streams[1:]:
        await trio.aclose_forcefully(extra)
    return sorted(tries, key=lambda c: c.attempt), (streams[0] if streams else None)
