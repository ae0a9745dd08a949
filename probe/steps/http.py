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
from dataclasses import dataclass, replace
from typing import Any

import h11
import trio

from ..failures import TIMEOUT, classify
from ..models import HttpHop
from ..netpolicy import NetPolicy
from ..targets import TargetError, normalise
from .tls import TlsContexts

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


async def _hop(origins: _Origins, url: str, ip: str, *, timeout: float, body_cap: int,
               clock: Callable[[], float], chain: str) -> HttpHop:
    t0 = clock()
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body = bytearray()
    truncated = False
    failure: str | None = None
    phase = "http"  # a kept-alive connection goes straight to the request; a failure belongs to its step

    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if not host.isascii():
        host = normalise(url).hostname  # IDNA, as DNS and SNI saw it (the chain's URLs are already normalised)
    port = parts.port or _DEFAULT_PORT[scheme]
    origin = (scheme, host, port)
    authority = f"[{host}]" if ":" in host else host
    default_port = port == _DEFAULT_PORT[scheme]
    request = h11.Request(method="GET", target=_request_target(parts), headers=[
        ("Host", authority if default_port else f"{authority}:{port}"), *BROWSER_HEADERS.items(),
        ("Connection", "keep-alive")])
    conn: _Conn | None = None
    first_failure: str | None = None  # a kept connection's, when the retry on a new one fails too
    with trio.move_on_after(timeout) as scope:
        kept = origins.idle.pop(origin, None)
        try:
            for conn in (kept, None) if kept is not None else (None,):
                received = False
                try:
                    if conn is None:
                        phase = "tcp"
                        conn = _Conn(await trio.open_tcp_stream(ip, port), _client())
                        if scheme == "https":
                            phase = "tls"
                            conn.stream = trio.SSLStream(conn.stream, origins.contexts.http, server_hostname=host,
                                                         https_compatible=True)
                            await conn.stream.do_handshake()
                        phase = "http"
                    await conn.stream.send_all(conn.h11.send(request) + (conn.h11.send(h11.EndOfMessage()) or b""))
                    decoder: BoundedDecoder | None = None
                    while True:
                        event = conn.h11.next_event()
                        if event is h11.NEED_DATA:
                            chunk = await conn.stream.receive_some(65536)
                            if not chunk and status is None:
                                raise EOFError("the server closed the connection before answering")
                            received = True
                            conn.h11.receive_data(bytes(chunk))  # b"": closed (ends a close-delimited body)
                        elif isinstance(event, h11.Response):
                            status = event.status_code
                            headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1"))
                                            for k, v in event.headers)
                            decoder = BoundedDecoder(dict(headers).get("content-encoding"))
                        elif isinstance(event, h11.Data):
                            assert decoder is not None
                            body += decoder.feed(event.data, body_cap + 1 - len(body))
                            if len(body) > body_cap:
                                truncated = True
                                del body[body_cap:]
                                break
                        elif isinstance(event, h11.EndOfMessage):
                            break
                        elif isinstance(event, h11.ConnectionClosed):
                            raise EOFError("the server closed the connection before answering")
                    if not truncated and conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
                        conn.h11.start_next_cycle()
                        origins.idle[origin] = conn  # for the next hop to this origin
                        conn = None
                except _ERRORS as e:
                    if conn is not None:
                        await trio.aclose_forcefully(conn.stream)
                    failure = "unknown_failure: bad content encoding" if isinstance(e, zlib.error) else classify(e)
                    if conn is kept and not received and not isinstance(e, zlib.error):
                        # A kept connection (or the TCP step's) that fails before a byte of the reply may just
                        # have been closed by the server meanwhile: once more, on a new connection. Should that
                        # fail too, the first failure is the evidence (a censor may answer the first request
                        # with a reset and then refuse new connections).
                        first_failure, failure, conn = failure, None, None
                        continue
                    conn = None
                break
        finally:
            if conn is not None:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(conn.stream)
    if scope.cancelled_caught:
        failure = TIMEOUT
    if failure and first_failure is not None and status is None:
        failure, phase = first_failure, "http"
    hdr = dict(headers)
    data = bytes(body)
    return HttpHop(
        url=url,
        chain=chain,
        failed_step=(phase if status is None else "http") if failure else None,
        ip=ip,
        status=status,
        headers=headers,
        location=hdr.get("location"),
        body_length=len(data) if status is not None else None,
        body_sha256=hashlib.sha256(data).hexdigest() if status is not None else None,
        body_truncated=truncated,
        title=extract_title(data, hdr.get("content-type")),
        failure=failure,
        t0=t0,
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
