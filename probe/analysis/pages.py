"""HTTP facts: the chains of hops a measurement holds, the pages they end on, and what those pages are compared with.

Pure. A chain that ends on a redirect is not a page; a redirect target that fails is judged at its own step.
Our page is compared with the helper's page (OONI's tests), else with the page fetched from here through the
control's DNS answers, else (for http://) with the same host's page over verified HTTPS.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from ..models import ControlResult, HttpHop, Layer, Observations
from .attempts import http_reproduced
from .dnsfacts import consistent, control_dns
from .httpdiff import HttpComparison, compare

REDIRECTS = (301, 302, 303, 307, 308)
_STEP_LAYER: dict[str, Layer] = {"dns": "dns", "tcp": "tcp", "tls": "tls", "http": "http"}
Comparer = Callable[[HttpHop], HttpComparison]


@dataclass(frozen=True, slots=True)
class HopFailure:
    """A redirect target (second hop or later) that failed, judged with that hop's own evidence."""

    index: int  # 1-based position in the main chain
    url: str
    layer: Layer
    failure: str
    control_resolves: bool | None  # for a DNS failure: the control's DoH found an address for that name
    reproduced: bool = True  # a TCP/TLS/HTTP failure that happened on two fresh connections


@dataclass(frozen=True, slots=True)
class Reference:
    """A page to compare ours with."""

    name: str  # "helper", "control-address page", "https page": said in the evidence
    compare: Comparer
    same_vantage: bool  # fetched from here: the title must match too (no localisation to excuse it)

    def differs(self, hop: HttpHop) -> bool:
        c = self.compare(hop)
        return not c.consistent or (self.same_vantage and c.title_match is False)


def is_page(hop: HttpHop | None) -> bool:
    return (hop is not None and hop.status is not None and hop.failure is None and not hop.stopped
            and not (hop.status in REDIRECTS and hop.location))


def _compare_hops(ours: HttpHop, ref: HttpHop) -> HttpComparison:
    return compare(status=ours.status, body_length=ours.body_length, header_names=[k for k, _ in ours.headers],
                   title=ours.title, body_sha256=ours.body_sha256, c_status=ref.status,
                   c_body_length=ref.body_length, c_header_names=[k for k, _ in ref.headers], c_title=ref.title,
                   c_body_sha256=ref.body_sha256)


def compare_helper(ours: HttpHop, c: ControlResult) -> HttpComparison:
    return compare(status=ours.status, body_length=ours.body_length, header_names=[k for k, _ in ours.headers],
                   title=ours.title, body_sha256=ours.body_sha256, c_status=c.http_status,
                   c_body_length=c.http_body_length, c_header_names=c.http_headers.keys(), c_title=c.http_title,
                   c_body_sha256=c.http_body_sha256)


def references(obs: Observations, helper: ControlResult | None) -> dict[str, Reference]:
    """Every page we can compare ours with, best first."""
    out: dict[str, Reference] = {}
    if helper is not None and helper.http_status is not None and helper.http_failure is None:
        out["helper"] = Reference("helper", functools.partial(compare_helper, c=helper), same_vantage=False)
    for chain, name in (("control", "control-address page"), ("https", "https page")):
        hops = obs.chain(chain)
        if hops and is_page(hops[-1]):
            out[name] = Reference(name, functools.partial(_compare_hops, ref=hops[-1]), same_vantage=True)
    return out


def host_of(url: str) -> str:
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.")


def hop_failure(obs: Observations, hops: tuple[HttpHop, ...]) -> HopFailure | None:
    for i, hop in enumerate(hops[1:], 2):
        if hop.failure is None:
            continue
        # Hops stored before 2026.11.2 have no step: a lookup failure still says which it was.
        step = hop.failed_step or ("dns" if hop.failure.startswith("dns_") else "http")
        layer = _STEP_LAYER.get(step, "http")
        resolves = None
        if layer == "dns":
            ctl = control_dns(obs, urllib.parse.urlsplit(hop.url).hostname or "")
            resolves = True if ctl.addrs else (False if ctl.name_missing else None)
        return HopFailure(index=i, url=hop.url, layer=layer, failure=hop.failure, control_resolves=resolves,
                          reproduced=layer == "dns" or http_reproduced(hop))
    return None


def path_diffs(obs: Observations, refs: dict[str, Reference], control_addrs: tuple[str, ...],
               verified: set[str]) -> tuple[str, ...]:
    """The resolvers whose own answer, one the control does not share, led to a page unlike the control's.

    The main chain ("") went through the first resolver's answer, each "dns:<resolver>" chain through another's.
    A chain through an address consistent with the control's, or ending on a verified https:// page, is not
    suspect. The https page is no reference here: it says nothing about which address is right.
    """
    usable = [r for name, r in refs.items() if name != "https page"]
    if not usable:
        return ()
    out = []
    for chain in dict.fromkeys(h.chain for h in obs.http):
        if chain in ("control", "https", "repeat", "line"):  # the page fetched again, and the line's sample
            continue
        hops = obs.chain(chain)
        final = hops[-1]
        if not is_page(final) or final.url.startswith("https://") or not hops[0].ip:
            continue
        if consistent({hops[0].ip}, control_addrs, verified):
            continue
        if any(r.differs(final) for r in usable):
            out.append(chain.removeprefix("dns:") or "the first resolver")
    return tuple(out)

