"""The verdict rules, in order: the first that matches decides, and the verdict records its id.

Ids are stable (reports and `probe reanalyze` refer to them); change a rule's meaning by adding a new id and
bumping RULES_VERSION. The order encodes caution: our own faults first, then the strongest evidence
(signatures, contradictions the control or the decoy shows), and `blocked` never without one of those.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..models import Layer, Status
from .facts import Facts

RULES_VERSION = "2026.11.1"

_INTERFERENCE = {"connection_reset", "connection_aborted", "eof_error", "generic_timeout_error"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    id: str
    when: Callable[[Facts], bool]
    status: Status
    layer: Layer | None
    detail: Callable[[Facts], str]
    explain: str  # the condition in words, for the README's rule table and the evidence


def _ctl_ok(f: Facts) -> bool:
    return f.control == "ok"


def _site_ok_for_control(f: Facts) -> bool:
    """The site is up: the control reached it, or we reached it here through the control's DNS answer."""
    return bool(f.control_http_ok or f.control_tcp_ok or f.control_tls_ok or f.control_addr_reachable)


def _site_down_for_control(f: Facts) -> bool:
    return (f.control_http_ok is False and not f.control_tcp_ok and not f.control_tls_ok
            and not f.control_addr_reachable)


def _dns_broken(f: Facts) -> bool:
    return f.dns_failure is not None or f.bogon_only


def _all_tcp_failed(f: Facts) -> bool:
    return bool(f.tcp_failures) and not f.tcp_connected


def _first(d: dict[str, str]) -> str:
    return next(iter(d.values()))


def _sig(f: Facts) -> str:
    assert f.signature is not None
    return f.signature.id


