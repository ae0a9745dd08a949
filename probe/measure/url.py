"""Measuring one URL: the steps and how they depend on each other.

    DNS (every resolver, A+AAAA) ─┬─ TCP → TLS for every public answer ─┬─ HTTP through each resolver's own
    DoH control ──────────────────┤  TCP → TLS for the control's answers │  answers (one chain per distinct set)
                                  └─ helper control (needs our answers) ─┘  then the self-controls

Nothing waits for more than it needs: TCP starts when every resolver has given its *first* reply. Late
(injected) replies are heard on the run's resolver sockets after the URL is done: `measure_unsettled`
returns the observations with the queries still listening, and the caller settles them once the window has
passed (the runner does so without holding the URL's slot). One nursery per URL; nothing outlives it. The
result is a bundle of observations; judging them is analysis's job.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Literal

import trio

from ..analysis.pages import compare_helper
from ..analysis.throughput import REPEAT_CHAIN, line_sample_size, worth_repeating
from ..control.client import ControlClient
from ..models import (
    ControlResult,
    DnsQuery,
    HttpHop,
    Observations,
    QuicHandshake,
    Target,
    TcpConnect,
    TlsHandshake,
    TtlProbe,
)
from .netpolicy import NetPolicy, is_ip_literal
from .steps import dns, http, locate, quic, tcp, tls
from .steps import line as line_step
from .steps.dns import LateReplies
from .steps.dns_socket import DnsSockets
from .steps.quic import RTTS, Cutoff, QuicTrust, QuicWatch


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
    locate: bool = True  # TTL-limited ClientHellos after a confirmed TLS reset or timeout (steps/locate.py)
    # Locates in flight, the whole run's (each holds 2 sockets per TTL); None: no limit (one URL alone).
    locate_slots: trio.CapacityLimiter | None = None
    max_addresses: int = 8  # per origin (probe / control), to bound work on names with huge answers
    # Queries awaiting a first reply, per resolver label (see steps/dns.py); shared by every URL of a run.
    dns_slots: dict[str, trio.CapacityLimiter] = field(default_factory=dict)
    # The run's sockets to each resolver (see steps/dns_socket.py); None: measure_url opens its own.
    dns_sockets: DnsSockets | None = None
    # QUIC handshakes for https URLs (steps/quic.py) with these trust anchors; None: not tried (--no-quic).
    quic: QuicTrust | None = None
    # What the run has learned of QUIC on this network (UDP/443 dropped wholesale?); shared by every URL.
    quic_watch: QuicWatch = field(default_factory=QuicWatch)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsettled:
    """A URL measured but for its DNS queries' late replies, which are still being listened for."""

    observations: Observations
    late: tuple[tuple[DnsQuery, LateReplies], ...] = ()

    @property
    def settle_at(self) -> float:
        """The trio time after which no late reply counts any more."""
        return max((pending.until for _, pending in self.late), default=-math.inf)

    def settle(self) -> Observations:
        """The observations with every late reply heard in its window (call at or after `settle_at`)."""
        if not self.late:
            return self.observations
        settled = {id(q): pending.settle(q) for q, pending in self.late}
        obs = self.observations
        return replace(obs, dns=tuple(settled.get(id(q), q) for q in obs.dns))

    def abandon(self) -> None:
        """Stop listening for this URL (it will not be stored)."""
        for _, pending in self.late:
            pending.release()


@dataclass(slots=True)
class _Acc:
    """Mutable collector for one URL; frozen into Observations at the end."""

    dns: list[DnsQuery] = field(default_factory=list)
    first_dns: list[DnsQuery] = field(default_factory=list)
    late: list[tuple[DnsQuery, LateReplies]] = field(default_factory=list)
    control_dns: list[DnsQuery] = field(default_factory=list)
    tcp: list[TcpConnect] = field(default_factory=list)
    tls: list[TlsHandshake] = field(default_factory=list)
    quic: list[QuicHandshake] = field(default_factory=list)
    locate: list[TtlProbe] = field(default_factory=list)
    locating: list[str] = field(default_factory=list)  # addresses located (at most locate.ADDRESSES per URL)
    chains: dict[str, tuple[HttpHop, ...]] = field(default_factory=dict)  # see HttpHop.chain
    control: ControlResult | None = None
    helper_done: trio.Event = field(default_factory=trio.Event)
    connected: list[str] = field(default_factory=list)  # probe-origin addresses that accepted TCP
    control_connected: list[str] = field(default_factory=list)  # control-origin addresses that accepted TCP
    outcomes: dict[str, trio.Event] = field(default_factory=dict)  # set once an address's TCP connect is over
    # http:// only: the TCP step's open connections, for the GET through that address (one connection where a
    # browser makes one); whatever no GET takes is closed when the URL's steps are done.
    spare: dict[str, trio.SocketStream] = field(default_factory=dict)

    def outcome(self, ip: str) -> trio.Event:
        return self.outcomes.setdefault(ip, trio.Event())


