"""Measuring a run's URLs: slots, settling late DNS replies, and worker processes (`--workers`).

In one process, `concurrency` slots pull URLs from one iterator. A slot measures its URL up to the DNS late
window (measure.measure_unsettled) and hands it to the settler, which waits until the window has passed,
judges the URL and passes the verdict on: the window holds no slot, no socket of its own and not the writer.

With `--workers N` the run's own process measures one share and N-1 worker processes (`probe.workers.main`)
the others. Each share has every N-th URL and 1/N of the run's concurrency, of each resolver's DNS slots and
of the control's connection pools, so the run's limits hold for all processes together. Workers send their
verdicts back over a pipe; the run's process keeps the one writer.
"""

from __future__ import annotations

import heapq
import math
import os
import pickle
import signal
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio

from .analysis import Matcher, analyse
from .control.client import ControlClient
from .measure import MeasureConfig, Unsettled, measure_unsettled
from .models import Observations, Target, Verdict
from .netpolicy import NetPolicy
from .steps import dns
from .steps.dns_socket import DnsSockets
from .steps.tls import TlsContexts

MAX_DEFAULT_WORKERS = 4  # beyond this the one writer, not measuring, is the bottleneck
_FRAME = struct.Struct("!I")
_WORKER = "from probe.workers import main; main()"

Judged = tuple[Observations, Verdict]


def default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cores))


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasureSpec:
    """What every measuring process needs to build its MeasureConfig (plain data: it goes to the workers)."""

    resolvers: tuple[dns.Resolver, ...]
    allow_net: tuple[str, ...] = ()
    ca_file: str | None = None
    helper: str | None = None
    doh: tuple[str, ...] = ()
    timeout: float = 10.0
    dns_timeout: float = 4.0
    late_window: float = 0.5
    body_cap: int = 512 * 1024
    decoy_sni: str | None = "example.com"
    concurrency: int = 1  # URLs in flight, the whole run's
    dns_in_flight: int = 64  # queries awaiting a first reply per resolver, the whole run's
    workers: int = 1

    def part(self, total: int, index: int) -> int:
        """Share `index`'s part of a run-wide limit (at least 1; the parts add up to `total`)."""
        return max(1, total // self.workers + (1 if index < total % self.workers else 0))


@asynccontextmanager
async def open_measuring(spec: MeasureSpec, index: int = 0) -> AsyncIterator[MeasureConfig]:
    """The measuring config of share `index`: TLS contexts, control pools, DNS sockets and slots."""
    contexts = TlsContexts.build(spec.ca_file)
    async with ControlClient.open(contexts.http, helper_url=spec.helper, doh_urls=spec.doh,
                                  timeout=spec.dns_timeout, share=spec.workers) as control_client, \
            DnsSockets.open() as sockets:
        yield MeasureConfig(
            resolvers=spec.resolvers, policy=NetPolicy.from_cidrs(spec.allow_net), contexts=contexts,
            control=control_client if (spec.doh or spec.helper) else None, timeout=spec.timeout,
            dns_timeout=spec.dns_timeout, late_window=spec.late_window, body_cap=spec.body_cap,
            decoy_sni=spec.decoy_sni, dns_sockets=sockets,
            dns_slots={r.label: trio.CapacityLimiter(spec.part(spec.dns_in_flight, index)) for r in spec.resolvers},
        )


async def measure_share(targets: Iterator[Target], cfg: MeasureConfig, concurrency: int, matcher: Matcher | None,
                        out: trio.MemorySendChannel[Judged]) -> None:
    """Measure `targets` with `concurrency` slots; send each judged URL to `out` once its late window is over."""
    settle_send, settle_recv = trio.open_memory_channel[Unsettled](math.inf)

    async def slot(to_settle: trio.MemorySendChannel[Unsettled]) -> None:
        async with to_settle:
            for target in targets:
                await to_settle.send(await measure_unsettled(target, cfg))

    async with out, trio.open_nursery() as nursery:
        nursery.start_soon(_settle, settle_recv, matcher, out.clone())
        async with settle_send, trio.open_nursery() as slots:
            for _ in range(concurrency):
                slots.start_soon(slot, settle_send.clone())


async def _settle(recv: trio.MemoryReceiveChannel[Unsettled], matcher: Matcher | None,
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
                    await out.send((obs, analyse(obs, matcher)))
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


async def run_worker(spec: MeasureSpec, index: int, targets: list[Target], matcher: Matcher | None,
                     out: trio.MemorySendChannel[Judged]) -> int:
    """Measure share `index` in a worker process; send its verdicts to `out`; return its exit status."""
    job = pickle.dumps((spec, index, targets, matcher), protocol=pickle.HIGHEST_PROTOCOL)
    async with out, trio.open_nursery() as nursery:
        proc = await nursery.start(partial(trio.run_process, [sys.executable, "-c", _WORKER], stdin=job,
                                           stdout=subprocess.PIPE, check=False))
        buffer = bytearray()
        async for chunk in proc.stdout:
            buffer += chunk
            while len(buffer) >= _FRAME.size:
                (size,) = _FRAME.unpack_from(buffer)
                if len(buffer) < _FRAME.size + size:
                    break
                judged = pickle.loads(buffer[_FRAME.size:_FRAME.size + size])
                del buffer[:_FRAME.size + size]
                await out.send(judged)
    return int(proc.returncode)


async def _orphaned(parent: int) -> None:
    """Return once the run's process is gone (even killed by SIGKILL): a worker outlives no run.

    (PR_SET_PDEATHSIG would fire when the *thread* that started the worker ends, and trio starts processes
    from a thread.)
    """
    while os.getppid() == parent:
        await trio.sleep(0.5)


async def _work(spec: MeasureSpec, index: int, targets: list[Target], matcher: Matcher | None,
                parent: int) -> None:
    pipe = trio.lowlevel.FdStream(os.dup(1))
    send, recv = trio.open_memory_channel[Judged](spec.part(spec.concurrency, index))
    async with open_measuring(spec, index) as cfg, trio.open_nursery() as nursery:
        nursery.start_soon(measure_share, iter(targets), cfg, spec.part(spec.concurrency, index), matcher, send)
        nursery.start_soon(_stop_when_orphaned, parent, nursery.cancel_scope)
        async with recv, pipe:
            async for judged in recv:
                frame = pickle.dumps(judged, protocol=pickle.HIGHEST_PROTOCOL)
                await pipe.send_all(_FRAME.pack(len(frame)) + frame)
        nursery.cancel_scope.cancel()


async def _stop_when_orphaned(parent: int, scope: trio.CancelScope) -> None:
    await _orphaned(parent)
    scope.cancel()


def main() -> None:
    """A worker process: the job comes on stdin, framed pickles of (observations, verdict) go to stdout."""
    # Ctrl-C reaches the whole process group: the run's process handles it and ends its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    spec, index, targets, matcher = pickle.load(sys.stdin.buffer)
    sys.stdout = sys.stderr  # stdout is the pipe to the run's process: nothing else may write there
    trio.run(_work, spec, index, targets, matcher, parent)

