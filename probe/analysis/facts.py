"""From raw observations to the handful of facts the verdict rules read.

Pure: no network, no database, no clock. Each fact answers one question a rule asks ("did every probe address
fail TCP?", "did the control reach the page?"), so the rules stay one line each and can be tested as data.
"""

from __future__ import annotations

import functools
import ipaddress
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from ..failures import is_local
from ..models import ControlResult, ControlState, DnsQuery, HttpHop, Layer, Observations, TlsHandshake
from .httpdiff import HttpComparison, compare

DNS_LOOKUP_FAILURES = {"dns_nxdomain_error", "dns_no_answer"}
# How a test helper says the name has no address: NXDOMAIN, an empty answer, or no failure and no address (OONI's
# helper's own words are translated on the way in, failures.from_helper_dns).
_NAME_MISSING = {None, "dns_nxdomain_error", "dns_no_answer"}
_STEP_LAYER: dict[str | None, Layer] = {"dns": "dns", "tcp": "tcp", "tls": "tls", "http": "http"}


@dataclass(frozen=True, slots=True)
class HopFailure:
    """A redirect target (second hop or later) that failed, judged with that hop's own evidence."""

    index: int  # 1-based position in the main chain
    url: str
    layer: Layer
    failure: str
    control_resolves: bool | None  # for a DNS failure: the control's DoH found an address for that name


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    control: ControlState
    local_failure: str | None
    # DNS
    probe_addrs: tuple[str, ...]
    bogons: tuple[str, ...]
    dns_failure: str | None  # the most telling failure of a resolver that gave no address
    dns_failure_resolver: str | None
    bogon_only: bool  # some resolver answered with non-public addresses only
    target_not_public: bool  # the URL names a non-public address itself: never measured
    injected: tuple[str, ...]  # "resolver: first -> late" for replies that contradict the first
    injection_settled: bool  # the control shows which of the contradicting replies is the forged one
    control_addrs: tuple[str, ...]  # public addresses only: a non-public control answer confirms nothing
    control_dns_failure: str | None
    control_name_missing: bool  # the control finds no address for the name (NXDOMAIN or an empty answer)
    control_bogon_only: bool  # the control's answers are all non-public, like ours
    dns_consistent: bool | None  # None: nothing to compare with
    # TCP
    tcp_failures: dict[str, str]  # probe-origin address -> failure (routing failures left out)
    tcp_connected: tuple[str, ...]
    control_tcp_ok: tuple[str, ...]  # endpoints the helper connected to
    control_addr_reachable: bool  # we connected, from here, to an address only the control's DNS gave
    # TLS
    tls_failure: str | None  # the real-SNI handshake's failure on the first address that tried
    tls_failure_ip: str | None
    control_tls_same_endpoint: bool | None  # the helper's handshake on the very address that failed here
    decoy_ok: bool | None  # None: no decoy tried
    decoy_failure: str | None
    tls_verified: bool
    control_tls_ok: bool | None
    # HTTP
    final: HttpHop | None  # the last hop of the main chain
    final_is_page: bool  # it is a page (not a failure, not a redirect the chain stopped on)
    stopped: str | None  # why the main chain ended on a redirect
    http_failure: str | None  # the first hop's own failure
    hop_failure: HopFailure | None  # a later hop's failure
    control_http_ok: bool | None  # None: no helper answer
    control_http_failure: str | None
    comparison: HttpComparison | None  # the main page against the reference page
    reference: str  # what the page was compared with: "helper", "control-address page", "https page" or ""
    path_diffs: tuple[str, ...]  # resolvers whose answers led to a page unlike the reference
    cross_host_title_diff: bool  # redirected to another host, to a page whose title is not the control's
    signature: SignatureHit | None = None


def control_state(obs: Observations) -> ControlState:
    helper_ok = obs.control is not None and obs.control.failure is None
    doh_ok = any(q.failure is None or q.failure in DNS_LOOKUP_FAILURES for q in obs.control_dns)
    if helper_ok or doh_ok:
        return "ok"
    return "failed" if (obs.control is not None or obs.control_dns) else "none"


