"""Measuring processes (`--workers N`): the run's own process and N-1 workers, each a trio loop.

Each process measures one share: every N-th URL, with 1/N of the run's concurrency, of each resolver's DNS
slots and of the control's connection pools, so the run's limits hold for all processes together. A worker
gets its job (a MeasureSpec, its URLs and the signature matcher) on stdin and sends back framed pickles of
(observations, verdict); the run's process keeps the one writer, so resume and offline handling are the same
as with one process. A worker ends when its run's process is gone, even after a SIGKILL.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio

from ..analysis import Judge
from ..control.client import ControlClient
from ..models import Target
from .netpolicy import NetPolicy
from .slots import Judged, measure_all
from .steps import dns, locate
from .steps.dns_socket import DnsSockets
from .steps.quic import QuicTrust
from .steps.tls import TlsContexts
from .url import MeasureConfig

MAX_DEFAULT_WORKERS = 4  # beyond this the one writer, not measuring, is the bottleneck
LOCATES_IN_FLIGHT = 8  # the whole run's (steps/locate.py): 2 sockets per TTL each, beside the URLs' own
LOCATE_FDS = LOCATES_IN_FLIGHT * 2 * locate.MAX_TTL
URLS_PER_EXTRA_WORKER = 250  # a worker's start-up (~0.4 s of CPU) pays off only on a list this long
_FRAME = struct.Struct("!I")
_WORKER = "from probe.measure.workers import main; main()"


def default_workers(urls: int) -> int:
    """Half the cores this process may use (at most MAX_DEFAULT_WORKERS), fewer for a short list.

    Half, because the kernel's network stack, the writer and the rest of the machine need the other half: on
    two cores a second worker made the lab benchmark no faster (6.97 s against 6.88 s) for 27% more CPU.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cores // 2, 1 + urls // URLS_PER_EXTRA_WORKER))


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
    quic: bool = True  # QUIC handshakes for https URLs (steps/quic.py)
    locate: bool = True
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
            decoy_sni=spec.decoy_sni, dns_sockets=sockets, quic=QuicTrust.build(spec.ca_file) if spec.quic else None,
            locate=spec.locate,
            locate_slots=trio.CapacityLimiter(spec.part(LOCATES_IN_FLIGHT, index)),
            dns_slots={r.label: trio.CapacityLimiter(spec.part(spec.dns_in_flight, index)) for r in spec.resolvers},
        )


async def run_worker(spec: MeasureSpec, index: int, targets: list[Target], judge: Judge,
                     out: trio.MemorySendChannel[Judged]) -> int:
    """Measure share `index` in a worker process; send its verdicts to `out`; return its exit status."""
    job = pickle.dumps((spec, index, targets, judge), protocol=pickle.HIGHEST_PROTOCOL)
    async with out, trio.open_nursery() as nursery:
        # -P: the current directory is not put on sys.path, so a `probe/` or `trio.py` there is never imported.
        proc = await nursery.start(partial(trio.run_process, [sys.executable, "-P", "-c", _WORKER], stdin=job,
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


async def _stop_when_orphaned(parent: int, scope: trio.CancelScope) -> None:
    """Cancel `scope` once the run's process is gone (PR_SET_PDEATHSIG would fire when the *thread* that
    started the worker ends, and trio starts processes from a thread)."""
    while os.getppid() == parent:
        await trio.sleep(0.5)
    scope.cancel()


async def _work(spec: MeasureSpec, index: int, targets: list[Target], judge: Judge, parent: int) -> None:
    pipe = trio.lowlevel.FdStream(os.dup(1))
    concurrency = spec.part(spec.concurrency, index)
    send, recv = trio.open_memory_channel[Judged](concurrency)
    async with open_measuring(spec, index) as cfg, trio.open_nursery() as nursery:
        nursery.start_soon(measure_all, iter(targets), cfg, concurrency, judge, send)
        nursery.start_soon(_stop_when_orphaned, parent, nursery.cancel_scope)
        async with recv, pipe:
            async for judged in recv:
                frame = pickle.dumps(judged, protocol=pickle.HIGHEST_PROTOCOL)
                await pipe.send_all(_FRAME.pack(len(frame)) + frame)
        nursery.cancel_scope.cancel()


def main() -> None:
    """A worker process: the job comes on stdin, framed pickles of (observations, verdict) go to stdout."""
    # Ctrl-C reaches the whole process group: the run's process handles it and ends its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    spec, index, targets, judge = pickle.load(sys.stdin.buffer)
    sys.stdout = sys.stderr  # stdout is the pipe to the run's process: nothing else may write there
    trio.run(_work, spec, index, targets, judge, parent)
