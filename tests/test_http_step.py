"""The HTTP step against loopback servers that misbehave in the ways real ones do.

Each server here is a plain TCP listener written for the case; the step under test is `probe.measure.steps.http.fetch`
as measure.py calls it.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Awaitable, Callable

import trio

from probe.measure.netpolicy import NetPolicy
from probe.measure.steps import http
from probe.measure.steps.tls import TlsContexts

Handler = Callable[[trio.SocketStream, list[bytes]], Awaitable[None]]


async def _serve(handler: Handler, requests: list[bytes], *, once: bool = False,
                 task_status: trio.TaskStatus[tuple[int, trio.SocketListener]] = trio.TASK_STATUS_IGNORED) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = listeners[0]
    task_status.started((listener.socket.getsockname()[1], listener))
    async with listener, trio.open_nursery() as n:
        while True:
            stream = await listener.accept()
            n.start_soon(handler, stream, requests)
            if once:
                await listener.aclose()  # further connections are refused
                return


async def _read_request(stream: trio.SocketStream, requests: list[bytes]) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some(65536)
    requests.append(data)


async def _fetch(url: str, port: int, connection: trio.SocketStream | None = None) -> tuple[http.HttpHop, ...]:
    async def no_names(name: str) -> tuple[str | None, list[str]]:
        return "dns_no_answer", []

    return await http.fetch(url.format(port=port), hostname="site.test", ip="127.0.0.1", connection=connection,
                            resolve=no_names, policy=NetPolicy.from_cidrs(["127.0.0.0/8"]),
                            contexts=TlsContexts.build(None), timeout=5, body_cap=1 << 20, max_redirects=3,
                            clock=trio.current_time)


async def test_a_response_head_over_16_kib_sent_in_pieces_is_read():
    async def many_cookies(stream: trio.SocketStream, requests: list[bytes]) -> None:
        await _read_request(stream, requests)
        head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"Set-Cookie: c%d=%s\r\n" % (i, b"v" * 300) for i in range(60))
        head += b"Content-Length: 2\r\n\r\nok"
        for i in range(0, len(head), 1400):  # as TCP segments arrive
            await stream.send_all(head[i:i + 1400])
            await trio.sleep(0.005)
        await stream.aclose()

    requests: list[bytes] = []
    async with trio.open_nursery() as n:
        port, _ = await n.start(_serve, many_cookies, requests)
        (hop,) = await _fetch("http://site.test:{port}/", port)
        n.cancel_scope.cancel()
    assert len(b"".join(requests)) > 0
    assert (hop.status, hop.failure, hop.body_length) == (200, None, 2)
    assert len([k for k, _ in hop.headers if k == "set-cookie"]) == 60


async def test_a_body_cut_short_is_an_eof_error_in_ooni_s_words():
    async def short(stream: trio.SocketStream, requests: list[bytes]) -> None:
        await _read_request(stream, requests)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
        await stream.aclose()

    async with trio.open_nursery() as n:
        port, _ = await n.start(_serve, short, [])
        (hop,) = await _fetch("http://site.test:{port}/", port)
        n.cancel_scope.cancel()
    assert (hop.status, hop.failure, hop.failed_step) == (200, "eof_error", "http")


async def test_the_request_target_is_encoded_as_browsers_send_it():
    async def record(stream: trio.SocketStream, requests: list[bytes]) -> None:
        await _read_request(stream, requests)
        await stream.send_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        await stream.aclose()

    requests: list[bytes] = []
    async with trio.open_nursery() as n:
        port, _ = await n.start(_serve, record, requests)
        await _fetch("http://site.test:{port}/[x]|y^{{z}} `é/%41?a=[1]&b=|{{}}^ \"q\"", port)
        n.cancel_scope.cancel()
    line = requests[0].split(b"\r\n")[0]
    # WHATWG's path set encodes space " # < > ? ` { }; the query set only space " # < >; "%41" is kept.
    assert line == b"GET /[x]|y^%7Bz%7D%20%60%C3%A9/%41?a=[1]&b=|{}^%20%22q%22 HTTP/1.1"
    assert b"\r\nHost: site.test:%d\r\n" % port in requests[0]


async def test_a_reset_on_the_tcp_step_s_connection_stays_the_evidence_when_the_retry_is_refused():
    """A censor that resets the request and then refuses new connections: the hop reports the reset."""

    async def reset(stream: trio.SocketStream, requests: list[bytes]) -> None:
        await _read_request(stream, requests)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()  # with linger 0: a RST

    requests: list[bytes] = []
    async with trio.open_nursery() as n:
        port, _ = await n.start(lambda task_status: _serve(reset, requests, once=True, task_status=task_status))
        first = await trio.open_tcp_stream("127.0.0.1", port)  # the TCP step's connection
        await trio.sleep(0.05)  # the listener is closed: a retry on a new connection is refused
        (hop,) = await _fetch("http://site.test:{port}/", port, connection=first)
        n.cancel_scope.cancel()
    assert len(requests) == 1
    assert (hop.status, hop.failure, hop.failed_step) == (None, "connection_reset", "http")
