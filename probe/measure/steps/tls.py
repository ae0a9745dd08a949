"""TLS step: a handshake with SNI = the measured name, on the stream the TCP step opened.

What it records beyond pass/fail is what the analysis needs to tell censorship apart from breakage:
- the peer chain even when verification fails (a second, non-verifying handshake fetches it), so a hijack
  can be shown with the certificate that was presented;
- after a reset, EOF or timeout, the same address with a decoy SNI: if the decoy gets through, the filter
  keys on the name (SNI filtering), not on the address.
"""

from __future__ import annotations

import functools
import hashlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import trio
from cryptography import x509
from cryptography.x509.oid import NameOID

from ...failures import TIMEOUT, classify
from ...models import TlsHandshake
from .transfer import CountingStream, Reads

CERT_FAILURES = {"ssl_invalid_hostname", "ssl_unknown_authority", "ssl_invalid_certificate"}
# Failures that an SNI filter produces; only these are worth a decoy handshake.
INTERFERENCE_FAILURES = {"connection_reset", "connection_aborted", "eof_error", TIMEOUT}
BROWSER_ALPN = ["h2", "http/1.1"]

# Opens a fresh TCP connection to the same address: (failure or None, stream or None).
Connector = Callable[[], Awaitable[tuple[str | None, trio.SocketStream | None]]]


@dataclass(frozen=True, slots=True)
class TlsContexts:
    """Built once per run: building an SSLContext costs ~16 ms of CPU."""

    verify: ssl.SSLContext  # system trust store + --ca-file, hostname checked
    noverify: ssl.SSLContext  # to read whatever chain the peer presents
    http: ssl.SSLContext  # control requests (h11) and the vantage lookup (httpx): verifying, ALPN http/1.1 only

    @classmethod
    def build(cls, ca_file: str | None = None) -> TlsContexts:
        def verifying(alpn: list[str]) -> ssl.SSLContext:
            ctx = ssl.create_default_context()
            if ca_file:
                ctx.load_verify_locations(cafile=ca_file)
            ctx.set_alpn_protocols(alpn)
            return ctx

        noverify = ssl.create_default_context()
        noverify.check_hostname = False
        noverify.verify_mode = ssl.CERT_NONE
        noverify.set_alpn_protocols(BROWSER_ALPN)
        return cls(verify=verifying(BROWSER_ALPN), noverify=noverify, http=verifying(["http/1.1"]))