def _public_answers(queries: list[DnsQuery], policy: NetPolicy) -> tuple[list[str], list[str]]:
    public: list[str] = []
    bogons: list[str] = []
    for q in queries:
        for a in q.answers:
            dest = public if policy.is_public(a) else bogons
            if a not in dest:
                dest.append(a)
    return public, bogons


def _paths(queries: list[DnsQuery], policy: NetPolicy) -> list[tuple[str, list[str]]]:
    """Each distinct set of public answers, as (chain, addresses), in the resolvers' rank order.

    The first set is fetched as the main chain (""): the system resolver's, which is what the volunteer's browser
    would use. Another resolver that answers differently gets its own chain, so that each answer is judged by the
    page it leads to, never by whichever address happened to connect first.
    """
    by_resolver: dict[str, list[str]] = {}
    for q in queries:
        addrs = by_resolver.setdefault(q.resolver, [])
        addrs.extend(a for a in q.answers if policy.is_public(a) and a not in addrs)
    paths: list[tuple[str, list[str]]] = []
    seen: list[frozenset[str]] = []
    for resolver, addrs in by_resolver.items():
        if addrs and frozenset(addrs) not in seen:
            seen.append(frozenset(addrs))
            paths.append(("" if not paths else f"dns:{resolver}", addrs))
    return paths


async def measure_url(target: Target, cfg: MeasureConfig) -> Observations:
    """Measure one URL, late replies included (waits for the late window: for callers without a runner)."""
    if cfg.dns_sockets is None:
        async with DnsSockets.open() as sockets:
            return await measure_url(target, replace(cfg, dns_sockets=sockets))
    unsettled = await measure_unsettled(target, cfg)
    try:
        await trio.sleep_until(max(unsettled.settle_at, trio.current_time()))
    except BaseException:
        unsettled.abandon()
        raise
    return unsettled.settle()