def _first_local(obs: Observations) -> str | None:
    failures = [s.failure for group in (obs.dns, obs.tcp, obs.tls, obs.http) for s in group]
    return next((f for f in failures if is_local(f)), None)


def _reply_consistent(answers: list[str] | tuple[str, ...], control_addrs: tuple[str, ...],
                      control_name_missing: bool) -> bool:
    if not answers:
        return control_name_missing
    return any(a in control_addrs or _same_network(a, b) for a in answers for b in control_addrs)


def _injections(queries: list[DnsQuery], control_addrs: tuple[str, ...],
                control_name_missing: bool) -> tuple[tuple[str, ...], bool]:
    """Late replies that contradict the first, and whether the control settles which one is forged.

    A query we sent twice (a retransmission) is answered twice by an honest resolver, and a CDN's resolver may
    rotate its answer in between: as many late replies as retransmissions are expected and say nothing.
    """
    out = []
    settled = False
    for q in queries:
        if len(q.late_answers) <= q.retransmits:
            continue
        for late in q.late_answers:
            late_answers = late.get("answers", [])
            if sorted(late_answers) == sorted(q.answers) and late.get("rcode") == q.rcode:
                continue
            first = ",".join(q.answers) or q.rcode or "?"
            then = ",".join(late_answers) or late.get("rcode")
            out.append(f"{q.resolver} {q.query_type}: {first} then {then}")
            if control_addrs or control_name_missing:
                settled = settled or (_reply_consistent(q.answers, control_addrs, control_name_missing)
                                      != _reply_consistent(late_answers, control_addrs, control_name_missing))
    return tuple(out), settled


def _group_failure(queries: list[DnsQuery]) -> str | None:
    """One resolver's outcome for the name: None if it gave any address, else its most telling failure."""
    if any(q.answers for q in queries):
        return None
    failures = [q.failure for q in queries if q.failure]
    if "dns_nxdomain_error" in failures:
        return "dns_nxdomain_error"
    # A name with no AAAA is normal; "no answer" only when the A query says so too.
    a_failures = [q.failure for q in queries if q.query_type == "A" and q.failure]
    return a_failures[0] if a_failures else (failures[0] if failures else "dns_no_answer")


_FAILURE_WEIGHT = {"dns_nxdomain_error": 0, "dns_no_answer": 1}


def _dns_failure(queries: list[DnsQuery], bogons: tuple[str, ...]) -> tuple[str | None, str | None, bool]:
    """Judge each resolver on its own: (failure, resolver, some resolver answered only bogons).

    The volunteer's ISP resolver saying NXDOMAIN is blocking even when another resolver we asked tells the truth.
    """
    groups: dict[str, list[DnsQuery]] = {}
    for q in queries:
        groups.setdefault(q.resolver, []).append(q)
    failed = [(f, r) for r, qs in groups.items() if (f := _group_failure(qs)) is not None]
    failed.sort(key=lambda fr: (_FAILURE_WEIGHT.get(fr[0], 2), not fr[1].startswith("system:")))
    bogon_only = any(all(a in bogons for q in qs for a in q.answers) and any(q.answers for q in qs)
                     for qs in groups.values())
    failure, resolver = failed[0] if failed else (None, None)
    return failure, resolver, bogon_only


