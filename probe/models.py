"""The records that measuring produces and analysis consumes.

Every step returns flat, frozen records with `failure: str | None` (OONI's vocabulary, see failures.py) and
`t0`/`t` in seconds since the measurement of that URL started. They are plain data so that storage can write
them as rows and `probe reanalyze` can rebuild them from rows without touching the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "blocked", "anomaly", "filtered", "down", "error"]
Layer = Literal["dns", "tcp", "tls", "http"]
ControlState = Literal["ok", "failed", "none"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One URL to measure, normalised; `source` says where it came from (file:line or 'argv')."""

    url: str
    hostname: str  # IDNA (punycode) form, what DNS and SNI use
    scheme: Literal["http", "https"]
    port: int
    category: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsQuery:
    resolver: str  # "system:IP:PORT", "udp:IP:PORT", "doh:URL"
    engine: Literal["udp", "tcp", "doh"]
    hostname: str
    query_type: Literal["A", "AAAA"]
    answers: tuple[str, ...] = ()
    cnames: tuple[str, ...] = ()
    ttl: int | None = None
    rcode: str | None = None
    failure: str | None = None
    # Replies that arrived after the first one, within the listening window: an injector's mark.
    late_answers: tuple[dict[str, Any], ...] = ()
    control: bool = False  # True for the control's own queries (DoH)
    # Copies of the query we sent after the first (at each quarter of the timeout, see dns.SENDS): a resolver answers
    # each copy, so one extra reply is expected then and is no sign of an injector.
    retransmits: int = 0
    t0: float = 0.0
    t: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpConnect:
    ip: str
    port: int
    origin: Literal["probe", "control"]  # whose DNS answer gave us this address
    failure: str | None = None
    # An unreachable failure that this machine's own routing table explains (a route lookup failed too): a
    # local fact, not something the network did. An ICMP unreachable from a router on the path leaves it False;
    # None where nobody looked (a success, or a run stored before the lookup existed).
    no_local_route: bool | None = None
    # 1, 2: which try at this address this is (a failure is tried again on a fresh connection, and every try
    # is kept); 0: not numbered (stored before 2026.12.1, or imported), one try judged on its own as before.
    attempt: int = 0
    t0: float = 0.0
    t: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsHandshake:
    ip: str
    port: int
    sni: str
    decoy: bool = False  # True when the SNI is the decoy, not the measured name
    failure: str | None = None
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    # Leaf first; each: subject, issuer, sans, sha256, not_before, not_after. Kept even when unverified.
    peer_chain: tuple[dict[str, Any], ...] = ()
    # Set on a retry: the first handshake with this name failed so, yet the decoy got through, so we asked again
    # (an SNI filter fails every time; a lost packet does not).
    first_failure: str | None = None
    # As TcpConnect.attempt: the real-name handshakes at one address are numbered 1, 2 (a failure is tried
    # again on a fresh connection); the decoy's is 0.
    attempt: int = 0
    # What came back while the handshake ran (steps/transfer.py): {"bytes", "duration", "events": [[t, n], ...]}:
    # a handshake that trickles and stalls reads some bytes and then none; a dropped ClientHello reads none.
    transfer: dict[str, Any] = field(default_factory=dict)
    t0: float = 0.0
    t: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class QuicHandshake:
    """A QUIC handshake (HTTP/3's transport, UDP) to one address: steps/quic.py. Its verdict stands beside the
    TCP/TLS one and never replaces it (a browser falls back to TCP), see analysis/quic.py."""

    ip: str
    port: int
    sni: str
    decoy: bool = False  # True when the SNI is the decoy, tried only after the real name failed
    failure: str | None = None
    alpn: str | None = None
    peer_chain: tuple[dict[str, Any], ...] = ()  # as TlsHandshake's, kept even when unverified
    # The real name's tries at one address are numbered 1, 2 (a lost handshake is tried again, beside the
    # decoy's); the decoy's is 0.
    attempt: int = 0
    t0: float = 0.0
    t: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TtlProbe:
    """One TTL-limited ClientHello of the locate step (steps/locate.py), sent after a TLS handshake with the
    real name failed with a reset, EOF or timeout twice: how far it got tells where the interference sits."""

    ip: str
    port: int
    sni: str
    ttl: int  # the ClientHello's IP TTL (IPv6: hop limit); the connection itself used the normal one
    # What came back on the TCP connection: None a reply (the server's, or whatever sits at its address),
    # "host_unreachable" a router's ICMP (the ClientHello expired on the way), a reset, EOF or a timeout.
    failure: str | None = None
    failed_step: str | None = None  # "tcp": the fresh connection itself failed; "tls": after the ClientHello
    reply_bytes: int = 0  # bytes of the reply read (a ServerHello, an alert)
    # Who answered a UDP datagram with the same TTL to the same address (ICMP, read unprivileged, as tracepath
    # does): the router at this hop ("time_exceeded"), or the address itself ("unreachable"); None: no ICMP.
    router: str | None = None
    icmp: str | None = None
    t0: float = 0.0
    t: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpHop:
    """One request of a redirect chain.

    A measurement can hold several chains, told apart by `chain`: "" is the page through the first resolver's
    answers (the system resolver: what the volunteer's browser gets); "dns:<resolver>" the page through another
    resolver's different answers; "control" the page fetched from here through the control's DNS answers;
    "https" the https:// page of an http:// URL's host. The extra chains are the self-controls analysis
    compares with when no helper reports the page.
    """

    url: str
    chain: str = ""
    ip: str | None = None  # the peer address we dialled
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    location: str | None = None
    body_length: int | None = None
    body_sha256: str | None = None
    body_truncated: bool = False
    title: str | None = None
    failure: str | None = None
    # Why the chain stopped here although the hop asked to go on (loop cap, bogon target, bad scheme).
    stopped: str | None = None
    # Which step of this hop failed: "dns" (the redirect target's name), "tcp", "tls" or "http".
    failed_step: str | None = None
    # Every try of this request, in order: {"failure", "failed_step", "reused", "t0", "t"} (failure None for a
    # try that got the response). A failed request is tried again on a fresh connection; the hop's own fields
    # are the first try that got a response, else the first failure. () where nothing was numbered (older).
    attempts: tuple[dict[str, Any], ...] = ()
    # How the response came (steps/transfer.py; OONI's LTE records the same as network_events): {"ttfb",
    # "bytes", "duration", "events": [[t, n], ...]}, the time to the first byte after the request was sent, the
    # bytes read for the response and the time from its first byte to its last, the first reads. {} when none.
    transfer: dict[str, Any] = field(default_factory=dict)
    t0: float = 0.0
    t: float = 0.0
    body: bytes = field(default=b"", repr=False, compare=False)  # capped; stored apart, by sha256


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlResult:
    """What the uncensored vantage saw (OONI test-helper response, plus our extra fields)."""

    source: str  # helper URL
    failure: str | None = None  # the helper itself could not be reached or answered badly
    dns_addrs: tuple[str, ...] = ()
    dns_failure: str | None = None
    tcp_connect: dict[str, dict[str, Any]] = field(default_factory=dict)  # "ip:port" -> {status, failure}
    tls_handshake: dict[str, dict[str, Any]] = field(default_factory=dict)  # "ip:port" -> {failure, ...}
    http_status: int | None = None
    http_failure: str | None = None
    http_title: str | None = None
    http_headers: dict[str, str] = field(default_factory=dict)
    http_body_length: int | None = None
    http_body_sha256: str | None = None
    # Our helper's extension (OONI's helpers and clients ignore it): "ip:port" -> {"failure": ...} for a QUIC
    # handshake with the real name; {} when the helper did not try (OONI's, or an older one of ours).
    quic_handshake: dict[str, dict[str, Any]] = field(default_factory=dict)
    http_transfer: dict[str, Any] = field(default_factory=dict)  # the helper's own fetch (x_transfer), as HttpHop's
    t0: float = 0.0
    t: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Observations:
    """Everything measured for one URL, probe side and control side."""

    target: Target
    dns: tuple[DnsQuery, ...] = ()
    tcp: tuple[TcpConnect, ...] = ()
    tls: tuple[TlsHandshake, ...] = ()
    http: tuple[HttpHop, ...] = ()
    quic: tuple[QuicHandshake, ...] = ()  # () for http:// URLs and runs without QUIC (--no-quic, older)
    control: ControlResult | None = None
    control_dns: tuple[DnsQuery, ...] = ()  # DoH answers from the control resolvers
    bogons: tuple[str, ...] = ()  # answers we refused to connect to
    locate: tuple[TtlProbe, ...] = ()  # where a TLS failure sits on the path (steps/locate.py)
    started: str = ""  # ISO 8601, UTC
    runtime_s: float = 0.0

    def chain(self, name: str = "") -> tuple[HttpHop, ...]:
        """The hops of one HTTP chain (see HttpHop.chain); "" is the main one."""
        return tuple(h for h in self.http if h.chain == name)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkView:
    """What the network does to everything, seen once per run before any URL is judged (netview.py).

    Verdicts read it: a name that does not exist is answered by a hijacking resolver (not censorship), but an
    answer from an honest one is; behind a captive portal nothing is judged at all.
    """

    hijacking: dict[str, tuple[str, ...]] = field(default_factory=dict)  # resolver -> what it answers for nothing
    honest: tuple[str, ...] = ()  # resolvers that said NXDOMAIN for names that cannot exist
    check: str | None = None  # what the connectivity check got: None when it got the expected answer
    control_reachable: bool | None = None  # the control answered (None: not asked, or no DoH to ask)
    captive: str | None = None  # why the network is taken for a captive portal
    # How fast this line is: a sized body fetched from our own helper (netview.line): {"bytes", "duration",
    # "ttfb", "failure"}; {} when not measured. Throttling verdicts compare a site's transfer with it.
    line: dict[str, Any] = field(default_factory=dict)
    t: str = ""  # when (ISO 8601, UTC)

    @classmethod
    def from_dict(cls, d: Any) -> NetworkView | None:
        """From its stored JSON form (storage, OONI exports); None for anything else."""
        if not isinstance(d, dict):
            return None
        try:
            return cls(hijacking={str(k): tuple(v) for k, v in (d.get("hijacking") or {}).items()},
                       honest=tuple(d.get("honest") or ()), check=d.get("check"),
                       control_reachable=d.get("control_reachable"), captive=d.get("captive"),
                       line=dict(d.get("line") or {}), t=d.get("t") or "")
        except (TypeError, AttributeError, ValueError):
            return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    status: Status
    layer: Layer | None
    detail: str  # "<layer>/<reason>[:<fingerprint>]"
    rule: str  # id of the rule that fired
    control: ControlState
    fingerprint: str | None = None
    evidence: str = ""  # a sentence a researcher can read
    # Who answers for the signature the verdict rests on (signatures.model.SCOPES): state, isp, opt-in, ...
    scope: str | None = None
    flaky: bool = False  # a failure that a second try did not repeat was seen (never evidence)
    # QUIC beside the verdict above, never instead of it (analysis/quic.py): ok, udp-blocked, sni-blocked,
    # unavailable, failed, error; None when QUIC was not tried.
    quic: str | None = None
