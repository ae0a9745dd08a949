"""An on-path injector for the lab's ISP router: what a censor's box in the path does without a proxy.

It watches the frames the volunteer sends (an AF_PACKET socket sees them before the router's iptables, which
drops the real request so the site never answers) and, for a request naming a censored host, forges the site's
answer: a 302 to a notice elsewhere, with FIN, sequence numbers taken from the request so the client's TCP
accepts it. For a DNS query (UDP) naming a censored host and sent to a resolver outside the ISP, it forges the
resolver's A answer and lets the real query through: the volunteer gets two replies, the forgery first, as from
an injector closer than the resolver. Run by topology.py inside the ISP namespace (`python -m
probe.lab.injector CONFIG.json`); the namespace has no route out of the lab, so nothing it sends can leave.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
from pathlib import Path

ETH_P_IP = 0x0800
FIN, PSH, ACK = 0x01, 0x08, 0x10


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def forge(*, src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, payload: bytes) -> bytes:
    """An IPv4 packet carrying one TCP segment (PSH, ACK, FIN) with `payload`."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, PSH | ACK | FIN, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp) + len(payload))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp + payload)) + tcp[18:]
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, socket.IPPROTO_TCP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + tcp + payload


def forge_udp(*, src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 packet carrying one UDP datagram."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_UDP, len(udp) + len(payload))
    udp = udp[:6] + struct.pack("!H", _checksum(pseudo + udp + payload) or 0xFFFF)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp) + len(payload), 0, 0x4000, 64, socket.IPPROTO_UDP,
                     0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + udp + payload


def dns_answer_for(packet: bytes, targets: dict[str, str], resolvers: list[str]) -> tuple[bytes, str] | None:
    """The forged reply to an IPv4 packet, if it is an A query to one of `resolvers` for one of `targets`
    (host -> forged address, or "SERVFAIL": a failure for every query type)."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_UDP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    src, dst = packet[12:16], packet[16:20]
    sport, dport = struct.unpack("!HH", packet[ihl:ihl + 4])
    query = packet[ihl + 8:struct.unpack("!H", packet[2:4])[0]]
    if dport != 53 or socket.inet_ntoa(dst) not in resolvers or len(query) < 17:
        return None
    labels, i = [], 12
    while i < len(query) and query[i]:
        labels.append(query[i + 1:i + 1 + query[i]].decode("ascii", "replace").lower())
        i += 1 + query[i]
    question = query[12:i + 5]
    forged = targets.get(".".join(labels))
    if forged is None:
        return None
    if forged == "SERVFAIL":
        reply = query[:2] + b"\x81\x82\0\1\0\0\0\0\0\0" + question
    elif query[i + 1:i + 3] != b"\0\1":  # A only: the AAAA query gets its honest answer
        return None
    else:
        reply = (query[:2] + b"\x81\x80\0\1\0\1\0\0\0\0" + question
                 + b"\xc0\x0c\0\1\0\1\0\0\0\x3c\0\4" + socket.inet_aton(forged))
    return forge_udp(src=dst, dst=src, sport=53, dport=sport, payload=reply), socket.inet_ntoa(src)


def answer_for(packet: bytes, targets: dict[str, str]) -> tuple[bytes, str] | None:
    """The forged reply to an IPv4 packet, if it is an HTTP request for one of `targets` (host -> Location)."""
    if len(packet) < 40 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_TCP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack("!H", packet[2:4])[0]
    src, dst = packet[12:16], packet[16:20]
    sport, dport, seq, ack = struct.unpack("!HHII", packet[ihl:ihl + 12])
    payload = packet[ihl + (packet[ihl + 12] >> 4) * 4:total]
    if dport != 80 or not payload.startswith(b"GET "):
        return None
    head = payload.lower()
    for host, location in targets.items():
        if b"\r\nhost: " + host.lower().encode() + b"\r\n" in head:
            reply = (f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n").encode()
            return forge(src=dst, dst=src, sport=dport, dport=sport, seq=ack, ack=(seq + len(payload)) % 2**32,
                         payload=reply), socket.inet_ntoa(src)
    return None


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    sniff.bind((config["iface"], 0))
    send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    Path(config["ready"]).touch()
    while True:
        frame, addr = sniff.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        forged = (answer_for(frame[14:], config["targets"])
                  or dns_answer_for(frame[14:], config.get("forged_answers", {}), config.get("resolvers", [])))
        if forged is not None:
            send.sendto(forged[0], (forged[1], 0))


if __name__ == "__main__":
    main(sys.argv[1])
