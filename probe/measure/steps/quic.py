"""QUIC step: HTTP/3's handshake (UDP/443) to each tested address of an https URL, with the real SNI.

Censors block QUIC apart from TCP: UDP/443 dropped for one site (browsers then fall back to TCP, slower), or
Initials carrying a name dropped (the Initial is encrypted, but with keys anyone derives from its header, so a
DPI box reads the SNI). To tell those apart, a real name that fails is followed by one handshake with the decoy
name to the same address: the decoy getting through says the filter keys on the name. A handshake that works
is the only one at that address: QUIC adds at most one handshake per address to a URL's work when nothing is
wrong. Every try is kept.

aioquic's `QuicConnection` is sans-I/O: we feed it datagrams from a trio UDP socket and send what it gives us,
until the handshake completes, the connection closes, or the step's timeout passes. The socket is connected,
so an ICMP port unreachable comes back as ECONNREFUSED (`connection_refused`, as OONI's quicping says).
The certificate is checked here after the handshake (aioquic would only give us its alert's text), against
the system's trust anchors and --ca-file, and failures take OONI's ssl_* names.

A network that drops UDP/443 for everything would make every https URL wait out QUIC's timeout after its TCP/TLS
steps were long done (issue 20r: several times a run's wall time). So a run learns it (QuicWatch): once
`LEARN_AFTER` https URLs in a row had every real-name QUIC try lost (timed out) at every address while TCP
connected there, and no QUIC handshake has completed in the run, each further URL's QUIC tries end `GRACE`
seconds (or a few TCP round trips, if more) after its other steps are done (Cutoff). A try ended that way is
recorded with failure `interrupted` (OONI's word for a cancelled operation), never as a timeout: analysis reads
it as no evidence either way (value `failed`, rule quic-cut), so it cannot make `udp-blocked` or `sni-blocked`.
One QUIC handshake completing anywhere in the run unlearns it. Nothing is skipped: every URL still gets its
first try, and a working QUIC handshake completes within the grace (one to a few round trips).
"""

from __future__ import annotations

import contextlib
import math
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import service_identity
import trio
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted
from aioquic.quic.packet import QuicErrorCode
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import crypto
from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address

from ...failures import TIMEOUT, UNKNOWN_PREFIX, classify
from ...models import QuicHandshake
from ..netpolicy import is_ip_literal
from .tls import cert_info

PORT = 443
ALPN = ["h3"]
# Failures a filter on the path produces: the only ones worth a decoy (a refused port or a bad certificate
# would be the same for any name).
INTERFERENCE_FAILURES = {TIMEOUT, "connection_reset"}
# OpenSSL X509_V_ERR_* codes (as failures.py reads them for TCP's TLS).
_UNKNOWN_AUTHORITY = {2, 18, 19, 20, 21}
# A try ended by the URL's cutoff (below), not by its own timeout: not evidence of loss.
CUT_SHORT = "interrupted"
# URLs in a row whose QUIC was lost everywhere while TCP worked, before the run cuts QUIC short; and the grace
# after a URL's other steps. QUIC started with TCP, so by the time TCP, TLS and HTTP are done (three round trips
# at least) a working handshake whose first Initial got through (one round trip) has completed; the grace covers
# one lost Initial more (aioquic resends it after 0.2 s: its initial RTT is 0.1 s), or RTTS of the URL's slowest
# TCP connect on a long path.
LEARN_AFTER = 3
GRACE = 0.5
RTTS = 4


class Cutoff:
    """When one URL's QUIC tries must end: never, until the run has learned that UDP/443 is dropped and the
    URL's other steps are done (then a grace later). Each try's cancel scope follows it."""

    def __init__(self) -> None:
        self.at = math.inf
        self.done_at: float | None = None  # trio time the URL's other steps finished
        self.grace = GRACE
        self._scopes: set[trio.CancelScope] = set()

    def end_at(self, at: float) -> None:
        self.at = min(self.at, at)
        for scope in self._scopes:
            scope.deadline = min(scope.deadline, self.at)

    @contextlib.contextmanager
    def scope(self, timeout: float) -> Iterator[trio.CancelScope]:
        with trio.CancelScope(deadline=min(trio.current_time() + timeout, self.at)) as scope:
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)


