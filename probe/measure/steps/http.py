"""HTTP step: GET the URL through the address the probe measured, following redirects hop by hop.

Each connection goes to an address we resolved and checked, while Host, SNI and certificate checks use the
name. Redirects are followed by hand so every hop is recorded, and a redirect never leads the probe to a
non-public address or a non-HTTP scheme. Bodies are read raw and decompressed with a bound, so a gzip bomb
costs at most the cap. The requests are HTTP/1.1 over h11 (the parser httpx itself uses): one GET needs no
client, pool or URL model, and through httpx those cost more CPU than the rest of the URL's measurement.
A chain keeps its connections alive between hops to the same origin, as a browser does.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import h11
import trio

from ...failures import TIMEOUT, classify
from ...models import HttpHop
from ..netpolicy import NetPolicy
from ..targets import TargetError, normalise
from .tls import TlsContexts
from .transfer import CountingStream, Reads

BROWSER_HEADERS = {
    "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.9",
    "Accept-Encoding": "gzip, deflate",  # only what we can decode with a bound
}
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
TITLE_LIMIT = 512
# An unclosed title runs to the end of the data, as HTML parsers read it (a capped body often cuts it).
_TITLE = re.compile(rb"<title[^>]*>(.*?)(?:</title|\Z)", re.IGNORECASE | re.DOTALL)
_CHARSET = re.compile(r"charset=[\"']?([\w.:-]+)", re.IGNORECASE)

# Resolves a redirect target's name: (failure or None, addresses).
Resolve = Callable[[str], Awaitable[tuple[str | None, list[str]]]]


class BoundedDecoder:
    """Content-Encoding decoder that never produces more than the caller has room for."""

    def __init__(self, encoding: str | None) -> None:
        enc = (encoding or "").strip().lower()
        self._z: Any = None
        if enc in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._z = zlib.decompressobj()
        self._deflate_raw_retry = enc == "deflate"

    def feed(self, data: bytes, room: int) -> bytes:
        if self._z is None:
            return data[:room]
        try:
            return self._z.decompress(self._z.unconsumed_tail + data, room)
        except zlib.error:
            if self._deflate_raw_retry:  # some servers send raw deflate without the zlib header
                self._deflate_raw_retry = False
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.feed(data, room)
            raise


def extract_title(body: bytes, content_type: str | None) -> str | None:
    m = _TITLE.search(body[: 1 << 20])
    if not m:
        return None
    charset = "utf-8"
    if content_type and (cm := _CHARSET.search(content_type)):
        charset = cm.group(1)
    raw = m.group(1)[: TITLE_LIMIT * 4]
    try:
        text = raw.decode(charset, errors="replace")
    except LookupError:
        text = raw.decode("utf-8", errors="replace")
    return " ".join(text.split())[:TITLE_LIMIT] or None


_ERRORS = (OSError, EOFError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, zlib.error,
           UnicodeError)
# What stays as it is in a request target: the printable ASCII outside WHATWG's path (and query) percent-encode
# sets, as browsers and httpx send them; "%" too, so escapes already in the URL are kept.
_SAFE_PATH = "".join(chr(i) for i in range(0x21, 0x7F) if chr(i) not in '"#<>?`{}')
_SAFE_QUERY = "".join(chr(i) for i in range(0x21, 0x7F) if chr(i) not in '"#<>')
# A response head up to this size is read (h11's own default is 16 KiB; httpcore, which the GET used before,
# allowed 100 KiB): sites with many cookies send more than 16 KiB, and a cut would look like interference.
MAX_HEAD = 100 * 1024
_DEFAULT_PORT = {"http": 80, "https": 443}


def _client() -> h11.Connection:
    return h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)


@dataclass(slots=True)
class _Conn:
    stream: trio.abc.Stream
    h11: h11.Connection
    used: bool = False  # it carried a request already (the TCP step's connection has not)
    # https: the TCP stream under TLS, counting for the try in progress. Reads are timed there, not as TLS
    # records come out (a 16 KiB record of a throttled page comes out whole, seconds apart: not a stall).
    counter: CountingStream | None = None


class _Origins:
    """The kept-alive connections of one chain, by (scheme, host, port); each pinned to its measured address."""

    def __init__(self, contexts: TlsContexts) -> None:
        self.contexts = contexts
        self.idle: dict[tuple[str, str, int], _Conn] = {}

    async def aclose(self) -> None:
        idle, self.idle = self.idle, {}
        for conn in idle.values():
            await trio.aclose_forcefully(conn.stream)


def _request_target(parts: urllib.parse.SplitResult) -> str:
    path = urllib.parse.quote(parts.path or "/", safe=_SAFE_PATH)
    return path + (f"?{urllib.parse.quote(parts.query, safe=_SAFE_QUERY)}" if parts.query else "")


@dataclass(slots=True, eq=False)
class _Try:
    """One try of a request: what it got, and when."""

    # On a connection that served an earlier request, or that waited idle since the TCP step opened it and then
    # failed before a byte came back: the server may have closed it meanwhile, so its failure is no evidence.
    reused: bool
    t0: float
    t: float = 0.0
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    failure: str | None = None
    phase: str = "http"  # the step a failure belongs to: "tcp", "tls" or "http"
    received: bool = False  # a byte of the response came
    head: trio.Event = field(default_factory=trio.Event)  # the response head arrived, or the try ended
    done: trio.Event = field(default_factory=trio.Event)  # ended by itself (not cancelled)
    reads: Reads | None = None  # when the response's bytes came (see transfer.py)

    def record(self) -> dict[str, Any]:
        return {"failure": self.failure, "failed_step": self.phase if self.failure else None,
                "reused": self.reused, "t0": self.t0, "t": self.t}


@dataclass(frozen=True, slots=True)
class _Request:
    ip: str
    scheme: str
    host: str
    port: int
    h11: h11.Request

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


def _request(url: str, ip: str) -> _Request:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if not host.isascii():
        host = normalise(url).hostname  # IDNA, as DNS and SNI saw it (the chain's URLs are already normalised)
    port = parts.port or _DEFAULT_PORT[scheme]
    authority = f"[{host}]" if ":" in host else host
    default_port = port == _DEFAULT_PORT[scheme]
    request = h11.Request(method="GET", target=_request_target(parts), headers=[
        ("Host", authority if default_port else f"{authority}:{port}"), *BROWSER_HEADERS.items(),
        ("Connection", "keep-alive")])
    return _Request(ip, scheme, host, port, request)


async def _try(origins: _Origins, req: _Request, conn: _Conn | None, t: _Try, *, timeout: float, body_cap: int,
               clock: Callable[[], float]) -> None:
    """One try of `req`: on `conn` (kept alive) or a new connection to the request's address."""
    with trio.move_on_after(timeout) as scope:
        try:
            if conn is None:
                t.phase = "tcp"
                conn = _Conn(await trio.open_tcp_stream(req.ip, req.port), _client())
                if req.scheme == "https":
                    t.phase = "tls"
                    conn.counter = CountingStream(conn.stream, None)
                    conn.stream = trio.SSLStream(conn.counter, origins.contexts.http, server_hostname=req.host,
                                                 https_compatible=True)
                    await conn.stream.do_handshake()
                t.phase = "http"
            await conn.stream.send_all(conn.h11.send(req.h11) + (conn.h11.send(h11.EndOfMessage()) or b""))
            reads = t.reads = Reads(clock, sent=clock())
            if conn.counter is not None:
                conn.counter.reads = reads  # the TLS connection's bytes, as they come off the wire
            decoder: BoundedDecoder | None = None
            while True:
                event = conn.h11.next_event()
                if event is h11.NEED_DATA:
                    chunk = await conn.stream.receive_some(65536)
                    if not chunk and t.status is None:
                        raise EOFError("the server closed the connection before answering")
                    t.received = True
                    if conn.counter is None:
                        reads.read(len(chunk))
                    conn.h11.receive_data(bytes(chunk))  # b"": closed (ends a close-delimited body)
                elif isinstance(event, h11.Response):
                    t.status = event.status_code
                    t.headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers)
                    decoder = BoundedDecoder(dict(t.headers).get("content-encoding"))
                    t.head.set()
                elif isinstance(event, h11.Data):
                    assert decoder is not None
                    t.body += decoder.feed(event.data, body_cap + 1 - len(t.body))
                    if len(t.body) > body_cap:
                        t.truncated = True
                        del t.body[body_cap:]
                        break
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise EOFError("the server closed the connection before answering")
            if conn.counter is not None:
                conn.counter.reads = None  # the response is in: a kept connection counts for its next try only
            if not t.truncated and conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
                conn.h11.start_next_cycle()
                conn.used = True
                if req.origin not in origins.idle:
                    origins.idle[req.origin] = conn  # for the next hop to this origin
                    conn = None
        except _ERRORS as e:
            t.failure = "unknown_failure: bad content encoding" if isinstance(e, zlib.error) else classify(e)
        finally:
            if conn is not None:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(conn.stream)
    if scope.cancelled_caught:
        t.failure = TIMEOUT
    t.t = clock()
    t.head.set()
    t.done.set()


