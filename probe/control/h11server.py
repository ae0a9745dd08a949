"""A small HTTP/1.1 server for request/response services (the control helper, the lab's DoH server).

It bounds what a client can make it hold: header size (h11), body size, time per request, idle time, requests
per connection, connections at once. Connections are kept alive: a probe sends thousands of DoH queries and
helper requests, and a TLS handshake for each one would be most of its CPU. Handlers get a complete request
and return a complete response; they never see the socket.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h11
import trio


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer: str


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = field(default=(("content-type", "application/json"),))


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    max_body: int = 64 * 1024
    max_header: int = 16 * 1024
    request_timeout: float = 60.0  # from the request's first byte to the end of our response
    idle_timeout: float = 30.0  # between requests; clients (httpx: 5 s) close idle connections before this
    max_requests: int = 1000  # per connection; the last response says `connection: close`
    connections: int = 256


class _TooLarge(Exception):
    pass


async def _read_request(conn: h11.Connection, stream: trio.abc.Stream, limits: Limits) -> tuple[h11.Request, bytes]:
    req: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(bytes(data))
            continue
        if isinstance(event, h11.Request):
            req = event
            declared = dict(event.headers).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limits.max_body:
                raise _TooLarge
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limits.max_body:
                raise _TooLarge
        elif isinstance(event, h11.EndOfMessage) and req is not None:
            return req, bytes(body)
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            raise EOFError


async def _send(conn: h11.Connection, stream: trio.abc.Stream, resp: Response, *, close: bool = False) -> None:
    headers = [*resp.headers, ("content-length", str(len(resp.body)))]
    if close:
        headers.append(("connection", "close"))
    data = conn.send(h11.Response(status_code=resp.status, headers=headers))
    data += conn.send(h11.Data(data=resp.body)) + conn.send(h11.EndOfMessage())
    await stream.send_all(data)


async def _wait_for_bytes(conn: h11.Connection, stream: trio.abc.Stream) -> None:
    """Block until the next request starts; EOFError when the client closes the idle connection."""
    if conn.trailing_data[0]:  # pipelined: the next request is already here
        return
    data = await stream.receive_some(65536)
    if not data:
        raise EOFError
    conn.receive_data(bytes(data))


def error(status: int, reason: str) -> Response:
    import json

    return Response(status, json.dumps({"error": reason}).encode())


async def _serve_one(handler: Handler, conn: h11.Connection, stream: trio.abc.Stream, limits: Limits, peer: str,
                     *, close: bool) -> bool:
    """One request and its response; False when the connection must end (bad or oversized request)."""
    try:
        req, body = await _read_request(conn, stream, limits)
    except _TooLarge:
        await _send(conn, stream, error(413, f"request body larger than {limits.max_body} bytes"), close=True)
        return False
    except h11.RemoteProtocolError as e:
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            await _send(conn, stream, error(e.error_status_hint, f"bad HTTP request: {e}"), close=True)
        return False
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in req.headers}
    request = Request(req.method.decode(), req.target.decode("latin-1"), headers, body, peer)
    await _send(conn, stream, await handler(request), close=close)
    return not close


async def _handle(handler: Handler, stream: trio.SocketStream, limits: Limits,
                  ssl_context: ssl.SSLContext | None) -> None:
    outer: trio.abc.Stream = stream
    peer = str(stream.socket.getpeername()[0])
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header)
    try:
        if ssl_context is not None:
            outer = trio.SSLStream(stream, ssl_context, server_side=True)
            with trio.fail_after(limits.request_timeout):
                await outer.do_handshake()
        for served in range(1, limits.max_requests + 1):
            with trio.fail_after(limits.idle_timeout):
                await _wait_for_bytes(conn, outer)
            with trio.fail_after(limits.request_timeout):
                last = served == limits.max_requests
                if not await _serve_one(handler, conn, outer, limits, peer, close=last):
                    return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # the client asked to close (or HTTP/1.0)
            conn.start_next_cycle()
    except (EOFError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError,
            OSError, h11.LocalProtocolError):
        pass
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(outer)


async def serve(handler: Handler, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                limits: Limits | None = None,
                task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    limits = limits or Limits()
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=512)
    slots = trio.CapacityLimiter(limits.connections)

    async def one(stream: trio.SocketStream) -> None:
        async with slots:
            await _handle(handler, stream, limits, ssl_context)

    async with trio.open_nursery() as n:
        n.start_soon(trio.serve_listeners, one, listeners)
        task_status.started(listeners[0].socket.getsockname()[1])