async def measure_unsettled(target: Target, cfg: MeasureConfig) -> Unsettled:
    """Measure one URL; its DNS queries may still be listening for late replies (see Unsettled)."""
    assert cfg.dns_sockets is not None, "measure_unsettled needs the run's DNS sockets"
    start = trio.current_time()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    def clock() -> float:
        return round(trio.current_time() - start, 4)

    acc = _Acc()
    host = target.hostname
    literal = is_ip_literal(host)
    try:
        async with trio.open_nursery() as nursery:
            control_dns_done = trio.Event()
            if cfg.control and cfg.control.doh_urls and not literal:
                nursery.start_soon(_control_dns, cfg, host, acc, control_dns_done, clock)
            else:
                control_dns_done.set()

            if literal:
                public, bogons = ([host], []) if cfg.policy.is_public(host) else ([], [host])
                paths = [("", public)] if public else []
            else:
                await _resolve(cfg, host, acc, clock)
                # The system resolver's answer first: it is what the volunteer's browser would connect to.
                rank = {r.label: i for i, r in enumerate(cfg.resolvers)}
                acc.first_dns.sort(key=lambda q: (rank.get(q.resolver, 99), q.query_type))
                public, bogons = _public_answers(acc.first_dns, cfg.policy)
                paths = _paths(acc.first_dns, cfg.policy)
            public = public[: cfg.max_addresses]

            if cfg.control and cfg.control.helper_url:
                nursery.start_soon(_helper, cfg, target, public, acc)

            cut = cfg.quic_watch.open()
            try:
                # QUIC in a nursery of its own around the other steps: on a network that drops UDP/443 for
                # everything, it can then end a grace after them (steps/quic.py's Cutoff) rather than hold the URL.
                async with trio.open_nursery() as quics:
                    async with trio.open_nursery() as connects:
                        for ip in public:
                            connects.start_soon(_tcp_tls, cfg, target, ip, "probe", acc, clock)
                            if cfg.quic is not None and target.scheme == "https":
                                quics.start_soon(_quic, cfg, target, ip, acc, clock, cut)
                        connects.start_soon(_control_addresses, cfg, target, set(public), acc, control_dns_done,
                                            clock)
                        for chain, addrs in paths:
                            connects.start_soon(_fetch_path, cfg, target, chain, [a for a in addrs if a in public],
                                                acc, clock)
                    cfg.quic_watch.steps_done(cut, _grace(acc))
                    async with trio.open_nursery() as after:  # both wait on the helper: side by side
                        after.start_soon(_self_controls, cfg, target, paths, acc, clock)
                        after.start_soon(_repeat_if_slow, cfg, target, acc, clock)
                if cfg.quic is not None and target.scheme == "https" and public:
                    cfg.quic_watch.close(cut, acc.quic, {c.ip for c in acc.tcp
                                                         if c.origin == "probe" and c.failure is None})
            finally:
                cfg.quic_watch.live.discard(cut)
                spare, acc.spare = acc.spare, {}
                for stream in spare.values():
                    await trio.aclose_forcefully(stream)
    except BaseException:
        for _, pending in acc.late:  # cut short: nobody will settle these
            pending.release()
        raise
    # Control answers that are not public are bogons too: the same loopback answer at the control means the
    # name points nowhere for everyone, which is no sign of tampering here.
    _, control_bogons = _public_answers(acc.control_dns, cfg.policy)
    if acc.control is not None and acc.control.failure is None:
        control_bogons += [a for a in acc.control.dns_addrs if not cfg.policy.is_public(a)]
    bogons += [b for b in dict.fromkeys(control_bogons) if b not in bogons]
    order = {a: i for i, a in enumerate(public)}
    obs = Observations(
        target=target,
        dns=tuple(sorted(acc.dns, key=lambda q: (q.hostname != host, q.hostname, q.resolver, q.query_type))),
        tcp=tuple(sorted(acc.tcp, key=lambda c: (c.origin != "probe", order.get(c.ip, 99), c.ip))),
        tls=tuple(sorted(acc.tls, key=lambda h: (order.get(h.ip, 99), h.ip, h.decoy))),
        quic=tuple(sorted(acc.quic, key=lambda h: (order.get(h.ip, 99), h.ip, h.decoy))),
        http=tuple(h for chain in sorted(acc.chains, key=_chain_order) for h in acc.chains[chain]),
        control=acc.control,
        control_dns=tuple(sorted(acc.control_dns, key=lambda q: (q.hostname != host, q.hostname, q.resolver,
                                                                 q.query_type))),
        bogons=tuple(bogons),
        locate=tuple(sorted(acc.locate, key=lambda p: (order.get(p.ip, 99), p.ip, p.ttl))),
        started=started,
        runtime_s=clock(),
    )
    return Unsettled(observations=obs, late=tuple(acc.late))


def _chain_order(chain: str) -> tuple[int, str]:
    return ({"": 0, "control": 2, "https": 3, "repeat": 4, "line": 5}.get(chain, 1), chain)


async def _fetch_path(cfg: MeasureConfig, target: Target, chain: str, addrs: list[str], acc: _Acc,
                      clock) -> None:
    """GET the URL through the first of `addrs`, in the resolver's order, that accepted TCP.

    Waiting for the earlier addresses' outcome (not taking whichever connected first) keeps the verdict the same
    from run to run.
    """
    for ip in addrs:
        await acc.outcome(ip).wait()
        if ip in acc.connected:
            acc.chains[chain] = await _fetch(cfg, target.url, target, ip, acc, clock, chain)
            return


async def _fetch(cfg: MeasureConfig, url: str, target: Target, ip: str, acc: _Acc, clock,
                 chain: str) -> tuple[HttpHop, ...]:
    first = acc.spare.pop(ip) if url == target.url and ip in acc.spare else None
    return await http.fetch(
        url, hostname=target.hostname, ip=ip, connection=first,
        resolve=lambda name: _resolve_for_redirect(cfg, acc, name, clock),
        policy=cfg.policy, contexts=cfg.contexts, timeout=cfg.timeout, body_cap=cfg.body_cap,
        max_redirects=cfg.max_redirects, clock=clock, chain=chain)


