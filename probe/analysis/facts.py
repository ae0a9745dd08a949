"""From raw observations to the handful of facts the verdict rules read.

Pure: no network, no database, no clock. Each fact answers one question a rule asks ("did every probe address
fail TCP?", "did the control reach the page?"), so the rules stay one line each and can be tested as data.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..failures import is_local
from ..models import ControlState, DnsQuery, HttpHop, Observations, TlsHandshake
from .httpdiff import HttpComparison, compare

DNS_LOOKUP_FAILURES = {"dns_nxdomain_error", "dns_no_answer"}
# Failures that mean "this machine has no route", not "someone interfered".
ROUTING_FAILURES = {"network_unreachable", "network_down"}


@dataclass(frozen=True, slots=True)
class SignatureHit:
    id: str
    layer: str  # "dns" or "http"
    where: str  # "body", "header.location", "dns" ...
    matched: str = ""  # the DNS answer that matched, for DNS signatures
    server_side: bool = False  # a false-positive signature: the site itself, not a censor
    weak: bool = False  # vague words: count only next to a control that shows a different page


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
    control_addrs: tuple[str, ...]
    control_dns_failure: str | None
    dns_consistent: bool | None  # None: nothing to compare with
    # TCP
    tcp_failures: dict[str, str]  # probe-origin address -> failure (routing failures left out)
    tcp_connected: tuple[str, ...]
    control_tcp_ok: tuple[str, ...]  # endpoints the helper connected to
    control_addr_reachable: bool  # we connected, from here, to an address only the control's DNS gave
    # TLS
    tls_failure: str | None  # the real-SNI handshake's failure on the first address that tried
    decoy_ok: bool | None  # None: no decoy tried
    decoy_failure: str | None
    tls_verified: bool
    control_tls_ok: bool | None
    # HTTP
    final: HttpHop | None
    http_failure: str | None
    control_http_ok: bool | None  # None: no helper answer
    control_http_failure: str | None
    comparison: HttpComparison | None
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


def _injections(obs: Observations) -> tuple[str, ...]:
    out = []
    for q in obs.dns:
        for late in q.late_answers:
            if sorted(late.get("answers", [])) != sorted(q.answers) or late.get("rcode") != q.rcode:
                first = ",".join(q.answers) or q.rcode or "?"
                then = ",".join(late.get("answers", [])) or late.get("rcode")
                out.append(f"{q.resolver} {q.query_type}: {first} then {then}")
    return tuple(out)


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


def _dns_failure(obs: Observations) -> tuple[str | None, str | None, bool]:
    """Judge each resolver on its own: (failure, resolver, some resolver answered only bogons).

    The volunteer's ISP resolver saying NXDOMAIN is blocking even when another resolver we asked tells the truth.
    """
    groups: dict[str, list[DnsQuery]] = {}
    for q in obs.dns:
        groups.setdefault(q.resolver, []).append(q)
    failed = [(f, r) for r, qs in groups.items() if (f := _group_failure(qs)) is not None]
    failed.sort(key=lambda fr: (_FAILURE_WEIGHT.get(fr[0], 2), not fr[1].startswith("system:")))
    bogon_only = any(all(a in obs.bogons for q in qs for a in q.answers) and any(q.answers for q in qs)
                     for qs in groups.values())
    failure, resolver = failed[0] if failed else (None, None)
    return failure, resolver, bogon_only


def _control_dns(obs: Observations) -> tuple[tuple[str, ...], str | None]:
    addrs: list[str] = []
    if obs.control and obs.control.failure is None:
        addrs.extend(obs.control.dns_addrs)
    for q in obs.control_dns:
        addrs.extend(q.answers)
    failure = None
    if not addrs:
        fails = [q.failure for q in obs.control_dns if q.failure]
        if obs.control and obs.control.failure is None and obs.control.dns_failure:
            fails.append(obs.control.dns_failure)
        failure = "dns_nxdomain_error" if "dns_nxdomain_error" in fails else (fails[0] if fails else None)
    return tuple(dict.fromkeys(addrs)), failure


def _usable_tcp_failures(obs: Observations) -> dict[str, str]:
    """Probe-origin TCP failures that can be evidence: no routing errors, and IPv6 only if IPv6 works here."""
    v6_works = any(c.failure is None and ":" in c.ip for c in obs.tcp)
    out = {}
    for c in obs.tcp:
        if c.origin != "probe" or c.failure is None or c.failure in ROUTING_FAILURES or is_local(c.failure):
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
                    control_addrs: tuple[str, ...]) -> SignatureHit | None:
    """The hit that counts as evidence, if any. Hits arrive false positives first.

    A page that the control confirms (consistent by OONI's rules) is the site's own page, whatever words it
    contains: a news article quoting a blockpage is not a blockpage. Likewise a DNS answer the control got too.
    """
    page_confirmed = comparison is not None and comparison.consistent
    for hit in hits:
        if hit.layer == "dns":
            if hit.matched not in control_addrs and not hit.server_side:
                return hit
            continue
        if page_confirmed:
            continue
        if hit.weak and comparison is None:
            continue
        return hit
    return None


def _dns_consistency(obs: Observations, probe_addrs: tuple[str, ...], control_addrs: tuple[str, ...],
                     dns_failure: str | None, control_dns_failure: str | None) -> bool | None:
    """Is what each resolver here said consistent with the control? None: nothing to compare with.

    Each resolver is judged on its own: the ISP's resolver lying is not excused by a public resolver telling
    the truth. Consistent means sharing an address, sharing a /24 (/48), or TLS verifying for the name on one
    of that resolver's addresses.
    """
    if not obs.dns or not (control_addrs or control_dns_failure):
        return None
    if dns_failure and control_dns_failure == dns_failure == "dns_nxdomain_error":
        return True
    if not control_addrs:
        return False if probe_addrs else None
    verified = {h.ip for h in obs.tls if h.failure is None and not h.decoy}
    groups: dict[str, set[str]] = {}
    for q in obs.dns:
        groups.setdefault(q.resolver, set()).update(a for a in q.answers if a not in obs.bogons)
    answered = [addrs for addrs in groups.values() if addrs]
    if not answered:
        return False
    return all(addrs & set(control_addrs) or addrs & verified
               or any(_same_network(a, b) for a in addrs for b in control_addrs) for addrs in answered)


def derive(obs: Observations, hits: tuple[SignatureHit, ...] = ()) -> Facts:
    probe_addrs = tuple(dict.fromkeys(a for q in obs.dns for a in q.answers if a not in obs.bogons))
    if not obs.dns and obs.tcp:  # an IP-literal URL: nothing was resolved
        probe_addrs = tuple(dict.fromkeys(c.ip for c in obs.tcp if c.origin == "probe"))
    control_addrs, control_dns_failure = _control_dns(obs)
    dns_failure, failing_resolver, bogon_only = _dns_failure(obs)
    main_tls, decoy = _tls(obs)
    tls_verified = any(h.failure is None and not h.decoy for h in obs.tls)
    dns_consistent = _dns_consistency(obs, probe_addrs, control_addrs, dns_failure, control_dns_failure)
    c = obs.control if obs.control is not None and obs.control.failure is None else None
    final = obs.http[-1] if obs.http else None
    comparison = None
    if final is not None and final.status is not None and c is not None and c.http_status is not None:
        comparison = compare(
            status=final.status, body_length=final.body_length, header_names=[k for k, _ in final.headers],
            title=final.title, body_sha256=final.body_sha256, c_status=c.http_status,
            c_body_length=c.http_body_length, c_header_names=c.http_headers.keys(), c_title=c.http_title,
            c_body_sha256=c.http_body_sha256,
        )
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
        injected=_injections(obs),
        control_addrs=control_addrs,
        control_dns_failure=control_dns_failure,
        dns_consistent=dns_consistent,
        tcp_failures=_usable_tcp_failures(obs),
        tcp_connected=tuple(x.ip for x in obs.tcp if x.origin == "probe" and x.failure is None),
        control_tcp_ok=tuple(k for k, v in (c.tcp_connect.items() if c else ()) if v.get("status")),
        control_addr_reachable=any(x.origin == "control" and x.failure is None for x in obs.tcp),
        tls_failure=main_tls.failure if main_tls else None,
        decoy_ok=None if decoy is None else decoy.failure is None or decoy.failure == "ssl_failed_handshake",
        decoy_failure=decoy.failure if decoy else None,
        tls_verified=tls_verified,
        control_tls_ok=None if not control_tls else any(v.get("status") for v in control_tls),
        final=final,
        http_failure=next((h.failure for h in obs.http if h.failure), None),
        control_http_ok=None if c is None else (c.http_status is not None and c.http_failure is None),
        control_http_failure=c.http_failure if c else None,
        comparison=comparison,
        signature=_pick_signature(hits, comparison, control_addrs),
    )
