"""Measuring one URL: the steps and how they depend on each other.

    DNS (every resolver, A+AAAA) ─┬─ TCP → TLS for every public answer ─┬─ HTTP via the first address that
    DoH control ──────────────────┤  TCP → TLS for the control's answers │  accepted TCP
                                  └─ helper control (needs our answers) ─┘

Nothing waits for more than it needs: TCP starts when every resolver has given its *first* reply, while the
DNS tasks keep listening for late (injected) replies in the background. One nursery per URL; nothing
outlives it. The result is a bundle of observations; judging them is analysis's job.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from typing import Literal

import trio

from .control.client import ControlClient
from .models import ControlResult, DnsQuery, HttpHop, Observations, Target, TcpConnect, TlsHandshake
from .netpolicy import NetPolicy
from .steps import dns, http, tcp, tls


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasureConfig:
    resolvers: tuple[dns.Resolver, ...]
    policy: NetPolicy
    contexts: tls.TlsContexts
    control: ControlClient | None = None
    timeout: float = 10.0  # TCP, TLS, each HTTP hop
    dns_timeout: float = 4.0
    late_window: float = 0.5  # listening for duplicate DNS replies
    body_cap: int = 512 * 1024
    max_redirects: int = 10
    decoy_sni: str | None = "example.com"
    max_addresses: int = 8  # per origin (probe / control), to bound work on names with huge answers
    # Queries awaiting a first reply, per resolver label (see steps/dns.py); shared by every URL of a run.
    dns_slots: dict[str, trio.CapacityLimiter] = field(default_factory=dict)


@dataclass(slots=True)
class _Acc:
    """Mutable collector for one URL; frozen into Observations at the end."""

    dns: list[DnsQuery] = field(default_factory=list)
    first_dns: list[DnsQuery] = field(default_factory=list)
    control_dns: list[DnsQuery] = field(default_factory=list)
    tcp: list[TcpConnect] = field(default_factory=list)
    tls: list[TlsHandshake] = field(default_factory=list)
    http: tuple[HttpHop, ...] = ()
    control: ControlResult | None = None
    connected: list[str] = field(default_factory=list)  # probe-origin addresses that accepted TCP


def _public_answers(queries: list[DnsQuery], policy: NetPolicy) -> tuple[list[str], list[str]]:
    public: list[str] = []
    bogons: list[str] = []
    for q in queries:
        for a in q.answers:
            dest = public if policy.is_public(a) else bogons
            if a not in dest:
                dest.append(a)
    return public, bogons


async def measure_url(target: Target, cfg: MeasureConfig) -> Observations:
    start = trio.current_time()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    def clock() -> float:
        return round(trio.current_time() - start, 4)

    acc = _Acc()
    host = target.hostname
    literal = _is_ip_literal(host)
    async with trio.open_nursery() as nursery:
        control_dns_done = trio.Event()
        if cfg.control and cfg.control.doh_urls and not literal:
            nursery.start_soon(_control_dns, cfg, host, acc, control_dns_done, clock)
        else:
            control_dns_done.set()

        if literal:
            public, bogons = ([host], []) if cfg.policy.is_public(host) else ([], [host])
        else:
            await _resolve(nursery, cfg, host, acc, clock)
            # The system resolver's answer first: it is what the volunteer's browser would connect to.
            rank = {r.label: i for i, r in enumerate(cfg.resolvers)}
            acc.first_dns.sort(key=lambda q: (rank.get(q.resolver, 99), q.query_type))
            public, bogons = _public_answers(acc.first_dns, cfg.policy)
        public = public[: cfg.max_addresses]

        if cfg.control and cfg.control.helper_url:
            nursery.start_soon(_helper, cfg, target, public, acc)

        async with trio.open_nursery() as connects:
            gate = _FirstConnect(len(public))
            for ip in public:
                connects.start_soon(_tcp_tls, cfg, target, ip, "probe", acc, clock, gate)
            connects.start_soon(_control_addresses, cfg, target, set(public), acc, control_dns_done, clock)
            await gate.wait()
            if acc.connected:
                acc.http = await http.fetch(
                    target.url,
                    hostname=host,
                    ip=acc.connected[0],
                    resolve=lambda name: _resolve_for_redirect(cfg, name, clock),
                    policy=cfg.policy,
                    contexts=cfg.contexts,
                    timeout=cfg.timeout,
                    body_cap=cfg.body_cap,
                    max_redirects=cfg.max_redirects,
                    clock=clock,
                )
    order = {a: i for i, a in enumerate(public)}
    return Observations(
        target=target,
        dns=tuple(sorted(acc.dns, key=lambda q: (q.resolver, q.query_type))),
        tcp=tuple(sorted(acc.tcp, key=lambda c: (c.origin != "probe", order.get(c.ip, 99), c.ip))),
        tls=tuple(sorted(acc.tls, key=lambda h: (order.get(h.ip, 99), h.ip, h.decoy))),
        http=acc.http,
        control=acc.control,
        control_dns=tuple(sorted(acc.control_dns, key=lambda q: (q.resolver, q.query_type))),
        bogons=tuple(bogons),
        started=started,
        runtime_s=clock(),
    )


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve(nursery: trio.Nursery, cfg: MeasureConfig, host: str, acc: _Acc, clock) -> None:
    """Start every query; return once each has its first outcome (late listening goes on in `nursery`)."""
    kinds: tuple[Literal["A", "AAAA"], ...] = ("A", "AAAA")
    pending = len(cfg.resolvers) * len(kinds)
    if not pending:
        return
    all_first = trio.Event()

    def on_first(q: DnsQuery) -> None:
        nonlocal pending
        acc.first_dns.append(q)
        pending -= 1
        if pending == 0:
            all_first.set()

    async def one(resolver: dns.Resolver, qtype: Literal["A", "AAAA"]) -> None:
        q = await dns.query(resolver, host, qtype, timeout=cfg.dns_timeout, late_window=cfg.late_window,
                            clock=clock, on_first=on_first, slots=cfg.dns_slots.get(resolver.label))
        acc.dns.append(q)

    for r in cfg.resolvers:
        for k in kinds:
            nursery.start_soon(one, r, k)
    await all_first.wait()


async def _resolve_for_redirect(cfg: MeasureConfig, name: str, clock) -> tuple[str | None, list[str]]:
    if _is_ip_literal(name):
        return None, [name]
    if not cfg.resolvers:
        return "dns_no_answer", []
    q = await dns.query(cfg.resolvers[0], name, "A", timeout=cfg.dns_timeout, late_window=0, clock=clock)
    return (None, list(q.answers)) if q.answers else (q.failure or "dns_no_answer", [])


class _FirstConnect:
    """Opens when one probe-origin address accepts TCP, or when all of them have failed."""

    def __init__(self, expected: int) -> None:
        self._left = expected
        self._event = trio.Event()
        if expected == 0:
            self._event.set()

    def report(self, connected: bool) -> None:
        self._left -= 1
        if connected or self._left == 0:
            self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


async def _tcp_tls(cfg: MeasureConfig, target: Target, ip: str, origin: Literal["probe", "control"],
                   acc: _Acc, clock, gate: _FirstConnect | None = None) -> None:
    conn, stream = await tcp.connect(ip, target.port, timeout=cfg.timeout, origin=origin, clock=clock)
    acc.tcp.append(conn)
    if stream is not None and origin == "probe":
        acc.connected.append(ip)
    if gate is not None:
        gate.report(stream is not None)
    if stream is None:
        return
    if target.scheme != "https":
        await stream.aclose()
        return

    async def reconnect():
        again, s = await tcp.connect(ip, target.port, timeout=cfg.timeout, origin=origin, clock=clock)
        return again.failure, s

    acc.tls.extend(await tls.measure(stream, ip=ip, port=target.port, sni=target.hostname,
                                     decoy_sni=cfg.decoy_sni, contexts=cfg.contexts, timeout=cfg.timeout,
                                     clock=clock, reconnect=reconnect))


async def _control_dns(cfg: MeasureConfig, host: str, acc: _Acc, done: trio.Event, clock) -> None:
    assert cfg.control is not None
    try:
        acc.control_dns.extend(await cfg.control.resolve(host, clock=clock))
    finally:
        done.set()


async def _control_addresses(cfg: MeasureConfig, target: Target, tried: set[str], acc: _Acc,
                             done: trio.Event, clock) -> None:
    """Connect from here to the addresses the control resolved: tells DNS tampering from IP blocking."""
    await done.wait()
    theirs, _ = _public_answers(acc.control_dns, cfg.policy)
    extra = [a for a in theirs if a not in tried][: cfg.max_addresses]
    async with trio.open_nursery() as n:
        for ip in extra:
            n.start_soon(_tcp_tls, cfg, target, ip, "control", acc, clock)


async def _helper(cfg: MeasureConfig, target: Target, public: list[str], acc: _Acc) -> None:
    assert cfg.control is not None
    acc.control = await cfg.control.helper(target, public)
