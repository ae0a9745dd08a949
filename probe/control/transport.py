"""Kept-alive HTTP/1.1 requests to one control service (a DoH resolver or the helper).

A run makes three control requests per URL (DoH A and AAAA, one helper request) to a handful of fixed
servers. Through httpx each cost ~1.7 ms of CPU on the benchmark machine (request and response models, URL
and header handling, and a connection pool whose bookkeeping grows with the square of its connections); over
h11 on a kept connection, ~0.2 ms. (The measured sites are fetched over h11 too, by `steps/http.py`, on the
TCP step's own connection.)

Errors are raised as they come (OSError, trio's stream errors, ssl errors, h11's protocol errors, EOFError,
`ReplyTooLarge`); the caller records them with `failures.classify`. A kept connection that the server had
closed is retried once on a new one, so a server's idle timeout never becomes a recorded failure.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import h11
import trio

IDLE_EXPIRY = 4.0  # seconds a connection may sit idle before we stop trusting it (servers close after 5-60 s)


class ReplyTooLarge(Exception):
    pass


class _Stale(Exception):
    """A reused connection failed before any byte of the reply: the server had closed it."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class _Conn:
    stream: trio.abc.Stream
    h11: h11.Connection
    idle_since: float = 0.0


def split_service_url(url: str) -> SplitResult:
    """The parts of a control service's URL; ValueError unless it is http(s) with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    return parts


class ServiceClient:
    """Up to `size` connections to the origin of `url`; requests beyond that wait their turn here."""

    def __init__(self, url: str, *, ssl_context: ssl.SSLContext, size: int, max_reply: int) -> None:
        parts = split_service_url(url)
        self.url = url
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._tls else 80)
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._fixed_headers = [("host", parts.netloc.rsplit("@", 1)[-1]), ("user-agent", "probe")]
        self._ssl = ssl_context
        self._max_reply = max_reply
        self._slots = trio.CapacityLimiter(size)
        self._idle: list[_Conn] = []

    async def post(self, body: bytes, content_type: str, *, accept: str | None = None) -> Reply:
        headers = [*self._fixed_headers, ("content-type", content_type), ("content-length", str(len(body))),
                   *([("accept", accept)] if accept else [])]
        async with self._slots:
            conn = await self._checkout()
            if conn is not None:
                try:
                    return await self._exchange(conn, headers, body, reused=True)
                except _Stale:
                    pass
            return await self._exchange(await self._connect(), headers, body, reused=False)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await trio.aclose_forcefully(conn.stream)

    async def _checkout(self) -> _Conn | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < IDLE_EXPIRY:
                return conn
            await trio.aclose_forcefully(conn.stream)
        return None

    async def _connect(self) -> _Conn:
        stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
        if self._tls:
            tls = trio.SSLStream(stream, self._ssl, server_hostname=self._host, https_compatible=True)
            try:
                await tls.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(tls)
                raise
            stream = tls
        return _Conn(stream, h11.Connection(h11.CLIENT))

    async def _exchange(self, conn: _Conn, headers: list[tuple[str, str]], body: bytes, *, reused: bool) -> Reply:
        received = False
        try:
            c = conn.h11
            data = c.send(h11.Request(method="POST", target=self._target, headers=headers))
            data += c.send(h11.Data(data=body)) + c.send(h11.EndOfMessage())
            await conn.stream.send_all(data)
            status, reply_headers, reply = 0, {}, bytearray()
            while True:
                event = c.next_event()
                if event is h11.NEED_DATA:
                    chunk = await conn.stream.receive_some(65536)
                    if not chunk and not status:
                        raise EOFError("the server closed the connection before answering")
                    received = True
                    c.receive_data(bytes(chunk))  # b"" tells h11 the server closed: the end of a close-delimited body
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    reply_headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    reply += event.data
                    if len(reply) > self._max_reply:
                        raise ReplyTooLarge(f"reply larger than {self._max_reply} bytes")
                elif isinstance(event, h11.EndOfMessage):
                    break
        except BaseException as e:
            await trio.aclose_forcefully(conn.stream)
            if reused and not received and isinstance(e, EOFError | trio.BrokenResourceError | OSError):
                raise _Stale from e
            raise
        if c.our_state is h11.DONE and c.their_state is h11.DONE:
            c.start_next_cycle()
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:  # the server said `connection: close`
            await trio.aclose_forcefully(conn.stream)
        return Reply(status, reply_headers, bytes(reply))
