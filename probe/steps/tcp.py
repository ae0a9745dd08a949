"""TCP step: one socket to one address, so the failure we record is exactly this address's."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Literal

import trio

from ..failures import TIMEOUT, classify
from ..models import TcpConnect

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
