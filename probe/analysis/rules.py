"""The verdict rules, in order: the first that matches decides, and the verdict records its id.

Ids are stable (reports and `probe reanalyze` refer to them); change a rule's meaning by adding a new id and
bumping RULES_VERSION. The order encodes caution: our own faults first, then the strongest evidence
(signatures, contradictions the control or the decoy shows), and `blocked` never without one of those.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..models import Layer, Status
from .attempts import CERT_FAILURES as _CERT
from .facts import Facts

RULES_VERSION = "2026.12.2"  # 2026.12.2: throttling (http-throttled, tls-throttled; issue 20)

_TIMEOUT = "generic_timeout_error"
_INTERFERENCE = {"connection_reset", "connection_aborted", "eof_error", "generic_timeout_error"}
_LOOKUP = {"dns_nxdomain_error", "dns_no_answer"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    id: str
    when: Callable[[Facts], bool]
    status: Status
    # The layer the verdict names; a function for rules whose layer is the failing hop's step.
    layer: Layer | Callable[[Facts], Layer | None] | None
    detail: Callable[[Facts], str]
    explain: str  # the condition in words, for the README's rule table and the evidence

    def layer_for(self, facts: Facts) -> Layer | None:
        return self.layer(facts) if callable(self.layer) else self.layer


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


def _hop_down(f: Facts) -> bool:
    """A redirect target fails for the control too: its name has no address there, or the helper gets no page."""
    hop = f.hop_failure
    if hop is None:
        return False
    return hop.control_resolves is False if hop.layer == "dns" else f.control_http_ok is False


def _hop_blocked(f: Facts) -> bool:
    """A redirect target fails here only: its name does not resolve here while the control resolves it (or the
    helper, following the redirect, gets the page); or its TCP, TLS or HTTP fails while the helper gets the page."""
    hop = f.hop_failure
    if hop is None:
        return False
    if hop.layer != "dns":
        return f.control_http_ok is True and hop.reproduced
    return hop.failure in _LOOKUP and (hop.control_resolves is True
                                       or (hop.control_resolves is None and f.control_http_ok is True))


def _hop_layer(f: Facts) -> Layer | None:
    """the failing hop's step"""
    return f.hop_failure.layer if f.hop_failure else None


_DNS_REASON = {"dns_nxdomain_error": "nxdomain", "dns_no_answer": "no_answer"}


def _hop_detail(f: Facts) -> str:
    assert f.hop_failure is not None
    failure = f.hop_failure.failure
    return f"{f.hop_failure.layer}/{_DNS_REASON.get(failure, failure) if f.hop_failure.layer == 'dns' else failure}"


def _server_side(f: Facts) -> bool:
    return f.signature is not None and f.signature.server_side and not _site_down_for_control(f)


def _verified_page(f: Facts) -> bool:
    """The chain ends on an https:// page over TLS verified for the name: what the site itself served."""
    return f.tls_verified and f.final_is_page and f.final is not None and f.final.url.startswith("https://")


def _page_confirmed(f: Facts) -> bool:
    """We got the site's page through one of our own answers: over verified TLS, or the same as the control's."""
    return f.page_via_ours and (_verified_page(f) or (f.final_is_page and f.comparison is not None
                                                      and f.comparison.consistent))


def _sig_layer(f: Facts) -> Layer:
    """the signature's: dns or http"""
    assert f.signature is not None
    return "dns" if f.signature.layer == "dns" else "http"


def _tls_failed(f: Facts) -> bool:
    """A handshake failed on one of our addresses, and no page confirmed through another outranks it."""
    return f.tls_failure is not None and not _page_confirmed(f)


def _sig(f: Facts) -> str:
    assert f.signature is not None
    return f.signature.id


