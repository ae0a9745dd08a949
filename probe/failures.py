"""Exceptions to OONI failure strings, in one place, and the vocabulary itself.

Every `failure` we store is a string of OONI's vocabulary (ooni/spec data-formats/df-007-errors.md), so stored
runs read like OONI's data and OONI's data like ours. Anything OONI has no name for is `unknown_failure: ...`
(OONI's own catch-all). Our additions carry a prefix of their own, listed in OUR_PREFIXES:
- `local_error: <errno>`: the fault is on *this machine* (EMFILE, ENOBUFS...); analysis turns it into `error`,
  never into censorship;
- `refused: <why>`: our control helper declined to dial an address by policy (loopback, private, reserved...).

We switch on exception type and errno after unwrapping the causes (httpx and trio wrap the OS error), not on
message text, with one exception: h11 tells a peer that closed before the end of its reply ("without sending
complete message body") from other protocol errors only in words (`classify`, eof_error).
"""

from __future__ import annotations

import errno
import ssl
import sys
from collections.abc import Iterator
from typing import Any

import h11
import trio

# The failures OONI Probe (engine and Measurement Kit) emits today, as df-007 lists them.
OONI_FAILURES = frozenset({
    "android_dns_cache_no_data", "connection_aborted", "connection_already_closed", "connection_refused",
    "connection_reset", "dns_bogon_error", "dns_no_answer", "dns_non_recoverable_failure", "dns_nxdomain_error",
    "dns_reply_with_wrong_query_id", "dns_refused_error", "dns_server_misbehaving", "dns_servfail_error",
    "dns_temporary_failure", "eof_error", "http_request_failed", "host_unreachable", "generic_timeout_error",
    "http_unexpected_redirect_url", "http_unexpected_status_code", "interrupted", "json_parse_error",
    "network_down", "network_reset", "network_unreachable", "quic_incompatible_version", "ssl_failed_handshake",
    "ssl_invalid_hostname", "ssl_unknown_authority", "ssl_invalid_certificate",
})
# ooni/probe-legacy's names (df-007's second table): only ever met in old measurements we import.
OONI_LEGACY_FAILURES = frozenset({
    "socks_error", "address_family_not_supported_error", "connect_error", "connection_done",
    "connection_lost_error", "connection_refused_error", "deferred_timeout_error", "dns_lookup_error",
    "dns_name_error", "dns_name_failure", "response_never_received", "socks_address_not_supported",
    "socks_command_not_supported", "socks_connection_not_allowed", "socks_connection_refused",
    "socks_host_unreachable", "socks_network_unreachable", "socks_server_failure", "socks_ttl_expired",
    "task_timed_out", "tcp_timed_out_error",
})
UNKNOWN_PREFIX = "unknown_failure"  # OONI's catch-all: "unknown_failure: <text>"
LOCAL_PREFIX = "local_error"
REFUSED_PREFIX = "refused"
OUR_PREFIXES = (LOCAL_PREFIX, REFUSED_PREFIX)

TIMEOUT = "generic_timeout_error"
DNS_NXDOMAIN = "dns_nxdomain_error"
DNS_NO_ANSWER = "dns_no_answer"
DNS_SERVFAIL = "dns_servfail_error"
DNS_REFUSED = "dns_refused_error"
DNS_MISBEHAVING = "dns_server_misbehaving"
CONNECTION_RESET = "connection_reset"
CONNECTION_ABORTED = "connection_aborted"
NETWORK_UNREACHABLE = "network_unreachable"
NETWORK_DOWN = "network_down"

# OONI's test helper (oohelperd) reports the control's own DNS lookup in the legacy helper's words; here is what
# each means in ours. It reports "no answer" as an empty list with no failure.
HELPER_DNS = {
    "dns_name_error": DNS_NXDOMAIN,
    "dns_server_failure": DNS_MISBEHAVING,  # REFUSED, SERVFAIL-like and temporary failures, not told apart
    "unknown_error": f"{UNKNOWN_PREFIX}: test helper: unknown_error",
}