RULES: tuple[Rule, ...] = (
    Rule(id="local-error", when=lambda f: f.local_failure is not None, status="error", layer=None,
         detail=lambda f: f"local/{f.local_failure}", explain="a step failed for a reason on this machine"),
    Rule(id="not-public", when=lambda f: f.target_not_public, status="error", layer=None,
         detail=lambda f: "local/not_public_address",
         explain="the URL names a loopback, private or reserved address: never connected to, not measured"),
    Rule(id="server-side-page", when=lambda f: f.signature is not None and f.signature.server_side,
         status="anomaly", layer="http", detail=lambda f: f"http/server-side:{_sig(f)}",
         explain="the page matches a false-positive signature (CDN challenge, geo-block): the site, not a censor"),
    Rule(id="dns-censor-ip", when=lambda f: f.signature is not None and f.signature.layer == "dns",
         status="blocked", layer="dns", detail=lambda f: f"dns/censor-ip:{_sig(f)}",
         explain="a DNS answer is a known censor address"),
    Rule(id="http-blockpage", when=lambda f: f.signature is not None and f.signature.layer == "http",
         status="blocked", layer="http", detail=lambda f: f"http/blockpage:{_sig(f)}",
         explain="a hop's body, headers or redirect matches a censor's blockpage signature"),
    Rule(id="dns-injection", when=lambda f: bool(f.injected), status="blocked", layer="dns",
         detail=lambda f: "dns/injection",
         explain="a resolver's query got a second, contradicting reply (an on-path injector)"),
    Rule(id="dns-down", when=lambda f: _dns_broken(f) and f.control_dns_failure == "dns_nxdomain_error",
         status="down", layer="dns", detail=lambda f: "dns/nxdomain",
         explain="the name does not exist for the control either"),
    Rule(id="dns-bogon", when=lambda f: f.bogon_only and bool(f.control_addrs),
         status="blocked", layer="dns", detail=lambda f: "dns/bogon",
         explain="a resolver here gives only non-public answers, the control public ones"),
    Rule(id="dns-nxdomain", when=lambda f: f.dns_failure in ("dns_nxdomain_error", "dns_no_answer")
         and bool(f.control_addrs), status="blocked", layer="dns",
         detail=lambda f: "dns/nxdomain" if f.dns_failure == "dns_nxdomain_error" else "dns/no_answer",
         explain="the name does not resolve here but does at the control"),
    Rule(id="dns-failure", when=lambda f: f.dns_failure is not None and bool(f.control_addrs),
         status="anomaly", layer="dns", detail=lambda f: f"dns/{f.dns_failure}",
         explain="the resolver failed (timeout, SERVFAIL, REFUSED) while the control resolves: could be a flaky"
                 " resolver, so not conclusive"),
    Rule(id="control-failed", when=lambda f: f.control == "failed" and (_dns_broken(f) or _all_tcp_failed(f)
         or f.tls_failure is not None or f.http_failure is not None), status="error", layer=None,
         detail=lambda f: "control/failed", explain="something failed here and the control could not be reached"),
    Rule(id="dns-unverified", when=lambda f: _dns_broken(f), status="anomaly", layer="dns",
         detail=lambda f: "dns/bogon" if not f.dns_failure else f"dns/{f.dns_failure}",
         explain="a DNS failure or bogon answer with no control to compare"),
    Rule(id="tcp-down", when=lambda f: _all_tcp_failed(f) and _ctl_ok(f) and _site_down_for_control(f),
         status="down", layer="tcp", detail=lambda f: f"tcp/{_first(f.tcp_failures)}",
         explain="no address connects, and the control cannot reach the site either"),
    Rule(id="dns-inconsistent-tcp", when=lambda f: _all_tcp_failed(f) and f.dns_consistent is False
         and _site_ok_for_control(f), status="blocked", layer="dns", detail=lambda f: "dns/inconsistent",
         explain="our answers differ from the control's and do not connect, while the control reaches the site"),
    Rule(id="tcp-blocked", when=lambda f: _all_tcp_failed(f) and _site_ok_for_control(f), status="blocked",
         layer="tcp", detail=lambda f: f"tcp/{_first(f.tcp_failures)}",
         explain="every address fails to connect here, while the control connects"),
    Rule(id="tcp-unverified", when=lambda f: _all_tcp_failed(f), status="anomaly", layer="tcp",
         detail=lambda f: f"tcp/{_first(f.tcp_failures)}",
         explain="every address fails to connect, and no control confirms the site is up"),
    Rule(id="tcp-partial", when=lambda f: bool(f.tcp_failures) and any(
         ep.rsplit(":", 1)[0].strip("[]") in f.tcp_failures for ep in f.control_tcp_ok),
         status="blocked", layer="tcp", detail=lambda f: f"tcp/{_first(f.tcp_failures)}",
         explain="some addresses fail here that the control connects to (others work)"),
    Rule(id="tls-sni", when=lambda f: f.tls_failure in _INTERFERENCE and f.decoy_ok is True, status="blocked",
         layer="tls", detail=lambda f: f"tls/{f.tls_failure}",
         explain="the handshake with the real name fails by reset/EOF/timeout; a decoy name to the same address"
                 " gets through (SNI filtering)"),
    Rule(id="tls-ip", when=lambda f: f.tls_failure in _INTERFERENCE and f.decoy_ok is False
         and bool(f.control_tls_ok or f.control_http_ok), status="blocked", layer="tcp",
         detail=lambda f: f"tcp/{f.tls_failure}",
         explain="TLS fails for the real and the decoy name alike while the control's handshake works:"
                 " the address is blocked"),
    Rule(id="tls-down", when=lambda f: f.tls_failure is not None and _ctl_ok(f) and f.control_tls_ok is False
         and not f.control_http_ok, status="down", layer="tls", detail=lambda f: f"tls/{f.tls_failure}",
         explain="the handshake fails here and at the control"),
    Rule(id="tls-mitm", when=lambda f: f.tls_failure in ("ssl_invalid_hostname", "ssl_unknown_authority",
         "ssl_invalid_certificate") and bool(f.control_tls_ok or f.control_http_ok), status="blocked",
         layer="tls", detail=lambda f: f"tls/{f.tls_failure}",
         explain="the certificate presented here is not valid for the name, while the control's is"),
    Rule(id="tls-unverified", when=lambda f: f.tls_failure is not None, status="anomaly", layer="tls",
         detail=lambda f: f"tls/{f.tls_failure}",
         explain="the handshake failed and neither control nor decoy tells why"),
    Rule(id="http-down", when=lambda f: f.http_failure is not None and _ctl_ok(f) and f.control_http_ok is False,
         status="down", layer="http", detail=lambda f: f"http/{f.http_failure}",
         explain="the request fails here and at the control"),
    Rule(id="http-failure", when=lambda f: f.http_failure is not None and f.control_http_ok is True,
         status="blocked", layer="http", detail=lambda f: f"http/{f.http_failure}",
         explain="the request fails here (reset, EOF, timeout) while the control gets the page"),
    Rule(id="http-unverified", when=lambda f: f.http_failure is not None, status="anomaly", layer="http",
         detail=lambda f: f"http/{f.http_failure}", explain="the request failed and no control tells why"),
    Rule(id="dns-inconsistent-page", when=lambda f: f.dns_consistent is False and f.comparison is not None
         and not f.comparison.consistent, status="blocked", layer="dns", detail=lambda f: "dns/inconsistent",
         explain="our answers differ from the control's and lead to a different page"),
    Rule(id="dns-only-here", when=lambda f: f.dns_consistent is False and f.control_dns_failure == "dns_nxdomain_error"
         and not f.tls_verified, status="anomaly", layer="dns", detail=lambda f: "dns/inconsistent",
         explain="the name resolves here but does not exist for the control (e.g. a resolver that hijacks"
                 " NXDOMAIN)"),
    Rule(id="https-verified", when=lambda f: f.tls_verified and f.final is not None and f.final.status is not None
         and f.final.url.startswith("https://"), status="ok", layer=None, detail=lambda f: "ok",
         explain="a page over verified TLS: what we got is what the site served (OONI's rule too)"),
    Rule(id="http-diff", when=lambda f: f.comparison is not None and not f.comparison.consistent,
         status="anomaly", layer="http", detail=lambda f: "http/diff",
         explain="the page differs from the control's (status, and none of size, headers, title match)"),
    Rule(id="ok", when=lambda f: f.final is not None and f.final.status is not None, status="ok", layer=None,
         detail=lambda f: "ok", explain="we got the page, consistent with the control where there is one"),
    Rule(id="no-route", when=lambda f: bool(f.probe_addrs) and not f.tcp_connected and not f.tcp_failures,
         status="error", layer=None, detail=lambda f: "local/network_unreachable",
         explain="this machine has no route to any of the site's addresses (e.g. an IPv6-only site here)"),
    Rule(id="no-evidence", when=lambda f: True, status="anomaly", layer=None, detail=lambda f: "unknown",
         explain="nothing conclusive either way"),
)
