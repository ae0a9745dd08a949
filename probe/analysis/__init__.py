"""Analysis: observations (+ control + signatures) in, verdict out. Pure functions only.

It never touches the network or the database, so a stored run can be re-judged when rules or signatures
improve (`probe reanalyze`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..models import NetworkView, Observations, Verdict
from . import quic
from .facts import Facts, SignatureHit, derive
from .rules import RULES, RULES_VERSION, Rule

__all__ = ["RULES", "RULES_VERSION", "Facts", "Judge", "Matcher", "Rule", "SignatureHit", "analyse", "first_rule"]

# A signature matcher (probe.signatures.SignatureSet.hits) turns observations into hits, false positives first.
Matcher = Callable[[Observations], tuple[SignatureHit, ...]]


def first_rule(facts: Facts) -> Rule:
    for rule in RULES:
        if rule.when(facts):
            return rule
    raise AssertionError("the last rule matches everything")


def analyse(obs: Observations, matcher: Matcher | None = None, network: NetworkView | None = None) -> Verdict:
    facts = derive(obs, matcher(obs) if matcher else (), network)
    hit = facts.signature
    rule = first_rule(facts)
    quic_verdict = quic.judge(obs)  # beside the verdict: it never changes status, layer or detail
    evidence = _evidence(rule, facts)
    if quic_verdict is not None:
        evidence += "; " + quic.evidence(*quic_verdict)
    return Verdict(
        status=rule.status,
        layer=rule.layer_for(facts),
        detail=rule.detail(facts),
        rule=rule.id,
        control=facts.control,
        fingerprint=hit.id if hit else None,
        evidence=evidence,
        scope=(hit.scope or None) if hit else None,
        flaky=bool(facts.flaky),
        quic=quic_verdict[0].value if quic_verdict else None,
    )


@dataclass(frozen=True, slots=True)
class Judge:
    """Analysis with what a run gives it besides each URL's observations: its signatures and the network's
    view. Plain data (it goes to worker processes)."""

    matcher: Matcher | None = None
    network: NetworkView | None = None

    def __call__(self, obs: Observations) -> Verdict:
        return analyse(obs, self.matcher, self.network)


def _evidence(rule: Rule, f: Facts) -> str:
    parts = [rule.explain]
    if f.probe_addrs or f.bogons:
        parts.append("dns: " + ", ".join(f.probe_addrs + f.bogons))
    if f.dns_failure:
        parts.append(f"dns failure: {f.dns_failure} from {f.dns_failure_resolver}")
    if f.control_addrs or f.control_dns_failure:
        parts.append("control dns: " + (", ".join(f.control_addrs) or str(f.control_dns_failure)))
    if f.rejected_replies:
        parts.append("rejected replies: " + "; ".join(f.rejected_replies))
    if f.hijacking_resolvers:
        parts.append("resolvers that answer names that do not exist: " + ", ".join(f.hijacking_resolvers))
    if f.injected:
        parts.append("late replies: " + "; ".join(f.injected))
    if f.tcp_failures:
        parts.append("tcp: " + ", ".join(f"{ip} {fail}" for ip, fail in f.tcp_failures.items()))
    if f.tcp_once:
        parts.append("tcp, one try only: " + ", ".join(f"{ip} {fail}" for ip, fail in f.tcp_once.items()))
    if f.tls_trickle.tries:
        parts.append(f"tls: {f.tls_trickle.tries} handshake(s) read some bytes and then stalled")
    if f.speed.repeated or f.speed.slow(f.speed.here):
        parts.append("transfer: " + f.speed.describe())
    if f.tls_failure:
        decoy = "" if f.decoy_ok is None else f" (decoy SNI: {f.decoy_failure or 'ok'})"
        parts.append(f"tls: {f.tls_failure}{decoy}")
    if f.final is not None:
        parts.append(f"http: {f.final.status or f.final.failure} {f.final.url}")
    if f.hop_failure is not None:
        parts.append(f"hop {f.hop_failure.index}: {f.hop_failure.layer} {f.hop_failure.failure}")
    if f.comparison is not None:
        same = "same" if f.comparison.consistent else "different"
        parts.append(f"page compared with the {f.reference}: {same}")
    if f.path_diffs:
        parts.append("a different page through the answers of: " + ", ".join(f.path_diffs))
    if f.signature:
        parts.append(f"signature {f.signature.id} in {f.signature.where}")
    if f.flaky:
        parts.append("flaky (failed once, then worked): " + "; ".join(f.flaky))
    if f.located:
        parts.append("located: " + "; ".join(f.located))
    return "; ".join(parts)