async def _self_controls(cfg: MeasureConfig, target: Target, paths: list[tuple[str, list[str]]], acc: _Acc,
                         clock) -> None:
    """Pages to compare ours with, fetched from here (both at once), for when no helper reports the page.

    - "control": through the control's DNS answers, when they share nothing with our first resolver's: the
      same vantage, another answer; a different page says the answer, not the site, differs.
    - "https": for an http:// URL on port 80, the same host's https:// page over verified TLS, when ours is a
      page and no helper reports the same page: a notice on plain HTTP beside the real page over HTTPS is
      interference on HTTP, while our http page equal to our https page is the site's own, however unlike the
      helper's it is (a localized edition, a consent wall or a refusal at the helper's datacenter).
    """
    main = acc.chains.get("")
    if cfg.control is None or not main:
        return
    ours = set(paths[0][1]) if paths else set()
    theirs, _ = _public_answers(_for_host(acc.control_dns, target.hostname), cfg.policy)
    reached = [ip for ip in theirs if ip in acc.connected or ip in acc.control_connected]
    last = main[-1]
    https = (target.scheme == "http" and target.port == 80 and last.url.startswith("http://")
             and last.status is not None and last.failure is None)
    if https and cfg.control.helper_url:
        await acc.helper_done.wait()  # (it runs beside the URL's steps: mostly over by now)
        https = _helper_page_differs(last, acc.control)

    async def fetch_into(chain: str, url: str, ip: str) -> None:
        acc.chains[chain] = await _fetch(cfg, url, target, ip, acc, clock, chain)

    async with trio.open_nursery() as n:
        if theirs and not ours & set(theirs) and reached:
            n.start_soon(fetch_into, "control", target.url, reached[0])
        if https and main[0].ip:
            parts = urllib.parse.urlsplit(target.url)
            host = f"[{target.hostname}]" if ":" in target.hostname else target.hostname
            n.start_soon(fetch_into, "https", urllib.parse.urlunsplit(("https", host, parts.path or "/",
                                                                     parts.query, "")), main[0].ip)


async def _repeat_if_slow(cfg: MeasureConfig, target: Target, acc: _Acc, clock) -> None:
    """The page once more, through the same address, when it came 10 times slower than at the helper: throttling
    is judged on two fetches (a congested moment is one), and both are kept (chain "repeat"). At the same time a
    sample of the line's speed comes from our helper (chain "line", steps/line.py): a line busy at that moment
    slows both alike. Decided once the helper has answered (it runs beside the URL's steps: mostly over by now),
    so only a suspect page costs a second download; it runs beside the self-controls."""
    main = acc.chains.get("")
    if cfg.control is None or not cfg.control.helper_url or not main or not main[0].ip:
        return
    await acc.helper_done.wait()
    if not worth_repeating(main[-1], acc.control):
        return
    helper, n, ip = cfg.control.helper_url, line_sample_size(main[-1]), main[0].ip

    async def sample() -> None:
        hop = await line_step.fetch(helper, n, resolver=cfg.resolvers[0] if cfg.resolvers else None,
                                    sockets=cfg.dns_sockets, policy=cfg.policy, contexts=cfg.contexts,
                                    timeout=cfg.timeout, dns_timeout=cfg.dns_timeout, clock=clock)
        acc.chains[line_step.LINE_CHAIN] = (hop,)

    async def again() -> None:
        acc.chains[REPEAT_CHAIN] = await _fetch(cfg, target.url, target, ip, acc, clock, REPEAT_CHAIN)

    async with trio.open_nursery() as n_:
        n_.start_soon(sample)
        n_.start_soon(again)


def _for_host(queries: list[DnsQuery], host: str) -> list[DnsQuery]:
    """A redirect target's lookups sit beside the URL's own (see _resolve_for_redirect): keep them apart."""
    return [q for q in queries if q.hostname == host]


async def _resolve(cfg: MeasureConfig, host: str, acc: _Acc, clock) -> None:
    """Ask every resolver for A and AAAA; return once each query has its first outcome."""
    assert cfg.dns_sockets is not None
    sockets = cfg.dns_sockets

    async def one(resolver: dns.Resolver, qtype: Literal["A", "AAAA"]) -> None:
        q, late = await dns.query(resolver, host, qtype, sockets=sockets, timeout=cfg.dns_timeout,
                                  late_window=cfg.late_window, clock=clock, slots=cfg.dns_slots.get(resolver.label))
        acc.dns.append(q)
        acc.first_dns.append(q)
        if late is not None:
            acc.late.append((q, late))

    async with trio.open_nursery() as nursery:
        for r in cfg.resolvers:
            for k in ("A", "AAAA"):
                nursery.start_soon(one, r, k)