FRESH_TRIES = 2  # a request fails only when it failed this often on fresh connections
_STALE = {"eof_error", "connection_reset"}  # how a server's close of an idle connection shows
MAX_TRIES = 3  # a reused connection's failure (the server may have closed it) comes on top


async def _tries(origins: _Origins, req: _Request, *, timeout: float, body_cap: int,
                 clock: Callable[[], float]) -> list[_Try]:
    """Try the request until it gets a response, or has failed FRESH_TRIES times on fresh connections.

    A failure that happens once (a lost packet on a congested line, a kept connection the server closed) is no
    evidence; one that reproduces may be. A new try starts when the last one failed, or when it has had no
    response head for half the timeout (so confirming a dropped request costs 1.5 timeouts, not 2). The first
    try that gets its response ends the others, which are not recorded: they ended neither way.
    """
    tries: list[_Try] = []

    async def run(t: _Try, conn: _Conn | None, nursery: trio.Nursery) -> None:
        await _try(origins, req, conn, t, timeout=timeout, body_cap=body_cap, clock=clock)
        if conn is not None and not t.received and t.failure in _STALE:
            t.reused = True  # the TCP step's connection, closed by the server while it waited: try a fresh one
        if t.failure is None:
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        kept = origins.idle.pop(req.origin, None)
        while True:
            t = _Try(reused=kept is not None and kept.used, t0=clock())
            tries.append(t)
            nursery.start_soon(run, t, kept, nursery)
            kept = None
            with trio.move_on_after(timeout / 2):
                await t.head.wait()
            if t.status is not None and not t.done.is_set():
                await t.done.wait()  # a response is coming: let it end
            fresh = [x for x in tries if not x.reused and not (x.done.is_set() and x.failure is None)]
            if (t.done.is_set() and t.failure is None) or len(fresh) >= FRESH_TRIES or len(tries) >= MAX_TRIES:
                break
    return [t for t in tries if t.done.is_set()]


