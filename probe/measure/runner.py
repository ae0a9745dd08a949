"""Running a list: scheduling, limits, signals, progress and the one writer task.

`run_async` wires named parts, each holding its own state: the `Writer` (commits, off the trio loop), the
`OfflineGate`, the `DiskCheck`, `Signals`, `Progress`; the writer task (`_write_batches`) passes every batch
through them. Nothing is shared through closures.

`concurrency` slots measure the URLs (slots.py; each URL gets its own nursery in url.py), shared
among `--workers` processes (workers.py) that keep the run's limits together. Finished
measurements go through a channel to a single writer that commits what arrives within BATCH_S in one
transaction (WAL), so a SIGKILL loses only URLs still in flight and the last batch, and a signal or the runtime
budget stops measuring without losing anything already committed. A URL cut short is not stored: it stays to
be measured by `--resume`.

Offline is judged per session: until something on the network answers, finished measurements are held back;
if nothing ever answers, they are dropped (a dead network is not evidence), the run stays resumable and rows of
earlier sessions are never touched. What `--json` prints is read back from the database after each commit.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import signal
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils
import trio

from .. import __version__, storage
from ..analysis import RULES_VERSION, Judge, Matcher
from ..control.client import DEFAULT_DOH
from ..models import NetworkView, Observations, Target, Verdict
from . import method, netview
from .slots import measure_all
from .steps import dns
from .steps.tls import TlsContexts
from .url import MeasureConfig
from .workers import LOCATE_FDS, MeasureSpec, default_workers, open_measuring, run_worker

DNS_IN_FLIGHT = 64  # per resolver: what a home router's forwarder takes without dropping
FDS_PER_URL = 16  # DNS sockets + a few TCP/TLS + HTTP; a generous bound so EMFILE stays out of reach
MAX_DEFAULT_CONCURRENCY = 256
# The writer commits at most this often: a commit (an fsync of the WAL) per URL costs more than measuring it,
# and a SIGKILL loses at most this much work besides the URLs in flight.
BATCH_S = 0.25


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
    quic: bool = True  # QUIC handshakes beside TCP/TLS for https URLs (--no-quic)
    locate: bool = True  # TTL-limited ClientHellos after a confirmed TLS reset or timeout (steps/locate.py)
    body_cap: int = 512 * 1024
    keep_bodies: str = "suspect"  # all | suspect (any status but ok) | none
    min_free_mb: int = 64  # stop before the disk under the database is this full
    ip_service: str | None = None  # what-is-my-IP service for the vantage ASN lookup; None: no lookup
    signatures: bool = True  # match blockpage/censor-IP signatures (loaded by Session)
    signature_packs: tuple[str, ...] = ()  # extra packs, absolute paths
    data_dir: str | None = None  # where cached signature sets live; None: $PROBE_DATA_DIR or the XDG default
    workers: int | None = None  # measuring processes, this one included (workers.py); None: from the cores
    portal_check: str | None = None  # connectivity-check URL (answers 204) for the network survey; None: not fetched


@dataclass(slots=True)
class RunSummary:
    """One session's outcome. `counts`, `measured` and `run_*` are read back from the database."""

    run_id: int
    status: str  # done | interrupted | partial | offline | disk-full | captive
    counts: Counter[str] = field(default_factory=Counter)  # this session's stored verdicts, by status
    measured: int = 0  # URLs this session stored
    total: int = 0  # URLs this session set out to measure
    unstored: int = 0  # measured while the network never answered: dropped, left for --resume
    signal: int | None = None
    wall_s: float = 0.0
    run_counts: dict[str, int] = field(default_factory=dict)  # the whole run's stored verdicts, by status
    run_measured: int = 0
    run_total: int = 0
    network: NetworkView | None = None  # the network survey of this session (netview.py)
    line: dict[str, Any] = field(default_factory=dict)  # storage.line_quality of the run


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
    # The locate step's sockets (a few URLs at once, 32 each) come off the top, up to a quarter of a small limit.
    spare = fd_limit - 64 - min(LOCATE_FDS, fd_limit // 4)
    return max(1, min(MAX_DEFAULT_CONCURRENCY, spare // FDS_PER_URL))


def json_line(stored: dict[str, Any]) -> str:
    """One `--json` line: a stored verdict row (storage.VERDICT_COLUMNS)."""
    return json.dumps(stored, ensure_ascii=False)


def network_answered(obs: Observations) -> bool:
    """Did anything on the network answer us at all? (Used to tell an offline vantage from blocking.)"""
    # Any DNS reply counts, NXDOMAIN and SERVFAIL included: a resolver that answers is a network that works.
    return (any(q.rcode is not None for q in obs.dns) or any(c.failure is None for c in obs.tcp)
            or any(h.status is not None for h in obs.http))


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """A bar on a TTY, redrawn every second (elapsed time, rate, ETA); on a pipe or log, a line every `every` s.

    Verdicts count once stored; a measurement held back while the network has not answered yet counts as
    `unconfirmed` until it is stored (or dropped, if the session turns out offline).
    """

    def __init__(self, total: int, stream: Any = None, every: float = 10.0, enabled: bool = True) -> None:
        self.total, self.done, self.held, self.counts = total, 0, 0, Counter[str]()
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every, self.enabled = every, enabled
        self.started = time.monotonic()
        self._last = 0.0
        self._open_line = False

    def measured(self, status: str | None) -> None:
        """One URL measured: stored with `status`, or held back (None)."""
        self.done += 1
        if status is None:
            self.held += 1
        else:
            self.counts[status] += 1
        self._draw(force=self.tty or self.done == self.total)

    def stored(self, statuses: list[str]) -> None:
        """Held measurements were stored after all."""
        self.held -= len(statuses)
        self.counts.update(statuses)

    def tick(self) -> None:
        """Called every second: keeps the TTY line moving while slow URLs time out."""
        self._draw(force=self.tty)

    def finish(self) -> None:
        if self.enabled and self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False

    def line(self, now: float) -> str:
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        held = f" unconfirmed={self.held}" if self.held else ""
        eta = _clock((self.total - self.done) / rate) if rate > 0 else "?"
        return (f"{self.done}/{self.total} {counts}{held} | {_clock(elapsed)} elapsed, {rate:.1f} URL/s, "
                f"ETA {eta}")

    def _draw(self, *, force: bool) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        text = self.line(now)
        if self.tty:
            width = 30
            bar = "#" * (width * self.done // max(self.total, 1))
            self.stream.write(f"\r[{bar:<{width}}] {text}\x1b[K")
            self._open_line = True
        else:
            self.stream.write(text + "\n")
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


def _usable_from_a_thread(conn: sqlite3.Connection) -> bool:
    """Whether another thread may use `conn`: probe's own connections may (storage.open_db), but one a caller
    made with sqlite3's default (check_same_thread) may not, and is then written on the loop, as before."""
    usable: list[bool] = []

    def attempt() -> None:
        try:
            conn.execute("select 1")
            usable.append(True)
        except sqlite3.ProgrammingError:
            usable.append(False)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join()
    return usable == [True]


class Writer:
    """The one writer: stores measured batches, each in one transaction, and says what it stored.

    `store` commits in a worker thread: a commit, and the WAL checkpoint SQLite runs inside one, can take tens of
    milliseconds on a large database, and the loop keeps every DNS, TLS and HTTP deadline of the URLs in flight
    meanwhile. Only the writer touches `db` while the run measures, one batch at a time (bench/loop_stall.py).
    """

    def __init__(self, db: sqlite_utils.Database, run_id: int, survey_id: int, keep_bodies: str,
                 summary: RunSummary, emit: Callable[[str], None] | None) -> None:
        self.db, self.run_id, self.survey_id, self.keep_bodies = db, run_id, survey_id, keep_bodies
        self.summary, self.emit = summary, emit
        self.in_thread = _usable_from_a_thread(db.conn)

    def write(self, batch: list[tuple[Observations, Verdict]]) -> list[dict[str, Any]]:
        with self.db.atomic():
            ids = [storage.write_measurement(self.db, self.run_id, obs, verdict, RULES_VERSION,
                                             keep_body=_keep_body(self.keep_bodies, verdict), survey_id=self.survey_id)
                   for obs, verdict in batch]
        return storage.verdicts(self.db, ids)

    async def store(self, batch: list[tuple[Observations, Verdict]]) -> list[dict[str, Any]]:
        """Commit `batch`; the rows stored (read back), counted in the summary and printed for --json."""
        rows = await trio.to_thread.run_sync(self.write, batch) if self.in_thread else self.write(batch)
        self.summary.measured += len(rows)
        self.summary.counts.update(r["status"] for r in rows)
        if self.emit:
            for row in rows:
                self.emit(json_line(row))
        return rows


@dataclass(slots=True)
class OfflineGate:
    """Holds a session's measurements back until something on the network has answered (network_answered)."""

    answered: bool = False  # in this session, did anything on the network answer ...
    attempted: bool = False  # ... and did we try it at all (DNS or TCP)?
    held: list[tuple[Observations, Verdict]] = field(default_factory=list)  # measured before: not stored yet

    def admit(self, batch: list[tuple[Observations, Verdict]]
              ) -> tuple[list[tuple[Observations, Verdict]], list[tuple[Observations, Verdict]]] | None:
        """None while no sign of a working network (the batch is held: it may say nothing); else what was held
        until now and the batch, both to be stored."""
        self.attempted = self.attempted or any(obs.dns or obs.tcp for obs, _ in batch)
        if not self.answered and not any(network_answered(obs) for obs, _ in batch):
            self.held.extend(batch)
            return None
        earlier, self.held, self.answered = self.held, [], True
        return earlier, batch


@dataclass(slots=True)
class DiskCheck:
    """Stops measuring, and writing, when the disk under the database runs low (RunOptions.min_free_mb)."""

    opts: RunOptions
    stop: trio.CancelScope
    full: bool = False

    def low(self) -> bool:
        """Check before each batch; once low, stays low. What is committed stays intact, and the URLs not
        written stay unmeasured for --resume."""
        if not self.full and _disk_low(self.opts):
            self.full = True
            self.stop.cancel()
        return self.full


@dataclass(slots=True)
class Signals:
    """SIGINT or SIGTERM stops measuring (what is committed is kept); the signal is remembered for the exit code."""

    received: int | None = None

    async def watch(self, scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                self.received = signum
                scope.cancel()
                return


async def _next_batch(recv: trio.MemoryReceiveChannel[tuple[Observations, Verdict]]
                      ) -> list[tuple[Observations, Verdict]] | None:
    """The next measurement and whatever arrives within BATCH_S after it (one transaction); None at the end."""
    try:
        batch = [await recv.receive()]
    except trio.EndOfChannel:
        return None
    with trio.move_on_after(BATCH_S):
        try:
            while True:
                batch.append(await recv.receive())
        except trio.EndOfChannel:
            pass
    return batch


async def _write_batches(recv: trio.MemoryReceiveChannel[tuple[Observations, Verdict]], writer: Writer,
                         gate: OfflineGate, disk: DiskCheck, progress: Progress | None) -> None:
    """The writer task: every measured batch through the disk check and the offline gate into storage."""
    async with recv:
        while (batch := await _next_batch(recv)) is not None:
            if disk.low():
                continue  # measure nothing more and write nothing more; the channel is drained
            admitted = gate.admit(batch)
            if admitted is None:
                if progress:
                    for _ in batch:
                        progress.measured(None)
                continue
            earlier, batch = admitted
            if earlier:
                rows = await writer.store(earlier)
                if progress:
                    progress.stored([r["status"] for r in rows])
            for row in await writer.store(batch):
                if progress:
                    progress.measured(row["status"])


async def _tick(progress: Progress | None) -> None:
    """Keeps a TTY progress line moving while slow URLs time out."""
    while progress:
        await trio.sleep(1)
        progress.tick()


async def _worker_process(spec: MeasureSpec, index: int, targets: list[Target], judge: Judge,
                          out: trio.MemorySendChannel[tuple[Observations, Verdict]], failed: list[int]) -> None:
    code = await run_worker(spec, index, targets, judge, out)
    if code != 0:
        failed.append(code)


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
                                    resolvers=[r.label for r in resolvers],
                                    method=method.record(asdict(opts), RULES_VERSION))
    summary = RunSummary(run_id=run_id, status="done", total=len(targets))
    doh = () if opts.no_control else (DEFAULT_DOH if opts.doh is None else opts.doh)
    concurrency = min(concurrency, max(1, len(targets)))
    # Never more processes than URLs in flight: each share has at least one slot.
    workers = max(1, min(opts.workers or default_workers(len(targets)), concurrency))
    spec = MeasureSpec(
        resolvers=resolvers, allow_net=opts.allow_net, ca_file=opts.ca_file,
        helper=None if opts.no_control else opts.helper, doh=tuple(doh), timeout=opts.timeout,
        dns_timeout=opts.dns_timeout, late_window=opts.late_window, body_cap=opts.body_cap,
        decoy_sni=opts.decoy_sni, quic=opts.quic, concurrency=concurrency, dns_in_flight=DNS_IN_FLIGHT, workers=workers,
        locate=opts.locate)
    failed_workers: list[int] = []
    started = time.monotonic()
    gate, signals, stop = OfflineGate(), Signals(), trio.CancelScope()
    disk = DiskCheck(opts, stop)

    async with open_measuring(spec) as cfg:
        # The network's ASN, once per run; again on resume when no session found it yet (e.g. it was offline).
        known = resumed and (storage.run_row(db, run_id) or {}).get("vantage_asn") is not None
        # The network as a whole (netview.py), each session: verdicts read it, and a captive portal stops the run.
        view: list[NetworkView] = []
        async with trio.open_nursery() as first:
            if opts.ip_service and resolvers and not known:
                first.start_soon(_lookup_vantage, db, run_id, opts, resolvers[0], cfg.contexts)
            first.start_soon(_survey, cfg, opts.portal_check, view)
        summary.network = view[0]
        writer = Writer(db, run_id, storage.set_network(db, run_id, view[0]), opts.keep_bodies, summary, emit)
        judge = Judge(matcher, view[0])
        if view[0].captive:
            summary.status = "captive"  # nothing measured: resumable once the volunteer has logged in
            targets = []
        send, recv = trio.open_memory_channel[tuple[Observations, Verdict]](concurrency * 2)

        async with trio.open_nursery() as outer:
            outer.start_soon(_write_batches, recv, writer, gate, disk, progress)
            async with send:
                with trio.move_on_after(opts.max_runtime or math.inf) as budget, stop:
                    async with trio.open_nursery() as measuring:
                        measuring.start_soon(signals.watch, measuring.cancel_scope)
                        measuring.start_soon(_tick, progress)
                        async with trio.open_nursery() as shares:
                            shares.start_soon(measure_all, iter(targets[::workers]), cfg, spec.part(concurrency, 0),
                                              judge, send.clone())
                            for index in range(1, workers):
                                shares.start_soon(_worker_process, spec, index, targets[index::workers], judge,
                                                  send.clone(), failed_workers)
                        measuring.cancel_scope.cancel()  # all measured: stop the signal watcher and the ticker
        # The writer has drained the channel: whatever stopped the session is known.
        if disk.full:
            summary.status = "disk-full"
        elif budget.cancelled_caught and summary.status == "done":
            summary.status = "partial"
    await _settle(summary, gate, writer, failed_workers, signals)
    storage.finish_run(db, run_id, summary.status)
    if progress:
        progress.finish()
    _read_back(db, summary)
    summary.wall_s = time.monotonic() - started
    return summary


async def _settle(summary: RunSummary, gate: OfflineGate, writer: Writer, failed_workers: list[int],
                  signals: Signals) -> None:
    """The session's outcome once measuring stopped: what the offline gate still holds, workers that died, a
    signal."""
    if gate.held and not gate.attempted:
        await writer.store(gate.held)  # nothing was tried on the network (e.g. only non-public answers): no doubt
    elif gate.held:
        # Nothing answered during this session: that is our network, not censorship. Store nothing for these
        # URLs; they stay to be measured by --resume.
        summary.unstored = len(gate.held)
        if summary.status == "done":
            summary.status = "offline"
    if failed_workers and summary.status == "done":
        # A worker that died left its URLs unmeasured: the run is not done, and --resume finishes it.
        print(f"warning: {len(failed_workers)} worker process(es) failed (exit {failed_workers[0]}); "
              "`probe run --resume` measures what they left", file=sys.stderr)
        summary.status = "partial"
    summary.signal = signals.received
    if summary.signal is not None:
        summary.status = "interrupted"


def _read_back(db: sqlite_utils.Database, summary: RunSummary) -> None:
    """The whole run as the database now holds it (all its sessions)."""
    run = storage.run_row(db, summary.run_id) or {}
    summary.run_counts = storage.run_counts(db, summary.run_id)
    summary.run_measured = sum(summary.run_counts.values())
    summary.line = storage.line_quality(db, summary.run_id)
    summary.run_total = run.get("url_count") or 0


async def _survey(cfg: MeasureConfig, portal_check: str | None, into: list[NetworkView]) -> None:
    into.append(await netview.survey(cfg, portal_check))


async def _lookup_vantage(db: sqlite_utils.Database, run_id: int, opts: RunOptions, resolver: dns.Resolver,
                          contexts: TlsContexts) -> None:
    import httpx  # for this one request only: a run without it starts faster

    from . import vantage

    assert opts.ip_service is not None
    async with httpx.AsyncClient(verify=contexts.http, timeout=opts.timeout) as client:
        v = await vantage.lookup(client, opts.ip_service, resolver, timeout=opts.dns_timeout)
    storage.set_vantage(db, run_id, v.asn, v.network, v.country, v.failure)


def _disk_low(opts: RunOptions) -> bool:
    if opts.db_path == ":memory:":
        return False
    free = shutil.disk_usage(Path(opts.db_path).resolve().parent).free
    return free < opts.min_free_mb * 1024 * 1024