@dataclass(slots=True)
class QuicWatch:
    """What one run (one measuring process) has learned of QUIC on this network: see the module's docstring."""

    lost_in_a_row: int = 0
    completed: bool = False  # a QUIC handshake completed somewhere in the run
    live: set[Cutoff] = field(default_factory=set)

    @property
    def dropped(self) -> bool:
        """UDP/443 looks dropped wholesale: QUIC tries are cut a grace after each URL's other steps."""
        return not self.completed and self.lost_in_a_row >= LEARN_AFTER

    def open(self) -> Cutoff:
        cut = Cutoff()
        self.live.add(cut)
        return cut

    def steps_done(self, cut: Cutoff, grace: float) -> None:
        """The URL's other steps are over: its QUIC ends `grace` later if the run has learned the drop."""
        cut.done_at, cut.grace = trio.current_time(), grace
        if self.dropped:
            cut.end_at(cut.done_at + grace)

    def close(self, cut: Cutoff, tries: list[QuicHandshake], tcp_connected: set[str]) -> None:
        """The URL's QUIC is over: learn from its tries (only uncut ones at addresses TCP reached count)."""
        self.live.discard(cut)
        if any(h.failure is None for h in tries):
            self.completed, self.lost_in_a_row = True, 0
            return
        real = [h for h in tries if not h.decoy]
        if not real or any(h.failure == CUT_SHORT for h in real):
            return  # no new evidence either way
        if all(h.failure == TIMEOUT and h.ip in tcp_connected for h in real):
            self.lost_in_a_row += 1
        else:
            self.lost_in_a_row = 0
        if self.dropped:  # learned: URLs already past their other steps are cut too
            for other in self.live:
                if other.done_at is not None:
                    other.end_at(max(trio.current_time(), other.done_at + other.grace))


@dataclass(frozen=True, slots=True)
class QuicTrust:
    """The trust anchors, loaded once per run: the system's and --ca-file's (as tls.TlsContexts)."""

    store: crypto.X509Store

    @classmethod
    def build(cls, ca_file: str | None = None) -> QuicTrust:
        store = crypto.X509Store()
        paths = ssl.get_default_verify_paths()
        for cafile, capath in ((paths.cafile, paths.capath), (ca_file, None)):
            if cafile or capath:
                with contextlib.suppress(crypto.Error):  # no system bundle: --ca-file alone (checked before)
                    store.load_locations(cafile, capath)
        return cls(store=store)

    def failure(self, leaf: x509.Certificate, chain: list[x509.Certificate], name: str) -> str | None:
        """None when the chain leads to a trusted anchor and the leaf is valid now and for `name`."""
        try:
            crypto.X509StoreContext(self.store, crypto.X509.from_cryptography(leaf),
                                    [crypto.X509.from_cryptography(c) for c in chain]).verify_certificate()
        except crypto.X509StoreContextError as e:
            code = e.errors[0] if e.errors else None
            return "ssl_unknown_authority" if code in _UNKNOWN_AUTHORITY else "ssl_invalid_certificate"
        try:
            if is_ip_literal(name):
                verify_certificate_ip_address(leaf, name)
            else:
                verify_certificate_hostname(leaf, name)
        except service_identity.VerificationError:
            return "ssl_invalid_hostname"
        except (service_identity.CertificateError, ValueError):  # a malformed name or extension
            return "ssl_invalid_certificate"
        return None


def _closed(event: ConnectionTerminated) -> str:
    """A connection the peer (or whoever forged its packets) closed during the handshake."""
    if QuicErrorCode.CRYPTO_ERROR <= event.error_code < QuicErrorCode.CRYPTO_ERROR + 256:
        return "ssl_failed_handshake"  # a TLS alert inside QUIC
    return f"{UNKNOWN_PREFIX}: quic connection closed: 0x{event.error_code:x} {event.reason_phrase}"[:300]