def _control_dns(obs: Observations, host: str) -> tuple[tuple[str, ...], str | None, bool, bool]:
    """The control's public addresses for `host`, its failure, whether it finds no address at all, and whether
    all it found is non-public."""
    helper = obs.control if obs.control is not None and obs.control.failure is None else None
    doh = [q for q in obs.control_dns if q.hostname == host]
    addrs: list[str] = list(helper.dns_addrs) if helper and host == obs.target.hostname else []
    for q in doh:
        addrs.extend(q.answers)
    addrs = list(dict.fromkeys(addrs))
    public = tuple(a for a in addrs if a not in obs.bogons)
    failure = None
    missing = False
    if not addrs:
        fails = [q.failure for q in doh if q.failure]
        if helper and helper.dns_failure:
            fails.append(helper.dns_failure)
        failure = "dns_nxdomain_error" if "dns_nxdomain_error" in fails else (fails[0] if fails else None)
        doh_missing = bool(doh) and all(q.failure in DNS_LOOKUP_FAILURES for q in doh)
        helper_missing = helper is not None and host == obs.target.hostname and helper.dns_failure in _NAME_MISSING
        missing = doh_missing or helper_missing
    return public, failure, missing, bool(addrs) and not public


def _usable_tcp_failures(obs: Observations) -> dict[str, str]:
    """Probe-origin TCP failures that can be evidence: not for want of a route on this machine, and IPv6 only if
    IPv6 works here. An unreachable that a router on the path reports is evidence like any other failure."""
    v6_works = any(c.failure is None and ":" in c.ip for c in obs.tcp)
    out = {}
    for c in obs.tcp:
        if c.origin != "probe" or c.failure is None or c.no_local_route or is_local(c.failure):
            continue
        if ":" in c.ip and not v6_works:
            continue
        out[c.ip] = c.failure
    return out


def _tls(obs: Observations) -> tuple[TlsHandshake | None, TlsHandshake | None]:
    main = [h for h in obs.tls if not h.decoy]
    failing = next((h for h in main if h.failure), None)
    chosen = failing or (main[0] if main else None)
    decoy = next((h for h in obs.tls if h.decoy and chosen and h.ip == chosen.ip), None)
    return chosen, decoy


def _same_network(a: str, b: str) -> bool:
    """Addresses in one /24 (IPv4) or /48 (IPv6) as a stand-in for 'same ASN' until ASN data is known."""
    try:
        x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False
    if x.version != y.version:
        return False
    prefix = 24 if x.version == 4 else 48
    net_a = ipaddress.ip_network(f"{a}/{prefix}", strict=False)
    return net_a == ipaddress.ip_network(f"{b}/{prefix}", strict=False)


def _pick_signature(hits: tuple[SignatureHit, ...], comparison: HttpComparison | None,
                    control_addrs: tuple[str, ...], differs: bool) -> SignatureHit | None:
    """The hit that counts as evidence, if any. Hits arrive false positives first.

    A signature speaks for the page it is on. A false-positive signature (a CDN challenge, a geo-block) decides
    only on the page the main chain ends on, never from a redirect on the way. A censor's signature on a
    redirect (its body, its headers, its Location) wins over any likeness of the final page; in the final
    page's body it counts unless the control confirms that page (consistent by OONI's rules): a news article
    quoting a blockpage is not a blockpage. A DNS answer counts unless the control got it too. Vague words
    count only where what we got `differs` from the control's page.
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
        if page_confirmed and hit.page and hit.where.endswith("body"):
            continue
        if hit.weak and not differs:
            continue
        return hit
    return None


def _is_page(hop: HttpHop | None) -> bool:
    return (hop is not None and hop.status is not None and hop.failure is None and not hop.stopped
            and not (hop.status in (301, 302, 303, 307, 308) and hop.location))


def _compare_hops(ours: HttpHop, ref: HttpHop) -> HttpComparison:
    return compare(status=ours.status, body_length=ours.body_length, header_names=[k for k, _ in ours.headers],
                   title=ours.title, body_sha256=ours.body_sha256, c_status=ref.status,
                   c_body_length=ref.body_length, c_header_names=[k for k, _ in ref.headers], c_title=ref.title,
                   c_body_sha256=ref.body_sha256)


def _compare_helper(ours: HttpHop, c: ControlResult) -> HttpComparison:
    return compare(status=ours.status, body_length=ours.body_length, header_names=[k for k, _ in ours.headers],
                   title=ours.title, body_sha256=ours.body_sha256, c_status=c.http_status,
                   c_body_length=c.http_body_length, c_header_names=c.http_headers.keys(), c_title=c.http_title,
                   c_body_sha256=c.http_body_sha256)


Comparer = Callable[[HttpHop], HttpComparison]


def _reference(obs: Observations, c: ControlResult | None) -> tuple[str, Comparer] | None:
    """The page ours is compared with: the helper's; else the page through the control's addresses, fetched
    from here; else, for an http:// URL, the same host's page over verified HTTPS."""
    if c is not None and c.http_status is not None and c.http_failure is None:
        return "helper", functools.partial(_compare_helper, c=c)
    for chain, name in (("control", "control-address page"), ("https", "https page")):
        hops = obs.chain(chain)
        if hops and _is_page(hops[-1]):
            return name, functools.partial(_compare_hops, ref=hops[-1])
    return None


