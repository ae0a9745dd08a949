"""The small HTTP/1.1 server behind the helper and the lab's DoH, and the client the probe talks to them with."""

from __future__ import annotations

import ssl
from functools import partial

import pytest
import trio

from probe.control.h11server import Limits, Request, Response, serve
from probe.control.transport import ReplyTooLarge, ServiceClient


async def _echo(req: Request) -> Response:
    return Response(200, f"{req.method} {req.path}".encode(), (("content-type", "text/plain"),))


def _get(path: str, *extra: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "host: t", *extra, "", ""]).encode()


async def _read_all(stream: trio.SocketStream) -> bytes:
    """Everything until the server closes; a server that keeps the connection open fails the test by timeout."""
    out = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            out += chunk
    return out


async def _server(nursery: trio.Nursery, **limits: float) -> int:
    return await nursery.start(partial(serve, _echo, "127.0.0.1", 0, limits=Limits(**limits)))  # type: ignore[arg-type]


async def test_requests_share_a_connection_until_the_client_asks_to_close(nursery):
    port = await _server(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(_get("/one") + _get("/two") + _get("/three", "connection: close"))
    replies = await _read_all(stream)
    assert replies.count(b"HTTP/1.1 200") == 3
    assert replies.index(b"GET /one") < replies.index(b"GET /two") < replies.index(b"GET /three")
    assert replies.lower().count(b"connection: close") == 1  # only the last answer ends the connection


async def test_the_last_allowed_request_is_answered_with_connection_close(nursery):
    port = await _server(nursery, max_requests=2)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(_get("/a") + _get("/b") + _get("/c"))
    replies = await _read_all(stream)
    assert replies.count(b"HTTP/1.1 200") == 2 and b"GET /c" not in replies
    assert replies.lower().rstrip().endswith(b"get /b") and b"connection: close" in replies.lower()


async def test_an_idle_connection_is_closed_and_a_bad_request_ends_its_connection(nursery):
    port = await _server(nursery, idle_timeout=0.3)
    idle = await trio.open_tcp_stream("127.0.0.1", port)
    await idle.send_all(_get("/x"))
    started = trio.current_time()
    assert (await _read_all(idle)).count(b"HTTP/1.1 200") == 1
    assert 0.25 < trio.current_time() - started < 3
    bad = await trio.open_tcp_stream("127.0.0.1", port)
    await bad.send_all(b"NOT HTTP AT ALL\r\n\r\n" + _get("/after"))
    reply = await _read_all(bad)
    assert reply.startswith(b"HTTP/1.1 400") and b"GET /after" not in reply


async def test_control_transport_reuses_connections_and_survives_the_server_closing_idle_ones(nursery):
    async def handler(req: Request) -> Response:
        return Response(200, req.body[::-1] * (1000 if req.body == b"big" else 1))

    port = await nursery.start(partial(serve, handler, "127.0.0.1", 0, limits=Limits(idle_timeout=0.3)))
    client = ServiceClient(f"http://127.0.0.1:{port}/q", ssl_context=ssl.create_default_context(), size=2,
                           max_reply=2000)
    assert [(await client.post(b"abc", "text/plain")).body for _ in range(3)] == [b"cba"] * 3
    assert len(client._idle) == 1, "three requests in a row went over one kept connection"
    await trio.sleep(0.6)  # the server closes the idle connection; the next request must not fail for it
    assert (await client.post(b"xyz", "text/plain")).body == b"zyx"
    with pytest.raises(ReplyTooLarge):
        await client.post(b"big", "text/plain")
    await client.aclose()
