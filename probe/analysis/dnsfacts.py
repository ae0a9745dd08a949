"""DNS facts: what each resolver here said, what the control said, and whether they agree.

Pure, like the rest of analysis. Each resolver is judged on its own (the volunteer's ISP resolver lying is not
excused by a public resolver telling the truth), and a non-public answer confirms nothing: the control's answers
count only when public.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..models import DnsQuery, Observations, TlsHandshake

DNS_LOOKUP_FAILURES = {"dns_nxdomain_error", "dns_no_answer"}
# How a test helper says the name has no address: NXDOMAIN, an empty answer, or no failure and no address (OONI's
# helper's own words are translated on the way in, failures.from_helper_dns).
_NAME_MISSING = {None, "dns_nxdomain_error", "dns_no_answer"}
_FAILURE_WEIGHT = {"dns_nxdomain_error": 0, "dns_no_answer": 1}


@dataclass(frozen=True, slots=True)
class ControlDns:
    """What the control (helper and DoH) says about one name."""

    addrs: tuple[str, ...]  # public addresses only
    failure: str | None  # when it found no address at all
    name_missing: bool  # no address: NXDOMAIN or an empty answer
    bogon_only: bool  # it found addresses, all non-public


def same_network(a: str, b: str) -> bool:
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


def consistent(addrs: set[str], control_addrs: tuple[str, ...], verified: set[str]) -> bool:
    """An answer agrees with the control: a shared address, a shared /24 (/48), or TLS verified for the name."""
    return bool(addrs & set(control_addrs) or addrs & verified
                or any(same_network(a, b) for a in addrs for b in control_addrs))


def control_dns(obs: Observations, host: str) -> ControlDns:
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
    return ControlDns(addrs=public, failure=failure, name_missing=missing, bogon_only=bool(addrs) and not public)


def by_resolver(queries: list[DnsQuery]) -> dict[str, list[DnsQuery]]:
    groups: dict[str, list[DnsQuery]] = {}
    for q in queries:
        groups.setdefault(q.resolver, []).append(q)
    return groups


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


def dns_failure(queries: list[DnsQuery], bogons: tuple[str, ...]) -> tuple[str | None, str | None, bool]:
    """(the most telling failure of a resolver that gave no address, that resolver, some resolver answered only
    bogons). The system resolver comes first among equals."""
    groups = by_resolver(queries)
    failed = [(f, r) for r, qs in groups.items() if (f := _group_failure(qs)) is not None]
    failed.sort(key=lambda fr: (_FAILURE_WEIGHT.get(fr[0], 2), not fr[1].startswith("system:")))
    bogon_only = any(all(a in bogons for q in qs for a in q.answers) and any(q.answers for q in qs)
                     for qs in groups.values())
    failure, resolver = failed[0] if failed else (None, None)
    return failure, resolver, bogon_only


def judge_resolvers(queries: list[DnsQuery], bogons: tuple[str, ...], tls: tuple[TlsHandshake, ...],
                    control: ControlDns, failure: str | None) -> tuple[bool | None, tuple[str, ...]]:
    """(are our answers consistent with the control, the resolvers whose public answers are not).
    None: nothing to compare with (the control said nothing about the name)."""
    if not queries or not (control.addrs or control.name_missing):
        return None, ()
    answered = {r: {a for q in qs for a in q.answers if a not in bogons} for r, qs in by_resolver(queries).items()}
    answered = {r: a for r, a in answered.items() if a}
    if failure in DNS_LOOKUP_FAILURES and control.name_missing and not answered:
        return True, ()
    if not control.addrs:  # the control finds no address, we do
        return (False, tuple(answered)) if answered else (None, ())
    if not answered:
        return False, ()
    verified = {h.ip for h in tls if h.failure is None and not h.decoy}
    bad = tuple(r for r, addrs in answered.items() if not consistent(addrs, control.addrs, verified))
    return not bad, bad


def _reply_consistent(answers: list[str] | tuple[str, ...], control: ControlDns) -> bool:
    if not answers:
        return control.name_missing
    return any(a in control.addrs or same_network(a, b) for a in answers for b in control.addrs)


def _contradicts(late: dict, q: DnsQuery) -> bool:
    """A late reply that says something else about the name. A late SERVFAIL or REFUSED (some home routers
    forward every upstream's reply) says nothing about it."""
    answers = late.get("answers") or []
    if not answers and late.get("rcode") != "NXDOMAIN":
        return False
    return sorted(answers) != sorted(q.answers) or late.get("rcode") != q.rcode


def injections(queries: list[DnsQuery], control: ControlDns) -> tuple[tuple[str, ...], bool]:
    """Late replies that contradict the first, and whether the control settles which one is forged (exactly one
    of the two agrees with it).

    A query we sent twice (a retransmission) is answered twice by an honest resolver, and a CDN's resolver may
    rotate its answer in between: as many late replies as retransmissions are expected and say nothing.
    """
    out = []
    settled = False
    for q in queries:
        replies = [late for late in q.late_answers if not late.get("rejected")]
        if len(replies) <= q.retransmits:
            continue
        for late in replies:
            if not _contradicts(late, q):
                continue
            late_answers = late.get("answers") or []
            first = ",".join(q.answers) or q.rcode or "?"
            then = ",".join(late_answers) or late.get("rcode")
            out.append(f"{q.resolver} {q.query_type}: {first} then {then}")
            if control.addrs or control.name_missing:
                settled = settled or (_reply_consistent(q.answers, control)
                                      != _reply_consistent(late_answers, control))
    return tuple(out), settled


def rejected_replies(queries: list[DnsQuery]) -> tuple[str, ...]:
    """Replies taken for no answer (QR unset, addresses for another name): evidence that someone forges."""
    return tuple(f"{q.resolver} {q.query_type}: {','.join(r.get('answers') or ()) or r.get('rcode')} ({r['rejected']})"
                 for q in queries for r in q.late_answers if r.get("rejected"))