def _host(url: str) -> str:
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.")


def _hop_failure(obs: Observations, hops: tuple[HttpHop, ...]) -> HopFailure | None:
    for i, hop in enumerate(hops[1:], 2):
        if hop.failure is None:
            continue
        layer = _STEP_LAYER.get(hop.failed_step, "http")
        resolves = None
        if layer == "dns":
            public, _, missing, _ = _control_dns(obs, urllib.parse.urlsplit(hop.url).hostname or "")
            resolves = True if public else (False if missing else None)
        return HopFailure(index=i, url=hop.url, layer=layer, failure=hop.failure, control_resolves=resolves)
    return None


def _dns_consistency(queries: list[DnsQuery], bogons: tuple[str, ...], tls: tuple[TlsHandshake, ...],
                     probe_addrs: tuple[str, ...], control_addrs: tuple[str, ...], dns_failure: str | None,
                     control_name_missing: bool) -> bool | None:
    """Is what each resolver here said consistent with the control? None: nothing to compare with.

    Each resolver is judged on its own: the ISP's resolver lying is not excused by a public resolver telling
    the truth. Consistent means sharing an address, sharing a /24 (/48), or TLS verifying for the name on one
    of that resolver's addresses.
    """
    if not queries or not (control_addrs or control_name_missing):
        return None  # the control said nothing about the name (it failed, or was not asked)
    if dns_failure in DNS_LOOKUP_FAILURES and control_name_missing:
        return True
    if not control_addrs:
        return False if probe_addrs else None
    verified = {h.ip for h in tls if h.failure is None and not h.decoy}
    groups: dict[str, set[str]] = {}
    for q in queries:
        groups.setdefault(q.resolver, set()).update(a for a in q.answers if a not in bogons)
    answered = [addrs for addrs in groups.values() if addrs]
    if not answered:
        return False
    return all(addrs & set(control_addrs) or addrs & verified
               or any(_same_network(a, b) for a in addrs for b in control_addrs) for addrs in answered)


def _path_diffs(obs: Observations, compare_with: Comparer | None, control_addrs: tuple[str, ...]) -> tuple[str, ...]:
    """The resolvers whose own answers led to a page unlike the reference page (the main chain is the first
    resolver that answered), leaving out paths through an address the control gave too."""
    if compare_with is None:
        return ()
    out = []
    for chain in dict.fromkeys(h.chain for h in obs.http):
        if chain in ("control", "https"):
            continue
        hops = obs.chain(chain)
        if not _is_page(hops[-1]) or hops[0].ip in control_addrs:
            continue
        # Another answer and another title is another site, however close the length (OONI's length test
        # alone would call an ISP's notice of the right size the same page).
        comparison = compare_with(hops[-1])
        if not comparison.consistent or comparison.title_match is False:
            out.append(chain.removeprefix("dns:") or "the first resolver")
    return tuple(out)


def _same_endpoint_tls(c: ControlResult | None, hs: TlsHandshake | None) -> bool | None:
    if c is None or hs is None or not hs.failure:
        return None
    ep = c.tls_handshake.get(f"[{hs.ip}]:{hs.port}" if ":" in hs.ip else f"{hs.ip}:{hs.port}")
    return None if ep is None else bool(ep.get("status"))


