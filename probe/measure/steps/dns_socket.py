"""The run's UDP sockets to each resolver, and the tasks that read them.

Listening for late (injected) replies used to keep a socket and a URL's slot for the whole window after the
first answer. Here the queries to a resolver go out of one connected socket, and one task reads its replies,
matching each to its query by id and question. A query stays registered after its first reply until its
window has passed, so a late reply is still recorded against it while the URL that asked has moved on: the
window holds neither a concurrency slot nor a file descriptor. Ids are unique among the registered queries
of a socket, so a reply can only ever match the query it answers.

A socket carries ROTATE_AFTER queries, then the next ones go out of a new one (a new random source port) while
the old one drains: a forger off the path must guess the port as well as the 16-bit id, as with a socket per
query, and the number of sockets stays small.
"""

from __future__ import annotations

import errno
import math
import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from .dns_wire import HEADER, query_wire, read, rejection

MAX_REPLY = 65535
ROTATE_AFTER = 256
Reply = tuple[dict[str, Any], bool]  # what a reply says (dns_wire.read), and its TC flag
_ICMP_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


@dataclass(slots=True, eq=False)
class Exchange:
    """One query on a shared socket: its first reply, and the replies that follow within the window."""

    id: int
    question: bytes  # see dns_wire.question()
    qtype: str
    clock: Callable[[], float]  # the asking URL's clock, for the late replies' times
    first: Reply | None = None
    error: OSError | None = None  # the socket broke before a first reply (ICMP errors do not count)
    answered: trio.Event = field(default_factory=trio.Event)
    answered_at: float = 0.0  # trio time of the first reply
    listen_until: float = math.inf  # trio time; late replies after it are not this query's concern
    # (what it says, URL clock): replies after the first within the window, and replies rejected at any time
    late: list[tuple[dict[str, Any], float]] = field(default_factory=list)


class ResolverSocket:
    """The one connected UDP socket to a resolver, and its registered exchanges."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.exchanges: dict[int, Exchange] = {}
        self.broken: OSError | None = None
        # The last ICMP error the socket reported (trio time, error). A connected UDP socket cannot say which
        # query it answers, so it fails none: a query that gets no reply by its deadline reports it instead of
        # a timeout when it came after the query was sent (see dns._first_reply).
        self.icmp: tuple[float, OSError] | None = None
        self.asked = 0
        self.retired = False  # no new queries; closed once the registered ones are released
        self._sending = trio.StrictFIFOLock()  # trio lets only one task wait to write on a socket

    def register(self, question: bytes, qtype: str, clock: Callable[[], float]) -> Exchange:
        while True:
            qid = random.randrange(65536)
            if qid not in self.exchanges:
                break
        ex = Exchange(id=qid, question=question, qtype=qtype, clock=clock)
        self.exchanges[qid] = ex
        self.asked += 1
        return ex

    def release(self, ex: Exchange) -> None:
        if self.exchanges.get(ex.id) is ex:
            del self.exchanges[ex.id]
        if self.retired and not self.exchanges:
            self.sock.close()  # its reader ends (ClosedResourceError)

    @staticmethod
    def wire(ex: Exchange) -> bytes:
        return query_wire(ex.id, ex.question)

    async def send(self, wire: bytes) -> None:
        async with self._sending:
            try:
                await self.sock.send(wire)
            except OSError as e:
                if e.errno not in _ICMP_ERRNOS:
                    raise
                # Linux hands a pending ICMP error to whichever call comes next: this datagram was not sent.
                self.icmp = (trio.current_time(), e)
                await self.sock.send(wire)

    async def serve(self) -> None:
        while True:
            try:
                data = await self.sock.recv(MAX_REPLY)
            except trio.ClosedResourceError:
                return
            except OSError as e:
                if e.errno in _ICMP_ERRNOS:
                    self.icmp = (trio.current_time(), e)
                    continue
                # Anything else ends this socket (the next query opens another): it is the outcome of every
                # query still waiting for its first reply here.
                self.broken = e
                for ex in list(self.exchanges.values()):
                    if ex.first is None and ex.error is None:
                        ex.error = e
                        ex.answered.set()
                return
            # The id and the question, compared as bytes (names case-insensitively) before any parsing.
            found = self.exchanges.get(int.from_bytes(data[:2], "big")) if len(data) >= HEADER.size else None
            if (found is None or data[4:6] != b"\0\1"
                    or data[12:12 + len(found.question)].lower() != found.question):
                continue
            reply = read(data, found.qtype)
            if reply is None:
                continue
            ex = found
            why = rejection(data, reply[0])
            if why is not None:  # evidence, never the answer: the query goes on waiting for a real one
                ex.late.append(({**reply[0], "rejected": why}, ex.clock()))
                continue
            if ex.first is None and ex.error is None:
                ex.first = reply
                ex.answered_at = trio.current_time()
                ex.answered.set()
            elif trio.current_time() <= ex.listen_until:
                ex.late.append((reply[0], ex.clock()))


class DnsSockets:
    """The run's resolver sockets, opened on first use; their readers live in the run's nursery."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._sockets: dict[tuple[str, int], ResolverSocket] = {}
        self._retired: list[ResolverSocket] = []  # still draining
        self._opening: dict[tuple[str, int], trio.Event] = {}

    @classmethod
    @asynccontextmanager
    async def open(cls) -> AsyncIterator[DnsSockets]:
        async with trio.open_nursery() as nursery:
            sockets = cls(nursery)
            try:
                yield sockets
            finally:
                nursery.cancel_scope.cancel()
                for s in [*sockets._sockets.values(), *sockets._retired]:
                    s.sock.close()

    async def get(self, ip: str, port: int) -> ResolverSocket:
        """The socket to (ip, port); raises OSError when one cannot be opened (that query's failure)."""
        key = (ip, port)
        current = self._sockets.get(key)
        if current is not None and current.broken is not None:
            self._sockets.pop(key).sock.close()
        elif current is not None and current.asked >= ROTATE_AFTER:
            current.retired = True  # it drains its registered queries, then closes itself
            del self._sockets[key]
            if current.exchanges:
                self._retired = [r for r in self._retired if r.exchanges] + [current]
            else:
                current.sock.close()
        while key not in self._sockets:
            if key in self._opening:
                await self._opening[key].wait()
                continue
            self._opening[key] = trio.Event()
            try:
                sock = trio.socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    await sock.connect((ip, port))
                except OSError:
                    sock.close()
                    raise
                rs = ResolverSocket(sock)
                self._sockets[key] = rs
                self._nursery.start_soon(rs.serve)
            finally:
                self._opening.pop(key).set()
        return self._sockets[key]
