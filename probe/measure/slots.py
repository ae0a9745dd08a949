"""Measuring a list with a fixed number of slots, and settling late DNS replies off the slots.

`concurrency` slots pull URLs from one iterator (memory stays flat for 10,000-URL lists). A slot measures its
URL up to the DNS late window (measure.measure_unsettled) and hands it to the settler, which waits until the
window has passed, judges the URL and passes the verdict on: the window holds no slot, no socket of its own
and not the writer. Late replies are heard meanwhile on the run's resolver sockets (steps/dns_socket.py).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator

import trio

from ..analysis import Judge
from ..models import Observations, Target, Verdict
from .url import MeasureConfig, Unsettled, measure_unsettled

Judged = tuple[Observations, Verdict]


async def measure_all(targets: Iterator[Target], cfg: MeasureConfig, concurrency: int, judge: Judge,
                      out: trio.MemorySendChannel[Judged]) -> None:
    """Measure `targets` with `concurrency` slots; send each judged URL to `out` once its late window is over."""
    # Bounded, so that a slow writer holds the slots back instead of letting measured URLs pile up here.
    to_settle, settling = trio.open_memory_channel[Unsettled](concurrency)

    async def slot(send: trio.MemorySendChannel[Unsettled]) -> None:
        async with send:
            for target in targets:
                await send.send(await measure_unsettled(target, cfg))

    async with out, trio.open_nursery() as nursery:
        nursery.start_soon(_settle, settling, judge, out.clone())
        async with to_settle, trio.open_nursery() as slots:
            for _ in range(concurrency):
                slots.start_soon(slot, to_settle.clone())


async def _settle(recv: trio.MemoryReceiveChannel[Unsettled], judge: Judge,
                  out: trio.MemorySendChannel[Judged]) -> None:
    """Judge each URL once its late window has passed, earliest window first."""
    waiting: list[tuple[float, int, Unsettled]] = []
    arrived = 0
    more = True
    async with recv, out:
        try:
            while more or waiting:
                if waiting and waiting[0][0] <= trio.current_time():
                    obs = heapq.heappop(waiting)[2].settle()
                    await out.send((obs, judge(obs)))
                    continue
                if not more:
                    await trio.sleep_until(waiting[0][0])
                    continue
                with trio.move_on_at(waiting[0][0] if waiting else math.inf):
                    try:
                        unsettled = await recv.receive()
                    except trio.EndOfChannel:
                        more = False
                        continue
                    arrived += 1
                    heapq.heappush(waiting, (unsettled.settle_at, arrived, unsettled))
        finally:
            for _, _, unsettled in waiting:  # cut short: not stored, so --resume measures it again
                unsettled.abandon()
