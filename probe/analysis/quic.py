"""The QUIC verdict: what happened to HTTP/3's handshake, beside the TCP/TLS verdict and never instead of it.

A browser that cannot do QUIC falls back to TCP, and many sites do not speak QUIC at all, so a QUIC failure
never makes a URL `blocked` (rules.py does not read QUIC) and a value here claims only what the handshakes
show. Rules in order, first match wins; ids are stable (the evidence names the one that fired).

    ok           a handshake with the real name completed, with a certificate valid for it
    sni-blocked  the real name's handshakes were lost (timed out, twice) at an address where the decoy name's
                 completed: the path drops QUIC Initials that carry this name
    udp-blocked  both names failed here at an address where the control's QUIC handshake completed: UDP/443 to
                 this site is dropped (or refused) on this network
    unavailable  both names failed here, and the control's handshakes failed too: the site does no QUIC
    failed       QUIC failed here, and no control tried QUIC (DoH only, or OONI's helper): not attributable;
                 or QUIC got through and its TLS failed (a certificate, an alert); or QUIC's tries were cut
                 short (`interrupted`) because the run had found UDP/443 dropped for every site so far
                 (steps/quic.py's QuicWatch): a cut try is no evidence of a filter, so it never makes
                 udp-blocked or sni-blocked
    error        our own fault (a local error): nothing measured
None: not tried (http:// URLs, --no-quic, no address to try, runs stored before QUIC).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..failures import is_local
from ..models import Observations, QuicHandshake

QuicValue = Literal["ok", "sni-blocked", "udp-blocked", "unavailable", "failed", "error"]
# Failures a filter on the path produces; a bad certificate or a refusal is the same for any name.
_LOST = {"generic_timeout_error", "connection_reset"}
# A try the run ended a grace after the URL's other steps (steps/quic.py's CUT_SHORT): neither loss nor success.
_CUT = "interrupted"


@dataclass(frozen=True, slots=True, kw_only=True)
class QuicFacts:
    real: tuple[QuicHandshake, ...]  # with the real name
    decoy: tuple[QuicHandshake, ...]
    control: dict[str, str | None]  # "ip:port" -> the control's failure (None: it completed); {} if not tried

    def completed(self) -> list[QuicHandshake]:
        return [h for h in self.real if h.failure is None]

    def sni_filtered(self) -> list[tuple[str, int]]:
        """Addresses where every real-name try was lost and the decoy's completed."""
        decoy_ok = {(h.ip, h.port) for h in self.decoy if h.failure is None}
        lost: dict[tuple[str, int], bool] = {}
        for h in self.real:
            lost[(h.ip, h.port)] = lost.get((h.ip, h.port), True) and h.failure in _LOST
        return [a for a, all_lost in lost.items() if all_lost and a in decoy_ok]

    def _failed_both(self) -> list[str]:
        """Addresses where the real name failed (every try, never on TLS) and so did the decoy (or no decoy was
        needed to know)."""
        decoy_ok = {(h.ip, h.port) for h in self.decoy if h.failure is None}
        failed: dict[tuple[str, int], bool] = {(h.ip, h.port): False for h in self.cut()}
        for h in self.real:
            ok = (h.failure is not None and not is_local(h.failure) and not h.failure.startswith("ssl_"))
            failed[(h.ip, h.port)] = failed.get((h.ip, h.port), True) and ok
        return list(dict.fromkeys(endpoint(*a) for a, all_failed in failed.items()
                                  if all_failed and a not in decoy_ok))

    def cut(self) -> list[QuicHandshake]:
        """Tries cut short by the run (no evidence): an address with one proves neither a drop nor a filter."""
        return [h for h in (*self.real, *self.decoy) if h.failure == _CUT]

    def tls_failed(self) -> bool:
        """A handshake got as far as TLS and failed there (a certificate, an alert): QUIC gets through."""
        return any((h.failure or "").startswith("ssl_") for h in self.real)

    def dropped_here(self) -> list[str]:
        """Failed here at an address where the control's handshake completed."""
        return [a for a in self._failed_both() if a in self.control and self.control[a] is None]

    def unavailable(self) -> bool:
        """Failed here, and the control tried and failed at every address it tried."""
        return bool(self._failed_both()) and bool(self.control) and all(f is not None for f in self.control.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class QuicRule:
    id: str
    when: Callable[[QuicFacts], bool]
    value: QuicValue
    explain: str


QUIC_RULES: tuple[QuicRule, ...] = (
    QuicRule(id="quic-ok", when=lambda f: bool(f.completed()), value="ok",
             explain="a QUIC handshake with the real name completed, certificate valid"),
    QuicRule(id="quic-local", when=lambda f: all(is_local(h.failure) for h in f.real), value="error",
             explain="QUIC could not be tried: a fault on this machine"),
    QuicRule(id="quic-sni", when=lambda f: bool(f.sni_filtered()), value="sni-blocked",
             explain="the real name's QUIC handshakes (two) were lost where the decoy name's completed"),
    QuicRule(id="quic-tls", when=lambda f: f.tls_failed(), value="failed",
             explain="QUIC got through but its TLS failed (a certificate or an alert): no UDP or SNI filter's mark"),
    QuicRule(id="quic-udp", when=lambda f: bool(f.dropped_here()), value="udp-blocked",
             explain="QUIC failed here, with the decoy name too, where the control's QUIC handshake completed"),
    QuicRule(id="quic-unavailable", when=lambda f: f.unavailable(), value="unavailable",
             explain="QUIC failed here and at the control: the site does no QUIC"),
    QuicRule(id="quic-cut", when=lambda f: bool(f.cut()), value="failed",
             explain="QUIC was cut short after the URL's other steps (UDP/443 dropped for every site so far "
                     "this run): no evidence of a filter"),
    QuicRule(id="quic-failed", when=lambda f: True, value="failed",
             explain="QUIC failed here and no control tried it: not attributable"),
)


def endpoint(ip: str, port: int) -> str:
    """OONI's "ip:port" key (IPv6 in brackets), as the helper's response uses it."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def facts(obs: Observations) -> QuicFacts | None:
    if not obs.quic:
        return None
    control: dict[str, str | None] = {}
    if obs.control is not None and obs.control.failure is None:
        control = {k: v.get("failure") for k, v in obs.control.quic_handshake.items() if isinstance(v, dict)}
    return QuicFacts(real=tuple(h for h in obs.quic if not h.decoy), decoy=tuple(h for h in obs.quic if h.decoy),
                     control=control)


def judge(obs: Observations) -> tuple[QuicRule, QuicFacts] | None:
    """The first QUIC rule that matches, with its facts; None when QUIC was not tried."""
    f = facts(obs)
    if f is None or not f.real:
        return None
    return next(r for r in QUIC_RULES if r.when(f)), f


def evidence(rule: QuicRule, f: QuicFacts) -> str:
    """The QUIC part of a verdict's evidence: the value, the rule, and every try."""
    def said(h: QuicHandshake) -> str:
        return f"{h.ip} {h.sni}{' (decoy)' if h.decoy else ' (again)' if h.attempt > 1 else ''} {h.failure or 'ok'}"

    tries = ", ".join(said(h) for h in (*f.real, *f.decoy))
    text = f"quic {rule.value} ({rule.id}: {rule.explain}): {tries}"
    if f.control:
        text += "; control quic: " + ", ".join(f"{a} {fail or 'ok'}" for a, fail in f.control.items())
    return text