async def handshake(ip: str, port: int, sni: str, *, trust: QuicTrust | None, timeout: float,
                    clock: Callable[[], float], decoy: bool = False, cutoff: Cutoff | None = None) -> QuicHandshake:
    """One QUIC handshake; `trust` None: the certificate is not checked (the decoy's). Never raises for network
    reasons. Ended by `cutoff` before its own timeout: failure CUT_SHORT."""
    cutoff = cutoff or Cutoff()
    own_deadline = trio.current_time() + timeout
    base = QuicHandshake(ip=ip, port=port, sni=sni, decoy=decoy, t0=clock())
    config = QuicConfiguration(is_client=True, alpn_protocols=ALPN, server_name=sni, verify_mode=ssl.CERT_NONE,
                               idle_timeout=timeout)
    conn = QuicConnection(configuration=config)
    addr = (ip, port)
    try:
        sock = trio.socket.socket(trio.socket.AF_INET6 if ":" in ip else trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    except OSError as e:
        return replace(base, failure=classify(e), t=clock())
    with sock:
        try:
            with cutoff.scope(timeout):
                await sock.connect(addr)
                conn.connect(addr, now=trio.current_time())
                while True:
                    for data, _ in conn.datagrams_to_send(now=trio.current_time()):
                        await sock.send(data)
                    timer = conn.get_timer()
                    with trio.move_on_at(math.inf if timer is None else timer):
                        data = await sock.recv(65536)
                        conn.receive_datagram(data, addr, now=trio.current_time())
                    if timer is not None and trio.current_time() >= timer:
                        conn.handle_timer(now=trio.current_time())
                    while (event := conn.next_event()) is not None:
                        if isinstance(event, HandshakeCompleted):
                            done = _completed(base, conn, event, trust)
                            await _close(conn, sock)
                            return replace(done, t=clock())
                        if isinstance(event, ConnectionTerminated):
                            return replace(base, failure=_closed(event), t=clock())
            return replace(base, failure=CUT_SHORT if cutoff.at < own_deadline else TIMEOUT, t=clock())
        except OSError as e:
            return replace(base, failure=classify(e), t=clock())


def _completed(base: QuicHandshake, conn: QuicConnection, event: HandshakeCompleted,
               trust: QuicTrust | None) -> QuicHandshake:
    # aioquic keeps the peer's certificates on its TLS object only (no public accessor in 1.x).
    tls = conn.tls
    leaf: x509.Certificate | None = getattr(tls, "_peer_certificate", None)
    chain: list[x509.Certificate] = list(getattr(tls, "_peer_certificate_chain", []) or [])
    certs = [c.public_bytes(Encoding.DER) for c in ([leaf] if leaf else []) + chain]
    failure = None
    if trust is not None:
        failure = "ssl_invalid_certificate" if leaf is None else trust.failure(leaf, chain, base.sni)
    return replace(base, failure=failure, alpn=event.alpn_protocol, peer_chain=tuple(cert_info(d) for d in certs))


async def _close(conn: QuicConnection, sock: trio.socket.SocketType) -> None:
    """Finish the handshake on the server's side (our Finished is still queued), then say goodbye
    (CONNECTION_CLOSE) as a browser would, rather than leave the server waiting."""
    try:
        for data, _ in conn.datagrams_to_send(now=trio.current_time()):
            await sock.send(data)
        conn.close()
        for data, _ in conn.datagrams_to_send(now=trio.current_time()):
            await sock.send(data)
    except OSError:
        pass


async def measure(ip: str, *, sni: str, decoy_sni: str | None, trust: QuicTrust, timeout: float,
                  clock: Callable[[], float], port: int = PORT, cutoff: Cutoff | None = None) -> list[QuicHandshake]:
    """The real name's handshake; after a failure a filter could explain, the decoy name and the real name
    again, at the same time (as the TLS step confirms: a lost packet fails once, a filter every time).

    Everything stays within one step's `timeout` (the first try gets half, the two follow-ups the other half
    together): QUIC runs beside TCP and TLS and must not make a URL take longer than its slowest TCP/TLS path
    would (a TLS handshake that times out, then its retry). A working handshake takes a round trip or two; half
    the timeout leaves aioquic room for two retransmissions of a lost Initial (its probe timeout starts near one
    second and doubles). Where QUIC works, this is the address's only handshake. A try cut short (`cutoff`) is
    not followed up: the cut is the run's decision, not a sign of a filter.
    """
    cut = cutoff or Cutoff()
    main = replace(await handshake(ip, port, sni, trust=trust, timeout=timeout / 2, clock=clock, cutoff=cut),
                   attempt=1)
    results = [main]
    if (main.failure not in INTERFERENCE_FAILURES or not decoy_sni or decoy_sni == sni
            or cut.at <= trio.current_time()):
        return results

    async def again() -> None:
        results.append(replace(await handshake(ip, port, sni, trust=trust, timeout=timeout / 2, clock=clock,
                                               cutoff=cut), attempt=2))

    async def decoy() -> None:
        results.append(await handshake(ip, port, decoy_sni, trust=None, timeout=timeout / 2, clock=clock,
                                       decoy=True, cutoff=cut))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(decoy)
        nursery.start_soon(again)
    return sorted(results, key=lambda h: (h.decoy, h.attempt))
