"""Servers that play the internet and the censor: for tests, benchmarks and `probe lab`.

A DNS server whose answers are scripted per name (lie, NXDOMAIN, inject a forged reply before the real one,
truncate, drop, send garbage) and an HTTP(S) server (h11) whose sites are scripted per Host (redirects, big,
slow, dynamic, reset). Both can delay their answers: this kernel has no netem, so latency is emulated here.
Real sockets, real kernels: nothing in the probe is mocked.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import h11
import trio

DnsBehaviour = Literal["answer", "nxdomain", "servfail", "refused", "inject", "drop", "truncate", "garbage",
                       "wrong-id", "noanswer", "huge", "cut", "rotate-slow", "loose"]


@dataclass(frozen=True, slots=True)
class DnsEntry:
    a: tuple[str, ...] = ()
    aaaa: tuple[str, ...] = ()
    behaviour: DnsBehaviour = "answer"
    forged: tuple[str, ...] = ()  # for "inject": the injector's (first) answer
    cname: str | None = None
    txt: tuple[str, ...] = ()


@dataclass(slots=True)
class DnsZone:
    entries: dict[str, DnsEntry] = field(default_factory=dict)
    default: DnsEntry = DnsEntry(behaviour="nxdomain")
    delay: float = 0.0
    queries: int = 0
    copies: dict[tuple[int, str], int] = field(default_factory=dict)  # for "rotate-slow": copies of a query seen
    clients: set[tuple[str, int]] = field(default_factory=set)  # UDP source addresses that asked
    in_flight: int = 0  # UDP queries received and not yet answered
    max_in_flight: int = 0

    def lookup(self, name: str) -> DnsEntry:
        name = name.rstrip(".").lower()
        if name in self.entries:
            return self.entries[name]
        for key, entry in self.entries.items():  # DNS names are case-insensitive ("AS64512.asn...")
            if key.lower() == name:
                return entry
        wild = next((e for n, e in self.entries.items() if n.startswith("*.") and name.endswith(n[1:])), None)
        return wild or self.default


def _reply(query: dns.message.Message, entry: DnsEntry, addrs: tuple[str, ...] | None = None) -> dns.message.Message:
    r = dns.message.make_response(query)
    r.flags |= dns.flags.RA
    q = query.question[0]
    if entry.behaviour == "nxdomain":
        r.set_rcode(dns.rcode.NXDOMAIN)
        return r
    if entry.behaviour in ("servfail", "refused"):
        r.set_rcode(dns.rcode.SERVFAIL if entry.behaviour == "servfail" else dns.rcode.REFUSED)
        return r
    if entry.behaviour == "noanswer":
        return r
    owner = q.name
    if entry.cname:
        target = dns.name.from_text(entry.cname)
        r.answer.append(dns.rrset.from_text(owner, 300, "IN", "CNAME", target.to_text()))
        owner = target
    if q.rdtype == dns.rdatatype.TXT and entry.txt:
        r.answer.append(dns.rrset.from_text_list(owner, 60, "IN", "TXT", [f'"{t}"' for t in entry.txt]))
    if q.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        is_a = q.rdtype == dns.rdatatype.A
        values = addrs if addrs is not None else (entry.a if is_a else entry.aaaa)
        values = tuple(v for v in values if (":" in v) != is_a)
        if entry.behaviour == "huge" and is_a:
            values = tuple(f"198.18.{i // 250}.{i % 250 + 1}" for i in range(3000))
        if values:
            r.answer.append(dns.rrset.from_text_list(owner, 60, "IN", "A" if is_a else "AAAA", list(values)))
    return r


async def serve_dns(zone: DnsZone, host: str = "127.0.0.1", port: int = 0, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """UDP and TCP on the same port; reports the port through task_status."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _attempt in range(50):  # port 0: the UDP port the kernel picks may be taken for TCP; pick again
        udp = trio.socket.socket(family, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        await udp.bind((host, port))
        bound = udp.getsockname()[1]
        tcp = trio.socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            await tcp.bind((host, bound))
            break
        except OSError:
            udp.close()
            tcp.close()
            if port:
                raise
    else:
        raise OSError(f"no free port for DNS on {host}")
    port = bound
    tcp.listen(128)
    async with trio.open_nursery() as n:
        n.start_soon(_dns_udp_loop, zone, udp, n)
        n.start_soon(trio.serve_listeners, lambda s: _dns_tcp_conn(zone, s), [trio.SocketListener(tcp)])
        task_status.started(port)


ROTATE_SLOW_DELAY = 0.8  # past a quarter of a 2 s DNS timeout: the client has sent its copy by then


async def _dns_udp_loop(zone: DnsZone, sock: Any, nursery: trio.Nursery) -> None:
    with sock:
        while True:
            data, peer = await sock.recvfrom(4096)
            zone.clients.add(peer[:2])
            nursery.start_soon(_dns_udp_counted, zone, sock, data, peer)


async def _dns_udp_counted(zone: DnsZone, sock: Any, data: bytes, peer: Any) -> None:
    zone.in_flight += 1
    zone.max_in_flight = max(zone.max_in_flight, zone.in_flight)
    try:
        await _dns_udp_answer(zone, sock, data, peer)
    finally:
        zone.in_flight -= 1


async def _dns_udp_answer(zone: DnsZone, sock: Any, data: bytes, peer: Any) -> None:
    try:
        query = dns.message.from_wire(data)
    except Exception:
        return
    zone.queries += 1
    entry = zone.lookup(query.question[0].name.to_text())
    if entry.behaviour == "drop":
        return
    if entry.behaviour == "inject":
        # The injector is on the path, closer than the resolver: its forgery arrives first.
        await sock.sendto(_reply(query, entry, entry.forged).to_wire(), peer)
        await trio.sleep(max(zone.delay, 0.05))
        await sock.sendto(_reply(query, DnsEntry(a=entry.a, aaaa=entry.aaaa)).to_wire(), peer)
        return
    if entry.behaviour == "loose" and query.question[0].rdtype == dns.rdatatype.A:
        # Two sloppy forgeries ahead of the real reply: one with QR unset, one whose address is owned by another
        # name (neither is an answer to the query), then the real reply.
        not_a_reply = _reply(query, entry, entry.forged)
        not_a_reply.flags &= ~dns.flags.QR
        await sock.sendto(not_a_reply.to_wire(), peer)
        other = _reply(query, DnsEntry())
        other.answer.append(dns.rrset.from_text("elsewhere.test.", 60, "IN", "A", *entry.forged))
        await sock.sendto(other.to_wire(), peer)
        await trio.sleep(0.05)
        await sock.sendto(_reply(query, entry).to_wire(), peer)
        return
    if entry.behaviour == "rotate-slow":
        # An honest but slow resolver behind a CDN: the first copy of a query is answered late (after the
        # client's retransmission), each copy with the next address of the rotation.
        key = (query.id, query.question[0].name.to_text())
        copy = zone.copies[key] = zone.copies.get(key, -1) + 1
        await trio.sleep(ROTATE_SLOW_DELAY if copy == 0 else 0.0)
        answer = entry.a[copy % len(entry.a)] if entry.a else None
        await sock.sendto(_reply(query, entry, (answer,) if answer else ()).to_wire(), peer)
        return
    await trio.sleep(zone.delay)
    if entry.behaviour == "garbage":
        await sock.sendto(os.urandom(3) + data[3:7] + os.urandom(40), peer)
        return
    reply = _reply(query, entry)
    if entry.behaviour == "cut":  # a reply cut short: it does not parse
        await sock.sendto(reply.to_wire()[:20], peer)
        return
    if entry.behaviour == "wrong-id":
        reply.id = (query.id + 1) % 65536
    wire = reply.to_wire()
    if (entry.behaviour in ("truncate", "huge") and len(wire) > 512) or entry.behaviour == "truncate":
        short = dns.message.make_response(query)
        short.flags |= dns.flags.TC
        wire = short.to_wire()
    await sock.sendto(wire, peer)


async def _dns_tcp_conn(zone: DnsZone, stream: trio.SocketStream) -> None:
    buf = b""
    async with stream:
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                size = struct.unpack("!H", buf[:2])[0]
                query = dns.message.from_wire(buf[2:2 + size])
                buf = buf[2 + size:]
                zone.queries += 1
                entry = zone.lookup(query.question[0].name.to_text())
                await trio.sleep(zone.delay)
                wire = _reply(query, entry).to_wire()
                await stream.send_all(struct.pack("!H", len(wire)) + wire)


async def serve_doh(zone: DnsZone, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """DNS over HTTPS (RFC 8484, POST and GET ?dns=) answering from `zone`: the lab's uncensored resolver."""
    import base64

    from ..control.h11server import Request, Response, error, serve

    async def handle(req: Request) -> Response:
        if req.method == "POST":
            wire = req.body
        elif req.method == "GET" and "dns=" in req.path:
            b64 = req.path.split("dns=", 1)[1].split("&", 1)[0]
            wire = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
        else:
            return error(400, "send a DNS message (RFC 8484)")
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return error(400, "not a DNS message")
        zone.queries += 1
        await trio.sleep(zone.delay)
        reply = _reply(query, zone.lookup(query.question[0].name.to_text()))
        return Response(200, reply.to_wire(), (("content-type", "application/dns-message"),))

    await serve(handle, host, port, ssl_context=ssl_context, task_status=task_status)


# ---------------------------------------------------------------------------------------------------- HTTP

SiteBehaviour = Literal["normal", "reset", "eof", "slow-body", "dynamic", "big", "hang", "gzip-bomb"]


@dataclass(frozen=True, slots=True)
class Site:
    status: int = 200
    title: str = "Example site"
    body: bytes | None = None  # default: a small page with `title`
    headers: tuple[tuple[str, str], ...] = (("x-site-id", "lab"),)
    location: str | None = None
    behaviour: SiteBehaviour = "normal"
    size: int = 0  # for "big"
    paragraphs: int = 20  # page size: real pages are far bigger than blockpages
    abroad: Site | None = None  # what the site serves to `Sites.abroad_peers` (the helper's datacenter) instead
    https_redirect: bool = False  # plain http:// requests get a 301 to the https:// URL (the page is there)
    rate: int = 0  # bytes per second the server sends its page at, to everybody (0: as fast as it can)

    def render(self, counter: int) -> bytes:
        if self.body is not None:
            return self.body
        extra = f"<p>request {counter} at {os.urandom(8).hex()}</p>" if self.behaviour == "dynamic" else ""
        text = f"<html><head><title>{self.title}</title></head><body><h1>{self.title}</h1>{extra}" \
               f"<p>{'Lorem ipsum dolor sit amet. ' * self.paragraphs}</p></body></html>"
        return text.encode()


@dataclass(slots=True)
class Sites:
    by_host: dict[str, Site] = field(default_factory=dict)
    default: Site = Site(status=404, title="Not found here")
    delay: float = 0.0  # before the first byte of every response
    requests: int = 0
    abroad_peers: frozenset[str] = frozenset()  # client addresses a site with an `abroad` variant treats apart

    def lookup(self, host: str) -> Site:
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return self.by_host.get(host.lower(), self.default)


def _peer(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return ""


async def _rst(stream: trio.SocketStream) -> None:
    """Close with a TCP RST (SO_LINGER 0): what an in-path censor's reset looks like to the client."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def _http_conn(sites: Sites, stream: trio.abc.Stream, raw: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            conn.receive_data(bytes(data))
            if not data:
                return
            continue
        if isinstance(event, h11.Request):
            sites.requests += 1
            host = dict(event.headers).get(b"host", b"").decode("latin-1")
            site = sites.lookup(host)
            if site.abroad is not None and _peer(raw) in sites.abroad_peers:
                site = site.abroad
            if site.https_redirect and stream is raw:
                site = Site(status=301, location=f"https://{host}{event.target.decode('latin-1')}", headers=())
            if site.behaviour == "reset":
                await _rst(raw)
                return
            if site.behaviour == "eof":
                await stream.aclose()
                return
            await trio.sleep(sites.delay)
            if site.behaviour == "hang":
                await trio.sleep_forever()
            await _respond(conn, stream, site, sites.requests)
            return
        if isinstance(event, h11.ConnectionClosed | h11.PAUSED):
            return


async def _respond(conn: h11.Connection, stream: trio.abc.Stream, site: Site, counter: int) -> None:
    headers = [("content-type", "text/html; charset=utf-8"), ("server", "lab"), ("connection", "close"),
               *site.headers]
    if site.location:
        headers.append(("location", site.location))
    if site.behaviour == "gzip-bomb":
        # A small gzip stream that inflates to `size` bytes: a decompressor without a bound would swallow it all.
        bomb = await trio.to_thread.run_sync(_gzip_bomb, site.size)  # zlib lets go of the GIL
        headers += [("content-encoding", "gzip"), ("content-length", str(len(bomb)))]
        data = conn.send(h11.Response(status_code=site.status, headers=headers)) + conn.send(h11.Data(data=bomb))
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
    elif site.behaviour == "big":
        headers.append(("content-length", str(site.size)))
        await stream.send_all(conn.send(h11.Response(status_code=site.status, headers=headers)))
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < site.size:
                piece = chunk[: site.size - sent]
                await stream.send_all(conn.send(h11.Data(data=piece)))
                sent += len(piece)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
    elif site.behaviour == "slow-body":
        body = site.render(counter)
        headers.append(("content-length", str(len(body))))
        await stream.send_all(conn.send(h11.Response(status_code=site.status, headers=headers)))
        try:
            for i in range(len(body)):
                await stream.send_all(conn.send(h11.Data(data=body[i:i + 1])))
                await trio.sleep(1)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
    elif site.rate:
        await _paced(conn, stream, site, counter)
    else:
        body = site.render(counter)
        headers.append(("content-length", str(len(body))))
        data = conn.send(h11.Response(status_code=site.status, headers=headers)) + conn.send(h11.Data(data=body))
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
    try:
        await stream.send_all(conn.send(h11.EndOfMessage()))
        await stream.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
        pass


async def _paced(conn: h11.Connection, stream: trio.abc.Stream, site: Site, counter: int) -> None:
    """A server slow for everybody (busy, or on a thin uplink): its page at `site.rate` bytes a second."""
    body = site.render(counter)
    headers = [("content-type", "text/html; charset=utf-8"), ("server", "lab"), ("connection", "close"),
               ("content-length", str(len(body))), *site.headers]
    piece = max(1, site.rate // 10)
    try:
        await stream.send_all(conn.send(h11.Response(status_code=site.status, headers=headers)))
        for i in range(0, len(body), piece):
            await stream.send_all(conn.send(h11.Data(data=body[i:i + piece])))
            await trio.sleep(0.1)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


_BOMBS: dict[int, bytes] = {}


def _gzip_bomb(size: int) -> bytes:
    """A gzip stream inflating to `size` zero bytes (a multiple of 1 MiB), built in well under a second.

    Compressing 1 GB for real takes seconds of CPU and would stall every other lab server; after a full flush
    deflate forgets its history, so one compressed MiB can simply be repeated.
    """
    if size not in _BOMBS:
        import struct
        import zlib

        mib = b"\0" * (1 << 20)
        z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw deflate: we write the gzip framing
        first = z.compress(mib) + z.flush(zlib.Z_FULL_FLUSH)
        block = z.compress(mib) + z.flush(zlib.Z_FULL_FLUSH)
        crc = 0
        for _ in range(size >> 20):
            crc = zlib.crc32(mib, crc)
        header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
        trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
        _BOMBS[size] = header + first + block * ((size >> 20) - 1) + z.flush() + trailer
    return _BOMBS[size]


async def serve_http(sites: Sites, host: str = "127.0.0.1", port: int = 0, *,
                     ssl_context: ssl.SSLContext | None = None,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=1024)
    bound = listeners[0].socket.getsockname()[1]

    async def handle(stream: trio.SocketStream) -> None:
        outer: trio.abc.Stream = stream
        try:
            if ssl_context is not None:
                outer = trio.SSLStream(stream, ssl_context, server_side=True)
                with trio.move_on_after(10):
                    await outer.do_handshake()
            await _http_conn(sites, outer, stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError, h11.ProtocolError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as n:
        n.start_soon(trio.serve_listeners, handle, listeners)
        task_status.started(bound)


async def serve_reset(host: str = "127.0.0.1", port: int = 0, *, after_bytes: int = 1,
                      task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Accept, wait for the client's first bytes (a ClientHello, a GET), then reset: an in-path censor."""
    listeners = await trio.open_tcp_listeners(port, host=host)

    async def handle(stream: trio.SocketStream) -> None:
        with trio.move_on_after(30):
            got = 0
            while got < after_bytes:
                data = await stream.receive_some(65536)
                if not data:
                    return
                got += len(data)
        await _rst(stream)

    async with trio.open_nursery() as n:
        n.start_soon(trio.serve_listeners, handle, listeners)
        task_status.started(listeners[0].socket.getsockname()[1])


def blackhole(host: str = "127.0.0.1", port: int = 0) -> tuple[socket.socket, list[socket.socket], int]:
    """A port whose SYNs go unanswered: a listener with a full backlog that never accepts.

    Returns (listener, fillers, port); keep them open for as long as the port must stay silent.
    """
    lst = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    lst.bind((host, port))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    for _ in range(2):
        c = socket.socket(lst.family)
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect((host, port))
        fillers.append(c)
    return lst, fillers, port


async def serve_sni_filter(blocked: set[str], upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0, *,
                           task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """A DPI box: reset a connection whose first bytes (the ClientHello) carry a blocked name, else relay it."""
    needles = [n.encode() for n in blocked]
    await serve_relay(upstream, host, port, reset=lambda first, _: any(n in first for n in needles),
                      task_status=task_status)


async def serve_relay(upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0, *,
                      reset: Callable[[bytes, int], bool],
                      task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Relay connections to `upstream`, resetting those for which `reset(first bytes, connection number)` holds
    (a DPI box, or a flaky one that resets every other connection)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    count = 0

    async def pump(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
        try:
            while data := await src.receive_some(65536):
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(dst)

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal count
        count += 1
        first = await stream.receive_some(65536)
        if reset(first, count):
            await _rst(stream)
            return
        up = await trio.open_tcp_stream(*upstream)
        await up.send_all(first)
        async with trio.open_nursery() as n:
            n.start_soon(pump, stream, up)
            n.start_soon(pump, up, stream)

    async with trio.open_nursery() as n:
        n.start_soon(trio.serve_listeners, handle, listeners)
        task_status.started(listeners[0].socket.getsockname()[1])


class InThread:
    """Run async servers in a background thread with their own trio loop (for subprocess-driven tests)."""

    def __init__(self, *starters: Callable[..., Awaitable[Any]]) -> None:
        self._starters = starters
        self.ports: list[int] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._error: BaseException | None = None

    def _main(self) -> None:
        async def amain() -> None:
            with trio.CancelScope() as scope:
                self._cancel = scope
                self._token = trio.lowlevel.current_trio_token()
                async with trio.open_nursery() as n:
                    for start in self._starters:
                        self.ports.append(await n.start(start))
                    self._ready.set()
        try:
            trio.run(amain)
        except BaseException as e:  # surfaced to the test in __enter__
            self._error = e
            self._ready.set()

    def __enter__(self) -> InThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token and self._cancel:
            scope = self._cancel
            trio.from_thread.run_sync(scope.cancel, trio_token=self._token)
        self._thread.join(10)
