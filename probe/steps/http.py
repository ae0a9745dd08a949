"""HTTP step: GET the URL through the address the probe measured, following redirects hop by hop.

httpx would resolve names itself; the network backend below is the seam where each connection is pinned to an
address we resolved and checked, while Host, SNI and certificate checks still use the name. Redirects are
followed by hand so every hop is recorded, and a redirect never leads the probe to a non-public address or a
non-HTTP scheme. Bodies are read raw and decompressed with a bound, so a gzip bomb costs at most the cap.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import httpcore
import httpx
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


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Dial the address recorded for each host name; refuse names we did not resolve ourselves."""

    def __init__(self, addresses: dict[str, str]) -> None:
        self.addresses = addresses
        self._trio = _trio_backend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        ip = self.addresses.get(host)
        if ip is None:
            raise httpcore.ConnectError(f"no measured address for {host}")
        return await self._trio.connect_tcp(ip, port, timeout, local_address, socket_options)

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("unix sockets are not measured")

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


def _trio_backend() -> httpcore.AsyncNetworkBackend:
    from httpcore._backends.trio import TrioBackend  # not re-exported by httpcore

    return TrioBackend()


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


async def _hop(client: httpx.AsyncClient, url: str, ip: str, *, timeout: float, body_cap: int,
               clock: Callable[[], float], chain: str) -> HttpHop:
    t0 = clock()
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body = bytearray()
    truncated = False
    failure: str | None = None
    phase: list[str] = ["http"]  # a kept-alive connection goes straight to the request

    async def trace(event: str, info: dict[str, Any]) -> None:
        # httpcore tells where it is; a failure belongs to the step it interrupted.
        if event == "connection.connect_tcp.started":
            phase[0] = "tcp"
        elif event == "connection.connect_tcp.complete":
            phase[0] = "tls" if url.lower().startswith("https:") else "http"
        elif event == "connection.start_tls.complete":
            phase[0] = "http"

    with trio.move_on_after(timeout) as scope:
        try:
            resp = await client.send(client.build_request("GET", url, extensions={"trace": trace}), stream=True)
            try:
                status = resp.status_code
                headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in resp.headers.raw)
                decoder = BoundedDecoder(resp.headers.get("content-encoding"))
                async for chunk in resp.aiter_raw():
                    body += decoder.feed(chunk, body_cap + 1 - len(body))
                    if len(body) > body_cap:
                        truncated = True
                        del body[body_cap:]
                        break
            finally:
                await resp.aclose()
        except httpx.InvalidURL as e:  # a URL httpx cannot send (it raises this outside HTTPError)
            failure = f"unknown_failure: invalid URL: {e}"[:300]
        except (httpx.HTTPError, httpcore.NetworkError, OSError, zlib.error, trio.BrokenResourceError) as e:
            failure = "unknown_failure: bad content encoding" if isinstance(e, zlib.error) else classify(e)
    if scope.cancelled_caught:
        failure = TIMEOUT
    hdr = dict(headers)
    data = bytes(body)
    return HttpHop(
        url=url,
        chain=chain,
        failed_step=(phase[0] if status is None else "http") if failure else None,
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
    resolve: Resolve,
    policy: NetPolicy,
    contexts: TlsContexts,
    timeout: float,
    body_cap: int,
    max_redirects: int,
    clock: Callable[[], float],
    chain: str = "",
) -> tuple[HttpHop, ...]:
    addresses = {hostname: ip}
    transport = httpx.AsyncHTTPTransport(verify=contexts.http)
    # httpx has no public hook for the network backend; its pool is the documented httpcore one.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=contexts.http, network_backend=PinnedBackend(addresses), max_connections=4
    )
    hops: list[HttpHop] = []
    async with httpx.AsyncClient(transport=transport, headers=BROWSER_HEADERS, follow_redirects=False,
                                 timeout=timeout) as client:
        current, host = url, hostname
        while True:
            hop = await _hop(client, current, addresses[host], timeout=timeout, body_cap=body_cap, clock=clock,
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