async def _resolve_for_redirect(cfg: MeasureConfig, acc: _Acc, name: str, clock) -> tuple[str | None, list[str]]:
    """A redirect target's name, from the first resolver; recorded, and asked of the control when it fails here."""
    if is_ip_literal(name):
        return None, [name]
    if not cfg.resolvers:
        return "dns_no_answer", []
    assert cfg.dns_sockets is not None
    sockets, first = cfg.dns_sockets, cfg.resolvers[0]
    found: list[DnsQuery] = []

    async def ask(qtype: Literal["A", "AAAA"]) -> None:
        q, _ = await dns.query(first, name, qtype, sockets=sockets, timeout=cfg.dns_timeout, late_window=0,
                               clock=clock, slots=cfg.dns_slots.get(first.label))
        found.append(q)

    async with trio.open_nursery() as n:  # A and AAAA, as the control asks: an IPv6-only host is no failure
        for qtype in ("A", "AAAA"):
            n.start_soon(ask, qtype)
    found.sort(key=lambda q: q.query_type)
    acc.dns.extend(found)
    answers = [a for q in found for a in q.answers]
    if not answers and cfg.control and cfg.control.doh_urls:
        acc.control_dns.extend(await cfg.control.resolve(name, clock=clock))
    if answers:
        return None, answers
    a_query = found[0]
    return a_query.failure or "dns_no_answer", []


async def _tcp_tls(cfg: MeasureConfig, target: Target, ip: str, origin: Literal["probe", "control"],
                   acc: _Acc, clock) -> None:
    tries, stream = await tcp.connect_confirmed(ip, target.port, timeout=cfg.timeout, origin=origin, clock=clock)
    acc.tcp.extend(tries)
    if stream is not None:
        (acc.connected if origin == "probe" else acc.control_connected).append(ip)
    acc.outcome(ip).set()
    if stream is None:
        return
    if target.scheme != "https":
        if ip in acc.spare:  # (an address both our DNS and the control's gave: connected twice)
            await stream.aclose()
        else:
            acc.spare[ip] = stream
        return

    async def reconnect():
        again, s = await tcp.connect(ip, target.port, timeout=cfg.timeout, origin=origin, clock=clock)
        return again.failure, s

    handshakes = await tls.measure(stream, ip=ip, port=target.port, sni=target.hostname, decoy_sni=cfg.decoy_sni,
                                   contexts=cfg.contexts, timeout=cfg.timeout, clock=clock, reconnect=reconnect)
    acc.tls.extend(handshakes)
    if (cfg.locate and origin == "probe" and len(acc.locating) < locate.ADDRESSES
            and locate.worth_locating(handshakes)):
        acc.locating.append(ip)
        async with cfg.locate_slots or contextlib.nullcontext():
            acc.locate.extend(await locate.locate(ip, target.port, sni=target.hostname,
                                                  context=cfg.contexts.noverify, timeout=cfg.timeout, clock=clock))


async def _quic(cfg: MeasureConfig, target: Target, ip: str, acc: _Acc, clock, cut: Cutoff) -> None:
    """QUIC beside TCP and TLS, to the URL's port as browsers do (Alt-Svc aside)."""
    assert cfg.quic is not None
    acc.quic.extend(await quic.measure(ip, sni=target.hostname, decoy_sni=cfg.decoy_sni, trust=cfg.quic,
                                       timeout=cfg.timeout, clock=clock, port=target.port, cutoff=cut))


def _grace(acc: _Acc) -> float:
    """How long QUIC may go on after the URL's other steps, once UDP/443 looks dropped: GRACE, or RTTS of the
    slowest TCP connect here (a long path's QUIC handshake needs its round trips too)."""
    rtts = [c.t - c.t0 for c in acc.tcp if c.origin == "probe" and c.failure is None]
    return max(quic.GRACE, RTTS * max(rtts, default=0.0))


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
    theirs, _ = _public_answers(_for_host(acc.control_dns, target.hostname), cfg.policy)
    extra = [a for a in theirs if a not in tried][: cfg.max_addresses]
    async with trio.open_nursery() as n:
        for ip in extra:
            n.start_soon(_tcp_tls, cfg, target, ip, "control", acc, clock)


async def _helper(cfg: MeasureConfig, target: Target, public: list[str], acc: _Acc) -> None:
    assert cfg.control is not None
    try:
        acc.control = await cfg.control.helper(target, public)
    finally:
        acc.helper_done.set()


def _helper_page_differs(hop: HttpHop, c: ControlResult | None) -> bool:
    """No helper page, or one unlike ours by OONI's tests: worth fetching the https page to tell why."""
    if c is None or c.failure or c.http_failure or c.http_status is None:
        return True
    return not compare_helper(hop, c).consistent
