"""The network as a whole, surveyed at the start of each session of a run, before any URL is measured.

Some networks lie about everything, not about one site: many ISP resolvers answer names that do not exist with
an advertising server (NXDOMAIN hijacking), and a captive portal (a hotel's, a café's, an unpaid mobile plan's)
answers every name with itself and every request with its login page. Judged URL by URL, the first turns dead
sites into "DNS blocking" and the second turns every site into either "blocked" or an `ok` login page. So:

- each resolver is asked for two names that cannot exist: one that answers them is *hijacking*, one that says
  NXDOMAIN is *honest* (analysis then tells a ghost answer, which is censorship, from hijacking, which is not);
- a connectivity check (`--portal-check URL`, a page that answers 204 with no body) is fetched through the
  system resolver; the control is asked too;
- the line's speed: a sized body from our own helper (`line`), the baseline a throttled site is compared with;
- a check served wrong, together with the system resolver answering both made-up names and the check's own
  name with the same address, or a control that cannot be reached, is a captive portal: the run measures
  nothing (`captive`, resumable).
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
import urllib.parse
from dataclasses import replace
from typing import Any

import trio

from ..models import DnsQuery, NetworkView
from .steps import dns, http
from .steps import line as line_step
from .url import MeasureConfig

DEFAULT_PORTAL_CHECK = "http://connectivitycheck.gstatic.com/generate_204"
_LABEL = string.ascii_lowercase + string.digits


def made_up_names() -> tuple[str, str]:
    """Two names nobody registered: random labels under two common TLDs (what browsers ask to find hijacking)."""
    def label() -> str:
        return "".join(secrets.choice(_LABEL) for _ in range(14))

    return f"{label()}.com", f"www.{label()}.net"


async def survey(cfg: MeasureConfig, portal_check: str | None) -> NetworkView:
    """What the network does to everything (see the module's docstring). Never raises for network reasons."""
    sockets = cfg.dns_sockets
    assert sockets is not None
    start = trio.current_time()

    def clock() -> float:
        return round(trio.current_time() - start, 4)

    names = made_up_names()
    answers: dict[str, list[DnsQuery]] = {}
    check: list[str | None] = [None]
    check_answers: list[str] = []  # what the check's own name resolved to
    reachable: list[bool | None] = [None]
    speed: dict[str, Any] = {}

    async def ask(resolver: dns.Resolver, name: str) -> None:
        q, _ = await dns.query(resolver, name, "A", sockets=sockets, timeout=cfg.dns_timeout, late_window=0,
                               clock=clock)
        answers.setdefault(resolver.label, []).append(q)

    async def portal() -> None:
        if portal_check and cfg.resolvers:
            check[0] = await _check(cfg, portal_check, clock, check_answers)

    async def control() -> None:
        if cfg.control is not None and cfg.control.doh_urls:
            got = await cfg.control.resolve(names[0], clock=clock)
            reachable[0] = any(q.rcode is not None for q in got)

    async def line_speed() -> None:
        speed.update(await line(cfg, clock))

    async with trio.open_nursery() as nursery:
        for resolver in cfg.resolvers:
            for name in names:
                nursery.start_soon(ask, resolver, name)
        nursery.start_soon(portal)
        nursery.start_soon(control)
        nursery.start_soon(line_speed)
    hijacking = {label: tuple(dict.fromkeys(a for q in qs for a in q.answers))
                 for label, qs in answers.items() if any(q.answers for q in qs)}
    honest = tuple(label for label, qs in answers.items()
                   if qs and all(q.failure == "dns_nxdomain_error" for q in qs))
    view = NetworkView(hijacking=hijacking, honest=honest, check=check[0], control_reachable=reachable[0],
                       line=speed, t=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    system = answers.get(cfg.resolvers[0].label, []) if cfg.resolvers else []
    return replace(view, captive=captive(view, system, check_answers))


# The line's baseline. Why our own helper and not the run's median speed on clean URLs: a verdict is given as
# each URL is done (the median is not known yet, and a run of a few URLs has none), while the survey comes
# first, and being stored with the run it is there for `probe reanalyze` too (pure analysis, same verdict).
# Sites sit at many distances; the helper is one fixed far end, like the control the site is compared with.
async def line(cfg: MeasureConfig, clock: Any) -> dict[str, Any]:
    """How fast bytes from our helper come down this line: {"bytes", "duration", "ttfb", "events"}
    (steps/transfer.py), or {"failure"}; {} without a helper. Never raises for network reasons."""
    helper = cfg.control.helper_url if cfg.control is not None else None
    if not helper:
        return {}
    hop = await line_step.fetch(helper, line_step.LINE_BYTES, resolver=cfg.resolvers[0] if cfg.resolvers else None,
                                sockets=cfg.dns_sockets, policy=cfg.policy, contexts=cfg.contexts,
                                timeout=cfg.timeout, dns_timeout=cfg.dns_timeout, clock=clock)
    if not line_step.usable(hop, line_step.LINE_BYTES):
        return {"failure": hop.failure or f"HTTP {hop.status} ({hop.body_length} bytes)"}
    return dict(hop.transfer)


def captive(view: NetworkView, system: list[DnsQuery], check_answers: list[str]) -> str | None:
    """Why the network looks like a captive portal, or None. A check served wrong alone is not enough (a censor
    may block the check's site); it takes the system resolver answering the made-up names and the check's own
    name alike (a portal answers every name with itself; a resolver that hijacks NXDOMAIN answers real names
    truly), or no control."""
    if view.check is None:
        return None
    made_up = [set(q.answers) for q in system]
    same = len(made_up) == 2 and bool(made_up[0]) and made_up[0] == made_up[1] == set(check_answers)
    if same:
        return f"the connectivity check got {view.check}, and every name resolves to {', '.join(system[0].answers)}"
    if view.control_reachable is False:
        return f"the connectivity check got {view.check}, and the control cannot be reached"
    return None


async def _check(cfg: MeasureConfig, url: str, clock: Any, answers: list[str]) -> str | None:
    """None when the check answers 204 as it should; else what it got (a status and where it leads); None
    also when it could not be fetched at all (that is no portal: the run's offline handling speaks for it)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    first = cfg.resolvers[0]
    assert cfg.dns_sockets is not None
    q, _ = await dns.query(first, host, "A", sockets=cfg.dns_sockets, timeout=cfg.dns_timeout, late_window=0,
                           clock=clock)
    answers.extend(q.answers)
    if not q.answers:
        return None
    public = [a for a in q.answers if cfg.policy.is_public(a)]
    if not public:  # a portal's own address is often private: never dialled, and telling enough
        return f"its name resolving to {q.answers[0]}"

    async def no_redirect_lookups(name: str) -> tuple[str | None, list[str]]:
        return "dns_no_answer", []

    hops = await http.fetch(url, hostname=host, ip=public[0], resolve=no_redirect_lookups, policy=cfg.policy,
                            contexts=cfg.contexts, timeout=cfg.timeout, body_cap=64 * 1024, max_redirects=0,
                            clock=clock)
    hop = hops[0]
    if hop.status is None:
        return None
    if hop.status == 204:
        return None
    where = hop.location or (f"'{hop.title}'" if hop.title else f"{hop.body_length} bytes")
    return f"HTTP {hop.status} ({where})"


def describe(view: NetworkView) -> str:
    """One line for the volunteer and `probe runs`."""
    parts = []
    if view.captive:
        parts.append(f"captive portal: {view.captive}")
    if view.hijacking:
        parts.append("resolvers answering names that do not exist: " + ", ".join(view.hijacking))
    if view.check and not view.captive:
        parts.append(f"connectivity check got {view.check}")
    if view.control_reachable is False and not view.captive:
        parts.append("control unreachable")
    return "; ".join(parts) or "nothing unusual"