def check_ca_file(path: str) -> None:
    """ValueError naming `path` unless it holds PEM certificates: said before a run or a helper starts."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError) as e:
        why = e.strerror or str(e)
        raise ValueError(f"--ca-file {path}: not a PEM file of certificates ({why.split(' (_ssl.c')[0]})") from None


def _name(n: x509.Name) -> str:
    return n.rfc4514_string()


def cert_info(der: bytes) -> dict[str, Any]:
    return dict(_cert_info(der))  # a copy: callers may keep or change it


@functools.lru_cache(maxsize=512)
def _cert_info(der: bytes) -> dict[str, Any]:
    """Parsed once per certificate: a run meets the same CDN certificates again and again."""
    info: dict[str, Any] = {"sha256": hashlib.sha256(der).hexdigest()}
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as e:
        info["error"] = f"unparseable certificate: {e}"
        return info
    info["subject"] = _name(cert.subject)
    info["issuer"] = _name(cert.issuer)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    info["common_name"] = str(cn[0].value) if cn else None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        info["sans"] = [str(v) for v in san.get_values_for_type(x509.DNSName)] + [
            str(v) for v in san.get_values_for_type(x509.IPAddress)
        ]
    except (x509.ExtensionNotFound, ValueError):
        info["sans"] = []
    info["not_before"] = cert.not_valid_before_utc.isoformat()
    info["not_after"] = cert.not_valid_after_utc.isoformat()
    return info


def _peer_chain(obj: ssl.SSLObject) -> tuple[dict[str, Any], ...]:
    public = getattr(obj, "get_unverified_chain", None)  # Python >= 3.13
    if public is not None:
        ders = [bytes(c) for c in public() or []]
    else:  # Python 3.11/3.12 have it only on the private object
        import _ssl

        certs = obj._sslobj.get_unverified_chain() or []  # type: ignore[attr-defined]
        ders = [c.public_bytes(_ssl.ENCODING_DER) for c in certs]
    if not ders:
        leaf = obj.getpeercert(binary_form=True)
        ders = [leaf] if leaf else []
    return tuple(cert_info(d) for d in ders)


async def handshake(
    stream: trio.SocketStream,
    *,
    ip: str,
    port: int,
    sni: str,
    context: ssl.SSLContext,
    timeout: float,
    clock: Callable[[], float],
    decoy: bool = False,
) -> TlsHandshake:
    """Handshake on `stream`, then close it. Never raises for network reasons."""
    base = TlsHandshake(ip=ip, port=port, sni=sni, decoy=decoy, t0=clock())
    reads = Reads(clock, sent=base.t0)
    tls = trio.SSLStream(CountingStream(stream, reads), context, server_hostname=sni)

    def transfer() -> dict[str, Any]:
        # The handshake's own duration (not the first byte to the last, as for a response): a trickle that
        # stalls shows as bytes that came early and a duration that ran to the timeout.
        return {**reads.record(), "bytes": reads.bytes, "duration": round(clock() - base.t0, 4)}

    try:
        with trio.move_on_after(timeout) as scope:
            await tls.do_handshake()
        if scope.cancelled_caught:
            return replace(base, failure=TIMEOUT, transfer=transfer(), t=clock())
        # SSLStream forwards cipher() and version(), not the unverified chain: that needs the SSLObject itself.
        obj = tls._ssl_object
        cipher = obj.cipher()
        return replace(
            base,
            version=obj.version(),
            cipher=cipher[0] if cipher else None,
            alpn=obj.selected_alpn_protocol(),
            peer_chain=_peer_chain(obj),
            transfer=transfer(),
            t=clock(),
        )
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
        return replace(base, failure=classify(e), transfer=transfer(), t=clock())
    finally:
        with trio.move_on_after(0.5) as cleanup:
            cleanup.shield = True
            await trio.aclose_forcefully(stream)


async def measure(
    stream: trio.SocketStream,
    *,
    ip: str,
    port: int,
    sni: str,
    decoy_sni: str | None,
    contexts: TlsContexts,
    timeout: float,
    clock: Callable[[], float],
    reconnect: Connector,
) -> list[TlsHandshake]:
    """The handshake with the real SNI, plus the follow-ups that make its failure interpretable.

    A failed handshake is tried once more with the real name on a fresh connection (a lost packet or a busy
    server fails once; an SNI filter or a blocked address fails every time), and after a reset, EOF or timeout
    a decoy name goes to the same address at the same time, so confirming costs one handshake's time, not two.
    Every handshake is kept: the real name's are numbered (`attempt`), the decoy's is not.
    """
    main = replace(await handshake(stream, ip=ip, port=port, sni=sni, context=contexts.verify, timeout=timeout,
                                   clock=clock), attempt=1)
    results = [main]
    if main.failure in CERT_FAILURES:
        # The same certificate comes every time: a second look (not verifying) is for the chain, not a retry.
        _, again = await reconnect()
        if again is not None:
            peek = await handshake(again, ip=ip, port=port, sni=sni, context=contexts.noverify,
                                   timeout=timeout, clock=clock)
            results[0] = replace(main, peer_chain=peek.peer_chain, version=peek.version, cipher=peek.cipher)
        return results
    if main.failure is None:
        return results

    async def fresh(name: str, context: ssl.SSLContext, *, decoy: bool) -> TlsHandshake:
        t0 = clock()
        failure, again = await reconnect()
        if again is None:  # the fresh connection failed: this try failed there
            return TlsHandshake(ip=ip, port=port, sni=name, decoy=decoy, failure=failure, t0=t0, t=clock())
        return await handshake(again, ip=ip, port=port, sni=name, context=context, timeout=timeout, clock=clock,
                               decoy=decoy)

    async def retry() -> None:
        results.insert(1, replace(await fresh(sni, contexts.verify, decoy=False), attempt=2))

    async def decoy() -> None:
        assert decoy_sni is not None
        results.append(await fresh(decoy_sni, contexts.noverify, decoy=True))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(retry)
        if main.failure in INTERFERENCE_FAILURES and decoy_sni and decoy_sni != sni:
            nursery.start_soon(decoy)
    return results