RULES: tuple[Rule, ...] = (
    Rule(id="local-error", when=lambda f: f.local_failure is not None, status="error", layer=None,
         detail=lambda f: f"local/{f.local_failure}", explain="a step failed for a reason on this machine"),
    Rule(id="not-public", when=lambda f: f.target_not_public, status="error", layer=None,
         detail=lambda f: "local/not_public_address",
         explain="the URL names a loopback, private or reserved address: never connected to, not measured"),
    Rule(id="server-side-same", when=lambda f: _server_side(f) and (_verified_page(f) or f.https_same or (
         f.comparison is not None and f.comparison.consistent)), status="ok", layer=None,
         detail=lambda f: f"http/server-side:{_sig(f)}",
         explain="the page the chain ends on is the site's own refusal or challenge (a false-positive signature:"
                 " CDN challenge, error page, geo-block), and the control got the same page, or it came over"
                 " verified TLS (or is the same as the host's page over verified TLS): the site's doing"),
    Rule(id="server-side-page", when=_server_side, status="anomaly", layer="http",
         detail=lambda f: f"http/server-side:{_sig(f)}",
         explain="the page the chain ends on matches a false-positive signature (CDN challenge, geo-block) and"
                 " differs from the control's, or no control page was compared: the site treats this network"
                 " differently; never blocking"),
    Rule(id="opt-in-filter", when=lambda f: f.signature is not None and f.signature.scope == "opt-in"
         and not f.signature.server_side, status="filtered", layer=_sig_layer,
         detail=lambda f: f"{_sig_layer(f)}/opt-in:{_sig(f)}",
         explain="a blockpage or censor address of a filter the subscriber opted into (e.g. Nayatel's Safeweb):"
                 " filtering, not state or ISP blocking"),
    Rule(id="dns-censor-ip", when=lambda f: f.signature is not None and f.signature.layer == "dns",
         status="blocked", layer="dns", detail=lambda f: f"dns/censor-ip:{_sig(f)}",
         explain="a DNS answer is a known censor address"),
    Rule(id="http-blockpage", when=lambda f: f.signature is not None and f.signature.layer == "http"
         and not f.signature.server_side, status="blocked", layer="http",
         detail=lambda f: f"http/blockpage:{_sig(f)}",
         explain="a hop's body, headers or redirect matches a censor's blockpage signature"),
    Rule(id="dns-injection", when=lambda f: bool(f.injected) and f.injection_settled, status="blocked",
         layer="dns", detail=lambda f: "dns/injection",
         explain="a query got a second, contradicting reply that no retransmission of ours explains, and the"
                 " control shows which reply is forged (an on-path injector)"),
    Rule(id="dns-hijacked-nxdomain", when=lambda f: f.control_name_missing and bool(f.inconsistent_resolvers)
         and set(f.hijacking_resolvers) == set(f.inconsistent_resolvers), status="down", layer="dns",
         detail=lambda f: "dns/nxdomain",
         explain="the name has no address for the control; the resolvers that answer it here answer names that"
                 " cannot exist too (NXDOMAIN hijacking, seen by the run's survey): a dead name, not censorship"),
    Rule(id="dns-ghost", when=lambda f: f.control_name_missing and bool(f.inconsistent_resolvers)
         and not f.tls_verified and not f.hijacking_resolvers and (bool(f.honest_resolvers) or (
             _all_tcp_failed(f) and f.control == "ok")), status="blocked", layer="dns",
         detail=lambda f: "dns/inconsistent",
         explain="a resolver here answers an address for a name the control says does not exist, and it answers"
                 " NXDOMAIN for made-up names (the run's survey), or, where no survey was made, that address"
                 " refuses every connection: the answer was made up for this name (ghost DNS)"),
    Rule(id="dns-down", when=lambda f: _dns_broken(f) and f.control_name_missing, status="down", layer="dns",
         detail=lambda f: "dns/nxdomain",
         explain="the name has no address for the control either (NXDOMAIN or an empty answer)"),
    Rule(id="dns-bogon-everywhere", when=lambda f: f.bogon_only and f.control_bogon_only, status="down",
         layer="dns", detail=lambda f: "dns/bogon",
         explain="the name points to a non-public address at the control too: misconfigured, not censored"),
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
    Rule(id="dns-injection-unverified", when=lambda f: bool(f.injected), status="anomaly", layer="dns",
         detail=lambda f: "dns/injection",
         explain="a query got a second, contradicting reply, and no control answer tells which one is forged"
                 " (after the DNS rules that need no late reply)"),
    Rule(id="control-failed", when=lambda f: f.control == "failed" and (_dns_broken(f) or _all_tcp_failed(f)
         or f.tls_failure is not None or f.http_failure is not None or f.hop_failure is not None),
         status="error", layer=None, detail=lambda f: "control/failed",
         explain="something failed here and the control could not be reached"),
    Rule(id="dns-unverified", when=lambda f: _dns_broken(f), status="anomaly", layer="dns",
         detail=lambda f: "dns/bogon" if not f.dns_failure else f"dns/{f.dns_failure}",
         explain="a DNS failure or bogon answer with no control to compare"),
    Rule(id="tcp-down", when=lambda f: _all_tcp_failed(f) and _ctl_ok(f) and _site_down_for_control(f),
         status="down", layer="tcp", detail=lambda f: f"tcp/{_first(f.tcp_failures)}",
         explain="no address connects, and the control cannot reach the site either"),
    Rule(id="dns-inconsistent-tcp", when=lambda f: _site_ok_for_control(f) and (
         (_all_tcp_failed(f) and f.dns_consistent is False)
         or bool(set(f.unreachable_resolvers) & set(f.inconsistent_resolvers))), status="blocked", layer="dns",
         detail=lambda f: "dns/inconsistent",
         explain="a resolver's answers differ from the control's and none of them connects, while the control"
                 " reaches the site (even when another resolver's answer works)"),
    Rule(id="tcp-blocked", when=lambda f: _all_tcp_failed(f) and _site_ok_for_control(f), status="blocked",
         layer="tcp", detail=lambda f: f"tcp/{_first(f.tcp_failures)}",
         explain="every address fails to connect here, while the control connects"),
    Rule(id="tcp-unverified", when=lambda f: _all_tcp_failed(f), status="anomaly", layer="tcp",
         detail=lambda f: f"tcp/{_first(f.tcp_failures)}",
         explain="every address fails to connect, and no control confirms the site is up"),
    Rule(id="tcp-partial", when=lambda f: bool(f.tcp_failures) and not _page_confirmed(f) and any(
         ep.rsplit(":", 1)[0].strip("[]") in f.tcp_failures for ep in f.control_tcp_ok),
         status="blocked", layer="tcp", detail=lambda f: f"tcp/{_first(f.tcp_failures)}",
         explain="some addresses fail here that the control connects to (others work), and no page through"
                 " the others is confirmed (verified TLS, or the control's page): a confirmed page outranks them"),
    Rule(id="dns-inconsistent-tls", when=lambda f: _tls_failed(f) and f.dns_consistent is False
         and f.tls_reproduced
         and f.tls_failure_ip not in f.control_addrs and f.decoy_ok is not True
         and bool(f.control_tls_verified_here or f.control_tls_ok), status="blocked", layer="dns",
         detail=lambda f: "dns/inconsistent",
         explain="TLS fails on an address only our DNS gave, our answers differ from the control's, and TLS"
                 " to the control's address verifies (from here or at the helper): the answer is at fault, not"
                 " TLS"),
    Rule(id="tls-throttled", when=lambda f: _tls_failed(f) and f.tls_trickle.reproduced and f.tls_trickle.line
         and bool(f.control_tls_ok or f.control_http_ok), status="blocked", layer="tls",
         detail=lambda f: "tls/throttled",
         explain="every handshake with the real name reads part of the server's flight (fewer bytes than the"
                 " helper's complete handshake read) and then nothing until the timeout (a dropped ClientHello"
                 " reads none), while the control's handshake completes and the run's survey found this line"
                 " carrying our helper's bytes: the handshake is starved here"),
    Rule(id="tls-sni", when=lambda f: _tls_failed(f) and f.tls_failure in _INTERFERENCE and f.decoy_ok is True
         and f.tls_reproduced and _ctl_ok(f),
         status="blocked",
         layer="tls", detail=lambda f: f"tls/{f.tls_failure}",
         explain="the handshake with the real name fails by reset/EOF/timeout, twice; a decoy name to the same"
                 " address gets through (SNI filtering), and a control is there to compare"),
    Rule(id="tls-ip", when=lambda f: _tls_failed(f) and f.tls_failure in _INTERFERENCE and f.decoy_ok is False
         and f.tls_reproduced
         and bool(f.control_tls_ok or f.control_http_ok), status="blocked", layer="tcp",
         detail=lambda f: f"tcp/{f.tls_failure}",
         explain="TLS fails for the real and the decoy name alike while the control's handshake works:"
                 " the address is blocked"),
    Rule(id="tls-down", when=lambda f: _tls_failed(f) and _ctl_ok(f) and f.control_tls_ok is False
         and not f.control_http_ok, status="down", layer="tls", detail=lambda f: f"tls/{f.tls_failure}",
         explain="the handshake fails here and at the control"),
    Rule(id="tls-mitm", when=lambda f: _tls_failed(f) and f.tls_failure in _CERT
         and f.control_tls_same_endpoint is True,
         status="blocked", layer="tls", detail=lambda f: f"tls/{f.tls_failure}",
         explain="the certificate presented here is not valid for the name, while the control's handshake with"
                 " the same address and name verifies"),
    Rule(id="tls-throttled-unverified", when=lambda f: _tls_failed(f) and f.tls_failure == _TIMEOUT
         and f.tls_trickle.tries > 0, status="anomaly", layer="tls", detail=lambda f: "tls/throttled",
         explain="a handshake read part of the server's flight and then stalled, but once only, or with no"
                 " measure of this line's speed to tell it from a slow line"),
    Rule(id="tls-unverified", when=_tls_failed, status="anomaly", layer="tls",
         detail=lambda f: f"tls/{f.tls_failure}",
         explain="the handshake failed and neither control nor decoy tells why"),
    Rule(id="http-down", when=lambda f: f.http_failure is not None and _ctl_ok(f) and f.control_http_ok is False,
         status="down", layer="http", detail=lambda f: f"http/{f.http_failure}",
         explain="the request fails here and at the control"),
    Rule(id="http-failure", when=lambda f: f.http_failure is not None and f.control_http_ok is True
         and f.http_reproduced,
         status="blocked", layer="http", detail=lambda f: f"http/{f.http_failure}",
         explain="the request fails here (reset, EOF, timeout) while the control gets the page"),
    Rule(id="http-unverified", when=lambda f: f.http_failure is not None, status="anomaly", layer="http",
         detail=lambda f: f"http/{f.http_failure}", explain="the request failed and no control tells why"),
    Rule(id="redirect-down", when=_hop_down, status="down", layer=_hop_layer, detail=_hop_detail,
         explain="a redirect target fails here and at the control (its name has no address there, or the"
                 " helper does not get the page either)"),
    Rule(id="redirect-blocked", when=_hop_blocked, status="blocked", layer=_hop_layer, detail=_hop_detail,
         explain="a redirect target fails here at its own step (its name does not resolve while the control"
                 " resolves it or the helper follows the redirect to the page; TCP, TLS or HTTP fails while the"
                 " control gets the page)"),
    Rule(id="redirect-unverified", when=lambda f: f.hop_failure is not None, status="anomaly", layer=_hop_layer,
         detail=_hop_detail, explain="a redirect target fails here and no control tells why"),
    Rule(id="dns-inconsistent-page", when=lambda f: bool(f.path_diffs),
         status="blocked", layer="dns", detail=lambda f: "dns/inconsistent",
         explain="a resolver's answer, one the control does not share, leads to a page unlike the control's (the"
                 " helper's by OONI's tests, or the page through the control's answer fetched from here, whose"
                 " title must match too)"),
    Rule(id="dns-only-here", when=lambda f: f.dns_consistent is False and f.control_name_missing
         and not f.tls_verified, status="anomaly", layer="dns", detail=lambda f: "dns/inconsistent",
         explain="the name resolves here but has no address for the control (e.g. a resolver that hijacks"
                 " NXDOMAIN)"),
    Rule(id="redirect-stopped", when=lambda f: f.stopped is not None and f.control_http_ok is False,
         status="down", layer="http", detail=lambda f: f"http/{f.stopped}",
         explain="the redirects end nowhere (a loop, too many, a non-public or non-HTTP target) and the control"
                 " gets no page either"),
    Rule(id="redirect-unfinished", when=lambda f: f.stopped is not None, status="anomaly", layer="http",
         detail=lambda f: f"http/{f.stopped}",
         explain="the redirects end nowhere (a loop, too many, a non-public or non-HTTP target): no page"),
    Rule(id="http-throttled", when=lambda f: f.final_is_page and f.speed.throttled, status="blocked",
         layer="http", detail=lambda f: "http/throttled",
         explain="the page came, but 10 times slower (or worse) than at the control and than this line carries"
                 " (the run's survey of our helper), on two fetches, for a body of 64 KiB or more, the second"
                 " also 10 times slower than the helper's bytes fetched beside it: neither the site, nor the"
                 " line, nor a busy moment explains it"),
    Rule(id="http-throttled-unconfirmed", when=lambda f: f.final_is_page and f.speed.unconfirmed,
         status="anomaly", layer="http", detail=lambda f: "http/throttled",
         explain="the page came 10 times slower than at the control and than this line carries, twice, but the"
                 " sample of the line's speed beside the second fetch failed: a busy moment is not ruled out"),
    Rule(id="https-verified", when=_verified_page, status="ok", layer=None, detail=lambda f: "ok",
         explain="a page over verified TLS: what we got is what the site served (OONI's rule too)"),
    Rule(id="http-diff-https", when=lambda f: f.https_comparison is not None
         and not f.https_comparison.consistent, status="anomaly", layer="http", detail=lambda f: "http/diff",
         explain="the http:// page differs from the same host's page over verified HTTPS (fetched when no helper"
                 " reports the same page)"),
    Rule(id="http-same-as-https", when=lambda f: f.https_same and f.reference == "helper"
         and f.comparison is not None and not f.comparison.consistent, status="ok",
         layer=None, detail=lambda f: "ok",
         explain="the http:// page differs from the helper's, but it is the same as the host's page over verified"
                 " HTTPS fetched from here: the site serves this network another page (a localized edition, or"
                 " a consent wall or refusal at the helper's datacenter), nobody tampered with it"),
    Rule(id="http-diff", when=lambda f: f.comparison is not None and (not f.comparison.consistent
         or f.cross_host_title_diff), status="anomaly", layer="http", detail=lambda f: "http/diff",
         explain="the page differs from the control's (status, and none of size, headers, title match; or a"
                 " redirect to another host whose title is not the control's)"),
    Rule(id="ok", when=lambda f: f.comparison is not None, status="ok", layer=None, detail=lambda f: "ok",
         explain="we got the page and it matches the control's page (by OONI's body, header and title tests)"),
    Rule(id="ok-dns-consistent", when=lambda f: f.final_is_page and f.dns_consistent is True, status="ok",
         layer=None, detail=lambda f: "ok",
         explain="we got the page through answers consistent with the control's DNS; no control page was"
                 " compared"),
    Rule(id="dns-unconfirmed", when=lambda f: f.final_is_page and f.dns_consistent is False, status="anomaly",
         layer="dns", detail=lambda f: "dns/inconsistent",
         explain="our answers differ from the control's, and no page through the control's answers could be"
                 " compared with ours"),
    Rule(id="ok-unverified", when=lambda f: f.final_is_page, status="ok", layer=None, detail=lambda f: "ok",
         explain="we got the page; there was no control page or DNS answer to compare it with"),
    Rule(id="tcp-once", when=lambda f: bool(f.tcp_once) and not f.tcp_connected and not f.tcp_failures,
         status="anomaly", layer="tcp", detail=lambda f: f"tcp/{_first(f.tcp_once)}",
         explain="no address connected, but the failure was seen on one try only (the run ended before a"
                 " second): not evidence enough for more"),
    Rule(id="no-route", when=lambda f: bool(f.probe_addrs) and not f.tcp_connected and not f.tcp_failures,
         status="error", layer=None, detail=lambda f: "local/network_unreachable",
         explain="this machine has no route to any of the site's addresses (a route lookup here fails, e.g. an"
                 " IPv6-only site on an IPv4-only network)"),
    Rule(id="no-evidence", when=lambda f: True, status="anomaly", layer=None, detail=lambda f: "unknown",
         explain="nothing conclusive either way"),
)
