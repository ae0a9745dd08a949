"""Running a list: scheduling, limits, signals, progress and the one writer task.

A fixed pool of `concurrency` slots pulls URLs from one iterator (memory stays flat for 10,000-URL lists);
each URL gets its own nursery in measure.py, and with `--workers N` the URLs are shared among N processes
(workers.py). Finished measurements go through a channel to a single writer that commits them in one
transaction every BATCH_S at most (WAL), so a SIGKILL loses only URLs still in flight and the last batch, and
a signal or the runtime budget stops measuring without losing anything already measured. A URL cut short is
not stored: it stays to be measured by `--resume`.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils
import trio

from . import __version__, storage
from .analysis import RULES_VERSION, Matcher
from .control.client import DEFAULT_DOH
from .models import Observations, Target, Verdict
from .steps import dns
from .workers import MeasureSpec, measure_share, open_measuring, run_worker

DNS_IN_FLIGHT = 64  # per resolver: what a home router's forwarder takes without dropping
FDS_PER_URL = 16  # DNS sockets + a few TCP/TLS + HTTP; a generous bound so EMFILE stays out of reach
MAX_DEFAULT_CONCURRENCY = 256
BATCH_S = 0.25  # the writer commits at least this often: what a SIGKILL can lose beyond the URLs in flight


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    db_path: str = "results/probe.db"
    resolvers: tuple[str, ...] = ()  # measured in addition to the system resolver
    system_resolver: bool = True
    helper: str | None = None
    doh: tuple[str, ...] | None = None  # None: DEFAULT_DOH; () with no helper: no control
    no_control: bool = False
    ca_file: str | None = None
    concurrency: int | None = None
    timeout: float = 10.0
    dns_timeout: float = 4.0
    late_window: float = 0.5
    max_runtime: float | None = None
    allow_net: tuple[str, ...] = ()
    decoy_sni: str | None = "example.com"
    body_cap: int = 512 * 1024
    keep_bodies: str = "suspect"  # all | suspect (any status but ok) | none
    min_free_mb: int = 64  # stop before the disk under the database is this full
    ip_service: str | None = None  # what-is-my-IP service for the vantage ASN lookup; None: no lookup
    workers: int = 1  # measuring processes (this one included); see workers.py


@dataclass(slots=True)
class RunSummary:
    run_id: int
    status: str  # done | interrupted | partial | offline | disk-full
    counts: Counter[str] = field(default_factory=Counter)
    measured: int = 0
    total: int = 0
    signal: int | None = None
    wall_s: float = 0.0


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def default_concurrency(fd_limit: int) -> int:
    return max(1, min(MAX_DEFAULT_CONCURRENCY, (fd_limit - 64) // FDS_PER_URL))


def json_line(run_id: int, obs: Observations, verdict: Verdict) -> str:
    return json.dumps({
        "run_id": run_id, "url": obs.target.url, "category": obs.target.category, "status": verdict.status,
        "layer": verdict.layer, "detail": verdict.detail, "fingerprint": verdict.fingerprint,
        "control": verdict.control, "runtime_s": obs.runtime_s, "rule": verdict.rule,
        "evidence": verdict.evidence,
    }, ensure_ascii=False)


def network_answered(obs: Observations) -> bool:
    """Did anything on the network answer us at all? (Used to tell an offline vantage from blocking.)"""
    # Any DNS reply counts, NXDOMAIN and SERVFAIL included: a resolver that answers is a network that works.
    return (any(q.rcode is not None for q in obs.dns) or any(c.failure is None for c in obs.tcp)
            or any(h.status is not None for h in obs.http))


class Progress:
    """A bar on a TTY; on a pipe or log, one line every `every` seconds."""

    def __init__(self, total: int, stream: Any = None, every: float = 10.0, enabled: bool = True) -> None:
        self.total, self.done, self.counts = total, 0, Counter[str]()
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every, self.enabled = every, enabled
        self._last = 0.0

    def update(self, status: str) -> None:
        self.done += 1
        self.counts[status] += 1
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty or now - self._last >= self.every or self.done == self.total:
            self._last = now
            counts = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
            end = "\r" if self.tty and self.done < self.total else "\n"
            width = 30
            bar = "#" * (width * self.done // max(self.total, 1))
            prefix = f"[{bar:<{width}}] " if self.tty else ""
            self.stream.write(f"{prefix}{self.done}/{self.total} {counts}{end}")
            self.stream.flush()


def _resolvers(opts: RunOptions) -> tuple[dns.Resolver, ...]:
    """The system resolver (what the volunteer's applications use) first, then every --resolver."""
    chosen = [dns.Resolver.parse(r) for r in opts.resolvers]
    system = dns.system_resolver() if opts.system_resolver else None
    if system is not None and all((r.ip, r.port) != (system.ip, system.port) for r in chosen):
        chosen.insert(0, system)
    return tuple(chosen)


def _keep_body(mode: str, verdict: Verdict) -> bool:
    return mode == "all" or (mode == "suspect" and verdict.status != "ok")


async def run_async(
    db: sqlite_utils.Database,
    targets: list[Target],
    opts: RunOptions,
    *,
    run_id: int | None = None,
    emit: Callable[[str], None] | None = None,
    progress: Progress | None = None,
    matcher: Matcher | None = None,
) -> RunSummary:
    """Measure `targets` into `db` (a new run, or more of `run_id` when resuming)."""
    fd_limit = raise_fd_limit()
    concurrency = opts.concurrency or default_concurrency(fd_limit)
    resolvers = _resolvers(opts)
    resumed = run_id is not None
    if run_id is None:
        run_id = storage.create_run(db, options=asdict(opts), software_version=__version__,
                                    rules_version=RULES_VERSION, targets=targets,
                                    resolvers=[r.label for r in resolvers])
    summary = RunSummary(run_id=run_id, status="done", total=len(targets))
    doh = () if opts.no_control else (DEFAULT_DOH if opts.doh is None else opts.doh)
    workers = max(1, min(opts.workers, len(targets), concurrency))  # never more URLs in flight than asked
    spec = MeasureSpec(
        resolvers=resolvers, allow_net=opts.allow_net, ca_file=opts.ca_file,
        helper=None if opts.no_control else opts.helper, doh=tuple(doh), timeout=opts.timeout,
        dns_timeout=opts.dns_timeout, late_window=opts.late_window, body_cap=opts.body_cap,
        decoy_sni=opts.decoy_sni, concurrency=concurrency, dns_in_flight=DNS_IN_FLIGHT, workers=workers)
    started = time.monotonic()
    any_answer = any_attempt = False
    failed_workers: list[int] = []

    async with open_measuring(spec) as cfg:
        if opts.ip_service and resolvers and not resumed:
            await _lookup_vantage(db, run_id, opts, resolvers[0], cfg.contexts.http)
        send, recv = trio.open_memory_channel[tuple[Observations, Verdict]](concurrency * 2)
        stop = trio.CancelScope()

        async def worker_process(index: int, out: trio.MemorySendChannel[tuple[Observations, Verdict]]) -> None:
            code = await run_worker(spec, index, targets[index::workers], matcher, out)
            if code != 0:
                failed_workers.append(code)

        async def writer() -> None:
            nonlocal any_answer, any_attempt
            async with recv:
                while True:
                    try:
                        batch = [await recv.receive()]
                    except trio.EndOfChannel:
                        return
                    # One transaction for what arrives within BATCH_S: a commit (an fsync of the WAL) per URL
                    # would cost more than measuring it.
                    with trio.move_on_after(BATCH_S):
                        try:
                            while True:
                                batch.append(await recv.receive())
                        except trio.EndOfChannel:
                            pass
                    if summary.status == "disk-full" or _disk_low(opts):
                        # Measure nothing more and write nothing more: what is committed stays intact, and
                        # the URLs dropped here stay unmeasured for --resume.
                        summary.status = "disk-full"
                        stop.cancel()
                        continue
                    with db.atomic():
                        keep = opts.keep_bodies
                        storage.write_measurements(
                            db, run_id, [(obs, verdict, _keep_body(keep, verdict)) for obs, verdict in batch],
                            RULES_VERSION)
                    for obs, verdict in batch:
                        any_answer = any_answer or network_answered(obs)
                        any_attempt = any_attempt or bool(obs.dns or obs.tcp)
                        summary.measured += 1
                        summary.counts[verdict.status] += 1
                        if emit:
                            emit(json_line(run_id, obs, verdict))
                        if progress:
                            progress.update(verdict.status)

        async with trio.open_nursery() as outer:
            outer.start_soon(writer)
            async with send:
                with trio.move_on_after(opts.max_runtime or math.inf) as budget, stop:
                    async with trio.open_nursery() as measuring:
                        measuring.start_soon(_watch_signals, measuring.cancel_scope, summary)
                        async with trio.open_nursery() as shares:
                            shares.start_soon(measure_share, iter(targets[::workers]), cfg,
                                              spec.part(concurrency, 0), matcher, send.clone())
                            for index in range(1, workers):
                                shares.start_soon(worker_process, index, send.clone())
                        measuring.cancel_scope.cancel()  # all measured: stop the signal watcher
            if budget.cancelled_caught and summary.status == "done":
                summary.status = "partial"
    if failed_workers and summary.status == "done":
        # A worker that died left its URLs unmeasured: the run is not done, and --resume finishes it.
        print(f"warning: {len(failed_workers)} worker process(es) failed (exit {failed_workers[0]}); "
              "`probe run --resume` measures what they left", file=sys.stderr)
        summary.status = "partial"
    if summary.signal is not None:
        summary.status = "interrupted"
    elif summary.status == "done" and any_attempt and not any_answer:
        summary.status = "offline"
        _mark_offline(db, run_id)
    storage.finish_run(db, run_id, summary.status)
    summary.wall_s = time.monotonic() - started
    return summary


async def _lookup_vantage(db: sqlite_utils.Database, run_id: int, opts: RunOptions, resolver: dns.Resolver,
                          ssl_context) -> None:
    import httpx  # only for this one request: start-up stays light

    from . import vantage

    assert opts.ip_service is not None
    async with httpx.AsyncClient(verify=ssl_context, timeout=opts.timeout) as client:
        v = await vantage.lookup(client, opts.ip_service, resolver, timeout=opts.dns_timeout)
    storage.set_vantage(db, run_id, v.asn, v.network, v.country, v.failure)


def _disk_low(opts: RunOptions) -> bool:
    if opts.db_path == ":memory:":
        return False
    free = shutil.disk_usage(Path(opts.db_path).resolve().parent).free
    return free < opts.min_free_mb * 1024 * 1024


def _mark_offline(db: sqlite_utils.Database, run_id: int) -> None:
    """Nothing answered at all: that is our network, not censorship. Say so in every verdict."""
    with db.atomic():
        db.execute(
            "update measurements set status = 'error', layer = null, detail = 'vantage/offline', "
            "rule = 'vantage-offline', evidence = 'no resolver, address or server answered during the whole run' "
            "where run_id = ? and rule != 'not-public'", [run_id])


async def _watch_signals(scope: trio.CancelScope, summary: RunSummary) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            summary.signal = signum
            scope.cancel()
            return
