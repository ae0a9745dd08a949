"""Tries: which failures reproduced, and which were flaky (a failure, then success).

Pure. Measuring tries a failed connect, handshake or request once more on a fresh connection and keeps every
try. A failure counts as evidence only when it reproduced; a failure followed by a success is a `flaky` fact,
never interference. Records from before tries were numbered (attempt 0, no `attempts`; OONI imports) are judged
on their one try, as they always were.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..failures import is_local
from ..models import HttpHop, Observations, TcpConnect, TlsHandshake

CERT_FAILURES = {"ssl_invalid_hostname", "ssl_unknown_authority", "ssl_invalid_certificate"}
# Failures that stored runs from before the route lookup (no_local_route unknown) cannot tell from a missing route.
_MAYBE_LOCAL_ROUTE = {"network_unreachable", "network_down"}


@dataclass(frozen=True, slots=True)
class TcpOutcomes:
    failures: dict[str, str]  # address -> its first failure, where no try connected and the failure reproduced
    once: dict[str, str]  # address -> failure, where no try connected but only one try ended
    flaky: tuple[str, ...]


def _usable(c: TcpConnect, v6_works: bool) -> bool:
    """A probe-origin failure that can be evidence: not for want of a route on this machine, and IPv6 only if
    IPv6 works here. An unreachable that a router on the path reports is evidence like any other failure."""
    if c.origin != "probe" or c.failure is None or c.no_local_route or is_local(c.failure):
        return False
    if c.no_local_route is None and c.failure in _MAYBE_LOCAL_ROUTE:
        return False  # stored before the route lookup existed: it may have been this machine's
    return not (":" in c.ip and not v6_works)


def tcp(obs: Observations) -> TcpOutcomes:
    v6_works = any(c.failure is None and ":" in c.ip for c in obs.tcp)
    by_ip: dict[str, list[TcpConnect]] = {}
    for c in obs.tcp:
        if c.origin == "probe":
            by_ip.setdefault(c.ip, []).append(c)
    failures: dict[str, str] = {}
    once: dict[str, str] = {}
    flaky: list[str] = []
    for ip, tries in by_ip.items():
        failed = [c for c in tries if _usable(c, v6_works)]
        if not failed:
            continue
        if any(c.failure is None for c in tries):
            flaky.append(f"tcp {ip}: {failed[0].failure}, then connected")
        elif len(failed) >= 2 or failed[0].attempt == 0:
            failures[ip] = failed[0].failure or ""
        else:
            once[ip] = failed[0].failure or ""
    return TcpOutcomes(failures, once, tuple(flaky))


@dataclass(frozen=True, slots=True)
class TlsOutcome:
    chosen: TlsHandshake | None  # the handshake that speaks for the URL (its failure, when no try succeeded)
    failure: str | None
    reproduced: bool
    flaky: tuple[str, ...]


def tls(obs: Observations) -> TlsOutcome:
    """Our handshakes, per address (addresses only the control gave are not ours: their failures are not the
    URL's). The first address where every try failed speaks for the URL, else the first address."""
    ours = {c.ip for c in obs.tcp if c.origin == "probe"}
    by_ip: dict[str, list[TlsHandshake]] = {}
    for h in obs.tls:
        if not h.decoy and h.ip in ours:
            by_ip.setdefault(h.ip, []).append(h)
    flaky = []
    failing: tuple[TlsHandshake, bool] | None = None
    for ip, tries in by_ip.items():
        failed = [h for h in tries if h.failure]
        ok = [h for h in tries if h.failure is None]
        if ok and (failed or ok[0].first_failure):
            flaky.append(f"tls {ip}: {(failed[0].failure if failed else ok[0].first_failure)}, then verified")
        if failed and not ok and failing is None:
            reproduced = (len(failed) >= 2 or failed[0].attempt == 0 or failed[0].failure in CERT_FAILURES)
            failing = (failed[0], reproduced)
    if failing is not None:
        return TlsOutcome(failing[0], failing[0].failure, failing[1], tuple(flaky))
    first = next(iter(by_ip.values()), [None])[0]
    return TlsOutcome(first, None, True, tuple(flaky))


def http_reproduced(hop: HttpHop) -> bool:
    """The hop's failure happened on two fresh connections (or the hop predates numbered tries)."""
    if not hop.attempts:
        return True
    return sum(1 for a in hop.attempts if a.get("failure") and not a.get("reused")) >= 2


def http_flaky(hops: tuple[HttpHop, ...]) -> tuple[str, ...]:
    out = []
    for hop in hops:
        failed = [a for a in hop.attempts if a.get("failure") and not a.get("reused")]
        if hop.failure is None and failed:
            out.append(f"http {hop.url}: {failed[0]['failure']}, then answered")
    return tuple(out)
