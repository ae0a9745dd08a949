"""How fast this line carries bytes from our own helper: a sized body (`GET /x/bytes?n=N`, our helper's).

Throttling is a site slowed for this network, not the network slow for everything: a site's speed is judged
against the line's. The survey fetches one at the start of each session (netview.py), and a page that came
slowly is fetched again *together with* another one (url.py), so that a line busy at that moment (other traffic,
this machine's own load) slows both alike and cannot pass for throttling.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import replace

from ...analysis.throughput import LINE_CHAIN
from ...control.client import LINE_PATH
from ...models import HttpHop
from ..netpolicy import NetPolicy, is_ip_literal
from . import dns, http
from .dns_socket import DnsSockets
from .tls import TlsContexts

__all__ = ["LINE_BYTES", "LINE_CHAIN", "fetch", "usable"]

LINE_BYTES = 256 * 1024  # the survey's: enough for TCP to leave slow start on most lines, little enough to cost nothing


async def fetch(helper_url: str, n: int, *, resolver: dns.Resolver | None, sockets: DnsSockets | None,
                policy: NetPolicy, contexts: TlsContexts, timeout: float, dns_timeout: float,
                clock: Callable[[], float], chain: str = LINE_CHAIN) -> HttpHop:
    """N bytes from the helper, as a hop (its body dropped: random bytes say nothing). Never raises for network
    reasons; a failure (a name that does not resolve, OONI's helper without the path) is the hop's."""
    parts = urllib.parse.urlsplit(helper_url)
    host = parts.hostname or ""
    url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, LINE_PATH, f"n={n}", ""))
    t0 = clock()
    ip = host
    if not is_ip_literal(host):
        if resolver is None or sockets is None:
            return HttpHop(url=url, chain=chain, failure="dns_no_answer", failed_step="dns", t0=t0, t=clock())
        q, _ = await dns.query(resolver, host, "A", sockets=sockets, timeout=dns_timeout, late_window=0,
                               clock=clock)
        if not q.answers:
            return HttpHop(url=url, chain=chain, failure=q.failure or "dns_no_answer", failed_step="dns", t0=t0,
                           t=clock())
        ip = q.answers[0]

    async def no_redirects(name: str) -> tuple[str | None, list[str]]:
        return "dns_no_answer", []

    hops = await http.fetch(url, hostname=host, ip=ip, resolve=no_redirects, policy=policy, contexts=contexts,
                            timeout=timeout, body_cap=n, max_redirects=0, clock=clock, chain=chain)
    return replace(hops[0], body=b"")


def usable(hop: HttpHop, n: int) -> bool:
    """The sample is a measure of the line: the helper sent (most of) the bytes asked for."""
    return hop.failure is None and hop.status == 200 and (hop.body_length or 0) >= n // 2
