"""From raw observations to the handful of facts the verdict rules read.

Pure: no network, no database, no clock. Each fact answers one question a rule asks ("did every probe address
fail TCP?", "did the control reach the page?"), so the rules stay one line each and can be tested as data. The
DNS facts come from dnsfacts.py, the chains and pages from pages.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..failures import is_local
from ..models import ControlState, HttpHop, NetworkView, Observations, TlsHandshake
from . import attempts, dnsfacts, locate, pages, throughput
from .dnsfacts import DNS_LOOKUP_FAILURES
from .httpdiff import HttpComparison
from .pages import HopFailure
from .throughput import Throughput, TlsTrickle

__all__ = ["DNS_LOOKUP_FAILURES", "Facts", "HopFailure", "SignatureHit", "control_state", "derive"]

@dataclass(frozen=True, slots=True)
class SignatureHit:
    id: str
    layer: str  # "dns" or "http"
    where: str  # "body", "header.location", "dns" ...
    matched: str = ""  # the DNS answer that matched, for DNS signatures
    server_side: bool = False  # a false-positive signature: the site itself, not a censor
    weak: bool = False  # vague words: count only next to a control that shows a different page
    chain: str = ""  # the HTTP chain the hop belongs to (see HttpHop.chain)
    page: bool = False  # found in the response its chain ends on, not on a redirect along the way
    scope: str = ""  # the signature's scope class (state, isp, opt-in, ...; signatures.model.SCOPES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    control: ControlState
    local_failure: str | None
    # DNS
    probe_addrs: tuple[str, ...]
    bogons: tuple[str, ...]  # our own non-public answers
    dns_failure: str | None  # the most telling failure of a resolver that gave no address
    dns_failure_resolver: str | None
    bogon_only: bool  # some resolver answered with non-public addresses only
    target_not_public: bool  # the URL names a non-public address itself: never measured
    injected: tuple[str, ...]  # "resolver: first -> late" for replies that contradict the first
    injection_settled: bool  # the control shows which of the contradicting replies is the forged one
    rejected_replies: tuple[str, ...]  # replies that were no answer (QR unset, another name's address)
    control_addrs: tuple[str, ...]  # public addresses only: a non-public control answer confirms nothing
    control_dns_failure: str | None
    control_name_missing: bool  # the control finds no address for the name (NXDOMAIN or an empty answer)
    control_bogon_only: bool  # the control's answers are all non-public, like ours
    dns_consistent: bool | None  # None: nothing to compare with
    inconsistent_resolvers: tuple[str, ...]  # resolvers whose public answers the control does not confirm
    # Of those, the ones the run's survey caught answering names that do not exist, and the ones it found honest
    # (an answer from these for a name the control does not find is a ghost: made up for this name).
    hijacking_resolvers: tuple[str, ...]
    honest_resolvers: tuple[str, ...]
    # TCP
    tcp_failures: dict[str, str]  # probe-origin address -> failure that reproduced (no-route failures left out)
    tcp_once: dict[str, str]  # probe-origin address -> failure seen on one try only (no evidence)
    tcp_connected: tuple[str, ...]
    unreachable_resolvers: tuple[str, ...]  # resolvers none of whose (tried) answers connected
    control_tcp_ok: tuple[str, ...]  # endpoints the helper connected to
    control_addr_reachable: bool  # we connected, from here, to an address the control's DNS gave
    # TLS
    tls_failure: str | None  # the real-SNI handshake's failure on the first of our addresses that failed
    tls_failure_ip: str | None
    tls_reproduced: bool  # every try of the real name at that address failed (two, or a certificate's)
    control_tls_same_endpoint: bool | None  # the helper's handshake on the very address that failed here
    control_tls_verified_here: bool  # a handshake from here, on an address the control gave, verified
    decoy_ok: bool | None  # None: no decoy tried
    decoy_failure: str | None
    tls_verified: bool
    control_tls_ok: bool | None
    # HTTP
    final: HttpHop | None  # the last hop of the main chain
    final_is_page: bool  # it is a page (not a failure, not a redirect the chain stopped on)
    page_via_ours: bool  # the main chain went through one of our own DNS answers (not only the control's)
    stopped: str | None  # why the main chain ended on a redirect
    http_failure: str | None  # the first hop's own failure
    http_reproduced: bool  # it failed on two fresh connections
    hop_failure: HopFailure | None  # a later hop's failure
    control_http_ok: bool | None  # None: no helper answer
    comparison: HttpComparison | None  # the main page against the best reference page
    reference: str  # what the page was compared with: "helper", "control-address page", "https page" or ""
    https_comparison: HttpComparison | None  # the http:// page against the same host's verified https:// page
    https_same: bool  # ... and they are the same page (title included: both were fetched from here)
    path_diffs: tuple[str, ...]  # resolvers whose own answer led to a page unlike the control's
    cross_host_title_diff: bool  # redirected to another host, to a page whose title is not the control's
    signature: SignatureHit | None = None
    flaky: tuple[str, ...] = ()  # failures that a second try did not repeat: never evidence, counted apart
    located: tuple[str, ...] = ()  # where a TLS failure sits on the path (analysis/locate.py): evidence only
    # Transfer speeds (throughput.py): the page here, again, at the control and on the line
    speed: Throughput = field(default_factory=Throughput)
    tls_trickle: TlsTrickle = field(default_factory=TlsTrickle)  # real-name handshakes that read some bytes and stalled


def control_state(obs: Observations) -> ControlState:
    helper_ok = obs.control is not None and obs.control.failure is None
    doh_ok = any(q.failure is None or q.failure in DNS_LOOKUP_FAILURES for q in obs.control_dns)
    if helper_ok or doh_ok:
        return "ok"
    return "failed" if (obs.control is not None or obs.control_dns) else "none"


def _first_local(obs: Observations) -> str | None:
    failures = [s.failure for group in (obs.dns, obs.tcp, obs.tls, obs.http) for s in group]
    return next((f for f in failures if is_local(f)), None)


def _unreachable_resolvers(queries: list, tcp_failures: dict[str, str], connected: set[str]) -> tuple[str, ...]:
    out = []
    for resolver, qs in dnsfacts.by_resolver(queries).items():
        tried = [a for q in qs for a in q.answers if a in tcp_failures or a in connected]
        if tried and all(a in tcp_failures for a in tried):
            out.append(resolver)
    return tuple(out)


def _pick_signature(hits: tuple[SignatureHit, ...], comparison: HttpComparison | None,
                    control_addrs: tuple[str, ...], differs: bool) -> SignatureHit | None:
    """The hit that counts as evidence, if any. Hits arrive false positives first.

    A signature speaks for the page it is on. A false-positive signature (a CDN challenge, a geo-block) decides
    only on the page the main chain ends on, never from a redirect on the way. A censor's signature on a
    redirect (its body, its headers, its Location) wins over any likeness of the final page; in the main page's
    body it counts unless the control confirms that page (consistent by OONI's rules): a news article quoting a
    blockpage is not a blockpage. A DNS answer counts unless the control got it too. Vague words count only
    where what we got `differs` from the control's page.
    """
    page_confirmed = comparison is not None and comparison.consistent
    for hit in hits:
        if hit.layer == "dns":
            if hit.matched not in control_addrs and not hit.server_side:
                return hit
            continue
        if hit.server_side:
            if hit.page and hit.chain == "":
                return hit
            continue
        if page_confirmed and hit.page and hit.chain == "" and hit.where.endswith("body"):
            continue
        if hit.weak and not differs:
            continue
        return hit
    return None


def _same_endpoint_tls(obs: Observations, hs: TlsHandshake | None) -> bool | None:
    c = obs.control if obs.control is not None and obs.control.failure is None else None
    if c is None or hs is None or not hs.failure:
        return None
    ep = c.tls_handshake.get(f"[{hs.ip}]:{hs.port}" if ":" in hs.ip else f"{hs.ip}:{hs.port}")
    return None if ep is None else bool(ep.get("status"))


def derive(obs: Observations, hits: tuple[SignatureHit, ...] = (), network: NetworkView | None = None) -> Facts:
    host = obs.target.hostname
    queries = [q for q in obs.dns if q.hostname == host]  # a redirect target's lookups belong to its hop
    ours = {a for q in queries for a in q.answers}
    probe_addrs = tuple(dict.fromkeys(a for q in queries for a in q.answers if a not in obs.bogons))
    if not queries and obs.tcp:  # an IP-literal URL: nothing was resolved
        probe_addrs = tuple(dict.fromkeys(c.ip for c in obs.tcp if c.origin == "probe"))
    ctl = dnsfacts.control_dns(obs, host)
    dns_failure, failing_resolver, bogon_only = dnsfacts.dns_failure(queries, obs.bogons)
    injected, settled = dnsfacts.injections(queries, ctl)
    dns_consistent, inconsistent = dnsfacts.judge_resolvers(queries, obs.bogons, obs.tls, ctl, dns_failure)
    tls_outcome = attempts.tls(obs)
    main_tls = tls_outcome.chosen
    decoy = next((h for h in obs.tls if h.decoy and main_tls and h.ip == main_tls.ip), None)
    tcp = attempts.tcp(obs)
    tcp_failures = tcp.failures
    connected = {x.ip for x in obs.tcp if x.failure is None}
    verified = {h.ip for h in obs.tls if h.failure is None and not h.decoy}
    c = obs.control if obs.control is not None and obs.control.failure is None else None
    hops = obs.chain()
    final = hops[-1] if hops else None
    refs = pages.references(obs, c)
    best = next(iter(refs.values()), None)
    comparison = best.compare(final) if best and final is not None and pages.is_page(final) else None
    https_ref = refs.get("https page")
    https_comparison = https_ref.compare(final) if https_ref and pages.is_page(final) and final else None
    control_tls = [v for v in c.tls_handshake.values()] if c else []
    return Facts(
        control=control_state(obs),
        local_failure=_first_local(obs),
        probe_addrs=probe_addrs,
        bogons=tuple(b for b in obs.bogons if b in ours or not queries),
        dns_failure=dns_failure,
        dns_failure_resolver=failing_resolver,
        bogon_only=bogon_only,
        target_not_public=not obs.dns and bool(obs.bogons),
        injected=injected,
        injection_settled=settled,
        rejected_replies=dnsfacts.rejected_replies(queries),
        control_addrs=ctl.addrs,
        control_dns_failure=ctl.failure,
        control_name_missing=ctl.name_missing,
        control_bogon_only=ctl.bogon_only,
        dns_consistent=dns_consistent,
        inconsistent_resolvers=inconsistent,
        hijacking_resolvers=tuple(r for r in inconsistent if network and r in network.hijacking),
        honest_resolvers=tuple(r for r in inconsistent if network and r in network.honest),
        tcp_failures=tcp_failures,
        tcp_once=tcp.once,
        tcp_connected=tuple(x.ip for x in obs.tcp if x.origin == "probe" and x.failure is None),
        unreachable_resolvers=_unreachable_resolvers(queries, tcp_failures, connected),
        control_tcp_ok=tuple(k for k, v in (c.tcp_connect.items() if c else ()) if v.get("status")),
        control_addr_reachable=bool(connected & set(ctl.addrs)),
        tls_failure=tls_outcome.failure,
        tls_failure_ip=main_tls.ip if main_tls and tls_outcome.failure else None,
        tls_reproduced=tls_outcome.reproduced,
        control_tls_same_endpoint=_same_endpoint_tls(obs, main_tls),
        control_tls_verified_here=bool(verified & set(ctl.addrs)),
        decoy_ok=None if decoy is None else decoy.failure is None or decoy.failure == "ssl_failed_handshake",
        decoy_failure=decoy.failure if decoy else None,
        tls_verified=bool(verified),
        control_tls_ok=None if not control_tls else any(v.get("status") for v in control_tls),
        final=final,
        final_is_page=pages.is_page(final),
        page_via_ours=bool(hops and hops[0].ip in probe_addrs),
        stopped=(final.stopped or "redirect-not-followed") if final is not None and final.failure is None
        and final.status is not None and not pages.is_page(final) else None,
        http_failure=hops[0].failure if hops else None,
        http_reproduced=attempts.http_reproduced(hops[0]) if hops else True,
        hop_failure=pages.hop_failure(obs, hops),
        control_http_ok=None if c is None else (c.http_status is not None and c.http_failure is None),
        comparison=comparison,
        reference=best.name if best and comparison is not None else "",
        https_comparison=https_comparison,
        https_same=bool(https_ref and final is not None and pages.is_page(final) and not https_ref.differs(final)),
        path_diffs=pages.path_diffs(obs, refs, ctl.addrs, verified),
        cross_host_title_diff=bool(comparison is not None and comparison.title_match is False and final is not None
                                   and pages.host_of(final.url) != pages.host_of(obs.target.url)),
        signature=_pick_signature(hits, comparison, ctl.addrs, differs=(
            comparison is not None and not comparison.consistent) or (
            c is not None and c.http_status is not None and not c.http_failure and final is not None
            and not pages.is_page(final))),
        flaky=tcp.flaky + tls_outcome.flaky + attempts.http_flaky(obs.http),
        located=tuple(where.sentence() for where in locate.locate(obs.locate)),
        speed=throughput.throughput(obs, final, network),
        tls_trickle=throughput.tls_trickle(obs, main_tls if tls_outcome.failure else None, network),
    )
