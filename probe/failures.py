"""Exceptions to OONI failure strings, in one place.

We switch on exception type and errno after unwrapping the causes (httpx and trio wrap the OS error), never on
message text. Errors that say something about *this machine* (EMFILE, ENOBUFS...) become `local_error: ...`
(our one extension of OONI's vocabulary): analysis turns them into `error`, never into censorship.
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import Iterator

import httpx
import trio

TIMEOUT = "generic_timeout_error"
LOCAL_PREFIX = "local_error"

_ERRNO = {
    errno.ECONNREFUSED: "connection_refused",
    errno.ECONNRESET: "connection_reset",
    errno.ECONNABORTED: "connection_reset",
    errno.EPIPE: "connection_reset",
    errno.ETIMEDOUT: TIMEOUT,
    errno.EHOSTUNREACH: "host_unreachable",
    errno.EHOSTDOWN: "host_unreachable",
    errno.ENETUNREACH: "network_unreachable",
    errno.ENETDOWN: "network_unreachable",
    errno.EADDRNOTAVAIL: "network_unreachable",
}
# Resource exhaustion and permission problems on our side: never evidence about the network.
_LOCAL_ERRNO = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EACCES, errno.EPERM}

# OpenSSL X509_V_ERR_* codes, as ssl.SSLCertVerificationError.verify_code carries them.
_HOSTNAME_MISMATCH = {62, 64}  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
_UNKNOWN_AUTHORITY = {2, 18, 19, 20, 21}  # no issuer / self-signed / not trusted


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
    for e in _chain(exc):
        if isinstance(e, trio.TooSlowError | httpx.TimeoutException | TimeoutError):
            return TIMEOUT
        if isinstance(e, httpx.RemoteProtocolError) and "without sending" in str(e):
            # h11 only says it in words; the condition is a peer that closed before answering.
            return "eof_error"
        if isinstance(e, trio.BrokenResourceError | trio.ClosedResourceError | EOFError):
            return "eof_error"
    return f"unknown_failure: {type(exc).__name__}: {exc}"[:300]