def derive(obs: Observations, hits: tuple[SignatureHit, ...] = ()) -> Facts:
    host = obs.target.hostname
    queries = [q for q in obs.dns if q.hostname == host]  # a redirect target's lookups belong to its hop
    probe_addrs = tuple(dict.fromkeys(a for q in queries for a in q.answers if a not in obs.bogons))
    if not queries and obs.tcp:  # an IP-literal URL: nothing was resolved
        probe_addrs = tuple(dict.fromkeys(c.ip for c in obs.tcp if c.origin == "probe"))
    control_addrs, control_dns_failure, name_missing, control_bogon_only = _control_dns(obs, host)
    dns_failure, failing_resolver, bogon_only = _dns_failure(queries, obs.bogons)
    injected, settled = _injections(queries, control_addrs, name_missing)
    main_tls, decoy = _tls(obs)
    c = obs.control if obs.control is not None and obs.control.failure is None else None
    hops = obs.chain()
    final = hops[-1] if hops else None
    reference = _reference(obs, c)
    comparison = reference[1](final) if reference and final is not None and _is_page(final) else None
    control_tls = [v for v in c.tls_handshake.values()] if c else []
    return Facts(
        control=control_state(obs),
        local_failure=_first_local(obs),
        probe_addrs=probe_addrs,
        bogons=obs.bogons,
        dns_failure=dns_failure,
        dns_failure_resolver=failing_resolver,
        bogon_only=bogon_only,
        target_not_public=not obs.dns and bool(obs.bogons),
        injected=injected,
        injection_settled=settled,
        control_addrs=control_addrs,
        control_dns_failure=control_dns_failure,
        control_name_missing=name_missing,
        control_bogon_only=control_bogon_only,
        dns_consistent=_dns_consistency(queries, obs.bogons, obs.tls, probe_addrs, control_addrs, dns_failure,
                                        name_missing),
        tcp_failures=_usable_tcp_failures(obs),
        tcp_connected=tuple(x.ip for x in obs.tcp if x.origin == "probe" and x.failure is None),
        control_tcp_ok=tuple(k for k, v in (c.tcp_connect.items() if c else ()) if v.get("status")),
        control_addr_reachable=any(x.origin == "control" and x.failure is None for x in obs.tcp),
        tls_failure=main_tls.failure if main_tls else None,
        tls_failure_ip=main_tls.ip if main_tls and main_tls.failure else None,
        control_tls_same_endpoint=_same_endpoint_tls(c, main_tls),
        decoy_ok=None if decoy is None else decoy.failure is None or decoy.failure == "ssl_failed_handshake",
        decoy_failure=decoy.failure if decoy else None,
        tls_verified=any(h.failure is None and not h.decoy for h in obs.tls),
        control_tls_ok=None if not control_tls else any(v.get("status") for v in control_tls),
        final=final,
        final_is_page=_is_page(final),
        stopped=(final.stopped or "redirect-not-followed") if final is not None and final.failure is None
        and final.status is not None and not _is_page(final) else None,
        http_failure=hops[0].failure if hops else None,
        hop_failure=_hop_failure(obs, hops),
        control_http_ok=None if c is None else (c.http_status is not None and c.http_failure is None),
        control_http_failure=c.http_failure if c else None,
        comparison=comparison,
        reference=reference[0] if reference else "",
        path_diffs=_path_diffs(obs, reference[1] if reference and reference[0] != "https page" else None,
                               control_addrs),
        cross_host_title_diff=bool(comparison is not None and comparison.title_match is False and final is not None
                                   and _host(final.url) != _host(obs.target.url)),
        signature=_pick_signature(hits, comparison, control_addrs, differs=(
            comparison is not None and not comparison.consistent) or (bool(c and c.http_status is not None
                                                                          and not c.http_failure)
                                                                      and final is not None and not _is_page(final))),
    )
