"""The lab's QUIC server: HTTP/3's handshake on UDP/443 of the https sites, with the lab's certificate.

The same library as the probe's QUIC step (aioquic's sans-I/O `QuicConnection`, server side), over trio UDP
sockets: one socket per address (a reply must come from the address the client dialled: a socket bound to
0.0.0.0 would answer from the router-facing one), one process for every site. It completes handshakes and
nothing more: the probe measures whether QUIC gets through, not the pages over HTTP/3 (those come over TCP).
Run by topology.py inside the internet namespace (`python -m probe.lab.quic_server CONFIG.json`); tests serve
on loopback with `serve`.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import trio
from aioquic.buffer import Buffer, BufferReadError
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted
from aioquic.quic.packet import PACKET_TYPE_INITIAL, pull_quic_header

ALPN = ["h3"]
IDLE = 10.0  # a connection nobody speaks on is forgotten after this long


def configuration(cert: str, key: str) -> QuicConfiguration:
    config = QuicConfiguration(is_client=False, alpn_protocols=ALPN, idle_timeout=IDLE)
    config.load_cert_chain(cert, key)
    return config


@dataclass
class _Endpoint:
    """One bound socket and the connections it carries, by client address."""

    sock: trio.socket.SocketType
    config: QuicConfiguration
    conns: dict[object, QuicConnection] = field(default_factory=dict)
    handshakes: int = 0

    def _connection(self, data: bytes, addr: object) -> QuicConnection | None:
        conn = self.conns.get(addr)
        if conn is not None:
            return conn
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
        except (BufferReadError, ValueError):
            return None
        if header.packet_type != PACKET_TYPE_INITIAL:  # (or a version we do not speak: aioquic says which)
            return None
        conn = QuicConnection(configuration=self.config,
                              original_destination_connection_id=header.destination_cid)
        self.conns[addr] = conn
        return conn

    async def flush(self) -> None:
        now = trio.current_time()
        for addr, conn in list(self.conns.items()):
            for data, to in conn.datagrams_to_send(now=now):
                with contextlib.suppress(OSError):  # the client is gone (ICMP): its connection times out
                    await self.sock.sendto(data, to)
            while (event := conn.next_event()) is not None:
                if isinstance(event, HandshakeCompleted):
                    self.handshakes += 1
                if isinstance(event, ConnectionTerminated):
                    self.conns.pop(addr, None)

    async def run(self) -> None:
        while True:
            timers = [t for c in self.conns.values() if (t := c.get_timer()) is not None]
            with trio.move_on_at(min(timers, default=math.inf)):
                data, addr = await self.sock.recvfrom(65536)
                conn = self._connection(data, addr)
                if conn is not None:
                    conn.receive_datagram(data, addr, now=trio.current_time())
            now = trio.current_time()
            for conn in list(self.conns.values()):
                timer = conn.get_timer()
                if timer is not None and timer <= now:
                    conn.handle_timer(now=now)
            await self.flush()


async def open_endpoint(ip: str, port: int, config: QuicConfiguration) -> _Endpoint:
    family = trio.socket.AF_INET6 if ":" in ip else trio.socket.AF_INET
    sock = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
    await sock.bind((ip, port))
    return _Endpoint(sock=sock, config=config)


async def serve(addresses: list[tuple[str, int]], cert: str, key: str, *,
                task_status: trio.TaskStatus[list[_Endpoint]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve QUIC handshakes on every (ip, port) until cancelled; started() gets the endpoints (bound)."""
    config = configuration(cert, key)
    endpoints = [await open_endpoint(ip, port, config) for ip, port in addresses]
    try:
        async with trio.open_nursery() as nursery:
            for e in endpoints:
                nursery.start_soon(e.run)
            task_status.started(endpoints)
    finally:
        for e in endpoints:
            e.sock.close()


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, [(ip, 443) for ip in config["ips"]], config["cert"], config["key"])
            Path(config["ready"]).touch()

    trio.run(run)


if __name__ == "__main__":
    main(sys.argv[1])
