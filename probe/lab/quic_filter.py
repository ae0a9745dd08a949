"""The lab censor's QUIC SNI filter: drops the QUIC Initials that carry a censored name, as a DPI box does.

A QUIC Initial is encrypted, but with keys derived from its own Destination Connection ID (RFC 9001, 5.2):
anyone on the path can decrypt it, and the censor's box does, to read the TLS ClientHello (and its SNI) in the
CRYPTO frames. An iptables string match cannot, so this runs in user space: `initial_names` decrypts with
aioquic's own crypto and looks for the names in the CRYPTO data.

How it sits on the path (an honest emulation of an in-path filter, said here because it is not one): the ISP
router redirects the filtered site's UDP/443 to a relay port of its own (iptables REDIRECT), one port per site;
the relay forwards each client's datagrams to the site from a socket of its own, and the site's replies back
through the socket the client wrote to, so conntrack gives them the site's address as their source. The
client sees the site's address both ways; the site sees the router's address instead of the client's (it
does not care). A datagram whose Initial names a censored host is dropped, and so is everything after it
with the same connection ID, as a censor that blocks the flow does. Other names pass. Run by topology.py in
the ISP namespace (`python -m probe.lab.quic_filter CONFIG.json`); tests relay on loopback with `relay`.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import trio
from aioquic.buffer import Buffer, BufferReadError
from aioquic.quic.crypto import CryptoError, CryptoPair
from aioquic.quic.packet import QuicPacketType, pull_quic_header

CRYPTO, PADDING, PING = 0x06, 0x00, 0x01


def initial_crypto(datagram: bytes) -> tuple[bytes, bytes] | None:
    """(DCID, the CRYPTO data) of the Initial packet a client datagram starts with; None if it is none."""
    buf = Buffer(data=datagram)
    try:
        header = pull_quic_header(buf, host_cid_length=8)
        if header.packet_type != QuicPacketType.INITIAL or header.version is None:
            return None
        pair = CryptoPair()
        pair.setup_initial(cid=header.destination_cid, is_client=False, version=header.version)
        encrypted_off = buf.tell()
        _, payload, _ = pair.decrypt_packet(datagram[:header.packet_length], encrypted_off, 0)
    except (BufferReadError, CryptoError, ValueError):
        return None
    data = bytearray()
    frames = Buffer(data=payload)
    try:
        while not frames.eof():
            kind = frames.pull_uint_var()
            if kind in (PADDING, PING):
                continue
            if kind != CRYPTO:
                break  # (ACK and others: a client's first Initials carry none; no need to parse them)
            frames.pull_uint_var()  # offset: the name is looked for in whatever part this packet carries
            data += frames.pull_bytes(frames.pull_uint_var())
    except BufferReadError:
        pass
    return header.destination_cid, bytes(data)


def initial_names(datagram: bytes, names: list[str]) -> tuple[bytes, str | None] | None:
    """(DCID, the censored name its Initial carries or None); None when the datagram is no client Initial."""
    found = initial_crypto(datagram)
    if found is None:
        return None
    dcid, data = found
    return dcid, next((n for n in names if n.encode() in data), None)


async def relay(listen: tuple[str, int], upstream: tuple[str, int], names: list[str], *,
                task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Relay UDP from `listen` to `upstream`, dropping flows whose Initial carries one of `names`; started()
    gets the bound port."""
    front = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await front.bind(listen)
    backs: dict[Any, trio.socket.SocketType] = {}  # by client address
    blocked: set[bytes] = set()

    async def back_to(client: Any, back: trio.socket.SocketType) -> None:
        while True:
            try:
                data = await back.recv(65536)
                await front.sendto(data, client)
            except OSError:
                continue  # (an ICMP error from either side: the datagram is lost, as on a real path)

    try:
        async with trio.open_nursery() as nursery:
            task_status.started(front.getsockname()[1])
            while True:
                data, client = await front.recvfrom(65536)
                initial = initial_names(data, names)
                if initial is not None and (initial[1] is not None or initial[0] in blocked):
                    blocked.add(initial[0])
                    continue  # dropped: the client hears nothing and times out
                back = backs.get(client)
                if back is None:
                    back = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
                    await back.connect(upstream)
                    backs[client] = back
                    nursery.start_soon(back_to, client, back)
                with contextlib.suppress(OSError):
                    await back.send(data)
    finally:
        front.close()
        for b in backs.values():
            b.close()


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            for r in config["relays"]:
                await nursery.start(relay, (r["listen"], r["port"]), (r["upstream"], 443), r["names"])
            Path(config["ready"]).touch()

    trio.run(run)


if __name__ == "__main__":
    main(sys.argv[1])
