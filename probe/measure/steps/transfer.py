"""Transfer evidence: when the bytes of a response (or a TLS handshake) came, and how many.

A throttled site answers, slowly: the page is the right page and every step succeeds, so only the timing tells.
OONI's LTE records the same thing as `network_events` (each read with its byte count and time) and a download
speed; its throttling analysis (design dd-007) compares speeds afterwards. We keep, per HTTP hop and per TLS
handshake, the time to the first byte, the bytes read, the time from the first byte to the last, and the first
reads (capped: a 512 KiB body is read in hundreds of pieces and the first ones show the shape).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

READ_EVENTS = 16  # the first reads kept with their times (OONI's LTE keeps the early ones too)
# A gap between two reads this long is a stall: Linux's shortest retransmission timeout is 200 ms, so a lost
# packet that only a timeout recovers leaves a gap at least this long between bursts at the line's speed, while
# a throttled flow comes steadily (a packet every few tens of ms). Stalls are summed apart ("stalled").
STALL = 0.2


@dataclass(slots=True)
class Reads:
    """Counts the reads of one response (or handshake); `clock` is the measurement's."""

    clock: Callable[[], float]
    sent: float | None = None  # when the request went out (HTTP); the time to the first byte counts from it
    first: float | None = None
    last: float | None = None
    bytes: int = 0
    stalled: float = 0.0  # the sum of the gaps of STALL or longer between reads
    events: list[list[float]] = field(default_factory=list)

    def read(self, n: int) -> None:
        if n <= 0:
            return
        now = self.clock()
        if self.first is None:
            self.first = now
        elif self.last is not None and now - self.last >= STALL:
            self.stalled += now - self.last
        self.last = now
        self.bytes += n
        if len(self.events) < READ_EVENTS:
            self.events.append([now, n])

    def record(self) -> dict[str, Any]:
        """The stored form (HttpHop.transfer): {} when nothing was read."""
        if self.first is None or self.last is None:
            return {}
        out: dict[str, Any] = {"bytes": self.bytes, "duration": round(self.last - self.first, 4),
                               "events": [list(e) for e in self.events]}
        if self.sent is not None:
            out["ttfb"] = round(self.first - self.sent, 4)
        if self.stalled:
            out["stalled"] = round(self.stalled, 4)
        return out


class CountingStream(trio.abc.Stream):
    """A stream that tells `reads` (when set) about every read: under trio.SSLStream it sees the bytes as they
    come off the wire (a handshake's, a response's)."""

    def __init__(self, inner: trio.abc.Stream, reads: Reads | None) -> None:
        self.inner = inner
        self.reads = reads

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        if self.reads is not None:
            self.reads.read(len(data))
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()