async def _hop(origins: _Origins, url: str, ip: str, *, timeout: float, body_cap: int,
               clock: Callable[[], float], chain: str) -> HttpHop:
    req = _request(url, ip)
    tries = await _tries(origins, req, timeout=timeout, body_cap=body_cap, clock=clock)
    # The first try that got a response speaks for the hop; else the first failure (a censor may reset the first
    # request and then refuse new connections: the reset is the evidence).
    best = next((t for t in tries if t.failure is None), tries[0])
    hdr = dict(best.headers)
    data = bytes(best.body)
    return HttpHop(
        url=url,
        chain=chain,
        failed_step=best.phase if best.failure else None,
        ip=ip,
        status=best.status,
        headers=best.headers,
        location=hdr.get("location"),
        body_length=len(data) if best.status is not None else None,
        body_sha256=hashlib.sha256(data).hexdigest() if best.status is not None else None,
        body_truncated=best.truncated,
        title=extract_title(data, hdr.get("content-type")),
        failure=best.failure,
        attempts=tuple(t.record() for t in tries),
        transfer=best.reads.record() if best.reads else {},
        t0=tries[0].t0,
        t=clock(),
        body=data,
    )


async def fetch(
    url: str,
    *,
    hostname: str,
    ip: str,
    connection: trio.abc.Stream | None = None,
    resolve: Resolve,
    policy: NetPolicy,
    contexts: TlsContexts,
    timeout: float,
    body_cap: int,
    max_redirects: int,
    clock: Callable[[], float],
    chain: str = "",
) -> tuple[HttpHop, ...]:
    """Every hop of `url`'s redirect chain; `connection`: an open stream to `ip` for the first hop (the TCP
    step's), used as a kept-alive one."""
    addresses = {hostname: ip}
    origins = _Origins(contexts)
    if connection is not None:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        origins.idle[(scheme, hostname, parts.port or _DEFAULT_PORT[scheme])] = _Conn(connection, _client())
    hops: list[HttpHop] = []
    try:
        current, host = url, hostname
        while True:
            hop = await _hop(origins, current, addresses[host], timeout=timeout, body_cap=body_cap, clock=clock,
                             chain=chain)
            hops.append(hop)
            if hop.failure or hop.status not in REDIRECT_STATUSES or not hop.location:
                break
            nxt = urllib.parse.urljoin(current, hop.location.strip())
            stop, host = await _next_host(nxt, addresses, resolve, policy, clock, chain)
            if stop is None and len(hops) > max_redirects:
                stop = f"too-many-redirects:{max_redirects}"
            if stop is not None:
                if isinstance(stop, HttpHop):
                    hops.append(stop)
                else:
                    hops[-1] = replace(hop, stopped=stop)
                break
            current = nxt
    finally:
        with trio.CancelScope(shield=True):
            await origins.aclose()
    return tuple(hops)


async def _next_host(nxt: str, addresses: dict[str, str], resolve: Resolve, policy: NetPolicy,
                     clock: Callable[[], float], chain: str) -> tuple[str | HttpHop | None, str]:
    """Decide whether a redirect may be followed; pin its host to a checked address."""
    scheme = urllib.parse.urlsplit(nxt).scheme.lower()
    if scheme not in ("http", "https"):
        return f"redirect-scheme:{scheme or 'none'}", ""
    try:
        target = normalise(nxt)
    except TargetError as e:
        return f"bad-redirect: {e}", ""
    host = target.hostname
    if host in addresses:
        return None, host
    t0 = clock()
    failure, ips = await resolve(host)
    if failure:
        return HttpHop(url=nxt, chain=chain, failure=failure, failed_step="dns", t0=t0, t=clock()), host
    public = [a for a in ips if policy.is_public(a)]
    if not public:
        return f"redirect-to-bogon:{ips[0] if ips else '?'}", host
    addresses[host] = public[0]
    return None, host