_ERRNO = {
    errno.ECONNREFUSED: "connection_refused",
    errno.ECONNRESET: CONNECTION_RESET,
    errno.ECONNABORTED: CONNECTION_ABORTED,
    errno.EPIPE: CONNECTION_RESET,  # writing to a connection the peer reset: OONI has no name of its own for it
    errno.ETIMEDOUT: TIMEOUT,
    errno.EHOSTUNREACH: "host_unreachable",
    errno.EHOSTDOWN: "host_unreachable",
    errno.ENETUNREACH: NETWORK_UNREACHABLE,
    errno.ENETDOWN: NETWORK_DOWN,
    errno.EADDRNOTAVAIL: NETWORK_UNREACHABLE,  # no source address for that family here: no route, in effect
}
# Resource exhaustion and permission problems on our side: never evidence about the network.
_LOCAL_ERRNO = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EACCES, errno.EPERM}

# OpenSSL X509_V_ERR_* codes, as ssl.SSLCertVerificationError.verify_code carries them.
_HOSTNAME_MISMATCH = {62, 64}  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
_UNKNOWN_AUTHORITY = {2, 18, 19, 20, 21}  # no issuer / self-signed / not trusted


def from_helper_dns(failure: str | None, addrs: object, *, ip_literal: bool = False) -> str | None:
    """The control's DNS outcome as a failure of our vocabulary: the test helper's names translated, and an empty
    answer with no failure read as OONI's `dns_no_answer` (an IP-literal URL has nothing to resolve)."""
    if failure is None:
        return DNS_NO_ANSWER if not addrs and not ip_literal else None
    return HELPER_DNS.get(failure, failure)


def is_local(failure: str | None) -> bool:
    return failure is not None and failure.startswith(LOCAL_PREFIX)


def is_timeout(failure: str | None) -> bool:
    return failure == TIMEOUT


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and the members of exception groups, depth first."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, BaseExceptionGroup):
            stack.extend(reversed(e.exceptions))
        for nxt in (e.__context__, e.__cause__):
            if nxt is not None:
                stack.append(nxt)


def _ssl_failure(e: ssl.SSLError) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        code = e.verify_code
        if code in _HOSTNAME_MISMATCH:
            return "ssl_invalid_hostname"
        if code in _UNKNOWN_AUTHORITY:
            return "ssl_unknown_authority"
        return "ssl_invalid_certificate"
    if isinstance(e, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "eof_error"
    return "ssl_failed_handshake"


def classify(exc: BaseException) -> str:
    """The OONI failure string for an exception raised while measuring."""
    for e in _chain(exc):
        # SSL errors first: ssl.SSLError is an OSError whose errno is OpenSSL's, not the kernel's.
        if isinstance(e, ssl.SSLError):
            return _ssl_failure(e)
        if isinstance(e, OSError) and e.errno is not None:
            if e.errno in _LOCAL_ERRNO:
                return f"{LOCAL_PREFIX}: {errno.errorcode.get(e.errno, e.errno)}"
            if e.errno in _ERRNO:
                return _ERRNO[e.errno]
    # httpx (list downloads, the vantage lookup) is imported only where it is used: if it is not loaded, none
    # of its exceptions exist.
    httpx: Any = sys.modules.get("httpx")
    protocol_errors = (h11.RemoteProtocolError, *((httpx.RemoteProtocolError,) if httpx else ()))
    for e in _chain(exc):
        if isinstance(e, trio.TooSlowError | TimeoutError) or (httpx and isinstance(e, httpx.TimeoutException)):
            return TIMEOUT
        if isinstance(e, protocol_errors) and "without sending" in str(e):
            # h11 only says it in words; the condition is a peer that closed before answering in full.
            return "eof_error"
        if isinstance(e, trio.BrokenResourceError | trio.ClosedResourceError | EOFError):
            return "eof_error"
    return f"unknown_failure: {type(exc).__name__}: {exc}"[:300]
