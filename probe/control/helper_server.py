"""The control helper: `probe helper serve`. Run it on a machine outside the censored network.

It speaks OONI's Web Connectivity test-helper protocol (ooni/spec ts-017): POST a JSON request naming a URL and
the endpoints the probe resolved; get back what *this* vantage sees: DNS, TCP to each endpoint, TLS, and the
page. Fields that only our analysis uses start with `x_`; OONI's clients ignore them.

It measures with the probe's own steps (measure.py), so both sides see the network the same way. It is meant
for the open internet, so it never connects to a non-public address: every endpoint, every resolved address and
every redirect target is checked, and the address that is checked is the one dialled (no DNS rebinding).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import signal
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import trio

from ..failures import REFUSED_PREFIX, TIMEOUT
from ..measure.netpolicy import NetPolicy
from ..measure.steps import dns, quic, tcp, tls
from ..measure.steps.dns_socket import DnsSockets
from ..measure.steps.quic import QuicTrust
from ..measure.targets import TargetError, normalise
from ..measure.url import MeasureConfig, measure_url
from ..models import Observations, Target
from .client import LINE_PATH, endpoint
from .h11server import Request, Response, error

MAX_ENDPOINTS = 32
REQUEST_BUDGET = 30.0  # seconds for one whole answer
REFUSED = f"{REFUSED_PREFIX}: not a public address"


@dataclass(frozen=True, slots=True, kw_only=True)
class HelperConfig:
    resolvers: tuple[dns.Resolver, ...]
    policy: NetPolicy
    contexts: tls.TlsContexts
    timeout: float = 10.0
    body_cap: int = 512 * 1024
    dns_sockets: DnsSockets | None = None  # the server's sockets to its resolvers; None: one set per request
    # QUIC handshakes for https URLs (our extension `x_quic_handshake`); None: not tried.
    quic: QuicTrust | None = None


# A sized body for the probe's survey of its own line (netview.line): how fast this helper's bytes reach the
# volunteer is the baseline a throttled site is compared with. Not part of OONI's protocol (its helper has no such
# path; the survey then records the failure and no throttling verdict is given).
LINE_MAX = 1 << 20


def line_body(path: str) -> Response:
    """`GET /x/bytes?n=N`: N bytes (at most LINE_MAX) that do not compress."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    try:
        n = min(int(query.get("n", ["0"])[0]), LINE_MAX)
    except ValueError:
        return error(400, "n must be a number of bytes")
    return Response(200, _noise(max(n, 0)), (("content-type", "application/octet-stream"),))


@functools.lru_cache(maxsize=4)
def _noise(n: int) -> bytes:
    return os.urandom(n)


class BadRequest(ValueError):
    pass


def parse_endpoint(text: Any) -> tuple[str, int]:
    if not isinstance(text, str) or len(text) > 64:
        raise BadRequest(f"endpoint must be a short 'ip:port' string, got {str(text)[:40]!r}")
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadRequest(f"bad endpoint {text!r}: expected ip:port")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise BadRequest(f"bad endpoint {text!r}: not an IP address") from None
    return host, int(port)


def parse_request(body: bytes) -> tuple[Target, list[tuple[str, int]]]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"request is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest("request must be a JSON object")
    url = data.get("http_request")
    if not isinstance(url, str):
        raise BadRequest("http_request must be a URL string")
    try:
        target = normalise(url)
    except TargetError as e:
        raise BadRequest(f"http_request: {e}") from None
    headers = data.get("http_request_headers", {})
    if not isinstance(headers, dict):
        raise BadRequest("http_request_headers must be an object")
    raw = data.get("tcp_connect", [])
    if not isinstance(raw, list):
        raise BadRequest("tcp_connect must be a list of 'ip:port' strings")
    if len(raw) > MAX_ENDPOINTS:
        raise BadRequest(f"tcp_connect lists {len(raw)} endpoints; at most {MAX_ENDPOINTS}")
    return target, list(dict.fromkeys(parse_endpoint(e) for e in raw))


async def _endpoint(cfg: HelperConfig, target: Target, ip: str, port: int, out: dict[str, dict[str, Any]],
                    tls_out: dict[str, dict[str, Any]], quic_out: dict[str, dict[str, Any]]) -> None:
    key = endpoint(ip, port)
    if not cfg.policy.is_public(ip):
        out[key] = {"status": False, "failure": REFUSED}
        return

    start = trio.current_time()

    def clock() -> float:  # the handshake's x_transfer times, from this endpoint's start
        return round(trio.current_time() - start, 4)

    async with trio.open_nursery() as n:
        if cfg.quic is not None and target.scheme == "https":
            n.start_soon(_quic_endpoint, cfg, target, ip, port, quic_out)
        await _tcp_tls_endpoint(cfg, target, ip, port, out, tls_out, clock)


async def _quic_endpoint(cfg: HelperConfig, target: Target, ip: str, port: int,
                         quic_out: dict[str, dict[str, Any]]) -> None:
    assert cfg.quic is not None
    for _ in range(2):  # a lost handshake once more (as the probe does): a lost packet must not read as "no QUIC"
        hs = await quic.handshake(ip, port, target.hostname, trust=cfg.quic, timeout=cfg.timeout / 2,
                                  clock=lambda: 0.0)
        _keep_success(quic_out, endpoint(ip, port),
                      {"server_name": target.hostname, "status": hs.failure is None, "failure": hs.failure})
        if hs.failure not in quic.INTERFERENCE_FAILURES:
            break


async def _tcp_tls_endpoint(cfg: HelperConfig, target: Target, ip: str, port: int, out: dict[str, dict[str, Any]],
                            tls_out: dict[str, dict[str, Any]], clock: Callable[[], float]) -> None:
    key = endpoint(ip, port)

    conn, stream = await tcp.connect(ip, port, timeout=cfg.timeout, origin="probe", clock=clock)
    out[key] = {"status": conn.failure is None, "failure": conn.failure}
    if stream is None:
        return
    if target.scheme != "https":
        await stream.aclose()
        return
    hs = await tls.handshake(stream, ip=ip, port=port, sni=target.hostname, context=cfg.contexts.verify,
                             timeout=cfg.timeout, clock=clock)
    tls_out[key] = {"server_name": target.hostname, "status": hs.failure is None, "failure": hs.failure,
                    "x_transfer": hs.transfer}


def _http_section(obs: Observations) -> dict[str, Any]:
    hops = obs.chain()
    if not hops:
        if obs.bogons and not any(c.origin == "probe" for c in obs.tcp):
            failure = f"{REFUSED_PREFIX}: {obs.target.hostname} resolves only to non-public addresses"
        else:
            dns_fail = next((q.failure for q in obs.dns if q.failure and not q.answers), None)
            tcp_fail = next((c.failure for c in obs.tcp if c.failure), None)
            failure = tcp_fail or dns_fail or "unknown_failure: no address to connect to"
        return {"body_length": -1, "failure": failure, "title": "", "headers": {}, "status_code": -1}
    final = hops[-1]
    return {
        "body_length": final.body_length if final.body_length is not None else -1,
        "failure": final.failure or (f"{REFUSED_PREFIX}: {final.stopped}" if final.stopped else None),
        "title": final.title or "",
        "headers": dict(final.headers),
        "status_code": final.status or -1,
        "x_body_sha256": final.body_sha256,
        "x_transfer": final.transfer,  # how the page came to the helper (steps/transfer.py): the throttling baseline
        "x_redirects": [{"url": h.url, "status": h.status, "location": h.location} for h in hops],
    }


def _dns_section(obs: Observations) -> dict[str, Any]:
    addrs = list(dict.fromkeys(a for q in obs.dns for a in q.answers))
    failure = None
    if not addrs:
        fails = [q.failure for q in obs.dns if q.failure]
        failure = "dns_nxdomain_error" if "dns_nxdomain_error" in fails else (fails[0] if fails else None)
    return {"failure": failure, "addrs": addrs}


async def answer(cfg: HelperConfig, target: Target, endpoints: list[tuple[str, int]]) -> dict[str, Any]:
    mcfg = MeasureConfig(resolvers=cfg.resolvers, policy=cfg.policy, contexts=cfg.contexts, timeout=cfg.timeout,
                         late_window=0.0, body_cap=cfg.body_cap, decoy_sni=None, dns_sockets=cfg.dns_sockets)
    tcp_out: dict[str, dict[str, Any]] = {}
    tls_out: dict[str, dict[str, Any]] = {}
    quic_out: dict[str, dict[str, Any]] = {}
    obs: Observations | None = None
    with trio.move_on_after(REQUEST_BUDGET):
        async with trio.open_nursery() as n:
            for ip, port in endpoints:
                n.start_soon(_endpoint, cfg, target, ip, port, tcp_out, tls_out, quic_out)
            obs = await measure_url(target, mcfg)
    if obs is None:
        return {"dns": {"failure": TIMEOUT, "addrs": []}, "tcp_connect": tcp_out, "tls_handshake": tls_out,
                "http_request": {"body_length": -1, "failure": TIMEOUT, "title": "", "headers": {},
                                 "status_code": -1}, "ip_info": {}}
    # The helper's own view of the addresses it resolved. It tries a failure again (as the probe does): an
    # endpoint that worked on any try worked, and a first try's failure must not read as the control sharing
    # the probe's failure.
    for c in obs.tcp:
        _keep_success(tcp_out, endpoint(c.ip, c.port), {"status": c.failure is None, "failure": c.failure})
    for h in obs.tls:
        if not h.decoy:
            _keep_success(tls_out, endpoint(h.ip, h.port), {"server_name": h.sni, "status": h.failure is None,
                                                            "failure": h.failure, "x_transfer": h.transfer})
    reply = {"dns": _dns_section(obs), "tcp_connect": tcp_out, "tls_handshake": tls_out,
             "http_request": _http_section(obs), "ip_info": {}}
    if cfg.quic is not None and target.scheme == "https":
        # Ours (OONI's clients ignore it): QUIC to the endpoints the probe named, the addresses it tried QUIC at.
        reply["x_quic_handshake"] = quic_out
    return reply


def _keep_success(out: dict[str, dict[str, Any]], key: str, entry: dict[str, Any]) -> None:
    """Keep the endpoint's entry already there (the probe-named endpoints' own), unless this one succeeded."""
    if key not in out or (entry["status"] and not out[key]["status"]):
        out[key] = entry


def make_handler(cfg: HelperConfig):
    async def handle(req: Request) -> Response:
        if req.method == "GET" and req.path.split("?")[0] == "/ip":
            return Response(200, json.dumps({"ip": req.peer}).encode())  # what-is-my-IP, for the vantage lookup
        if req.method == "GET" and req.path.split("?")[0] == LINE_PATH:
            return line_body(req.path)
        if req.method != "POST":
            return error(405, "POST a Web Connectivity control request (JSON) to this URL")
        try:
            target, endpoints = parse_request(req.body)
        except BadRequest as e:
            return error(400, str(e))
        body = await answer(cfg, target, endpoints)
        return Response(200, json.dumps(body).encode())

    return handle


def build_config(*, resolvers: tuple[str, ...] = (), ca_file: str | None = None, allow_net: tuple[str, ...] = (),
                 timeout: float = 10.0) -> HelperConfig:
    if ca_file:
        tls.check_ca_file(ca_file)
    chosen = tuple(dns.Resolver.parse(r) for r in resolvers)
    if not chosen:
        system = dns.system_resolver()
        if system is None:
            raise ValueError("no resolver: give --resolver or configure /etc/resolv.conf")
        chosen = (system,)
    return HelperConfig(resolvers=chosen, policy=NetPolicy.from_cidrs(allow_net),
                        contexts=tls.TlsContexts.build(ca_file), timeout=timeout,
                        quic=QuicTrust.build(ca_file))


async def serve_forever(host: str, port: int, *, resolvers: tuple[str, ...] = (), ca_file: str | None = None,
                        allow_net: tuple[str, ...] = (), tls_cert: str | None = None, tls_key: str | None = None,
                        timeout: float = 10.0,
                        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    import ssl

    from .h11server import serve

    cfg = build_config(resolvers=resolvers, ca_file=ca_file, allow_net=allow_net, timeout=timeout)
    server_ctx = None
    if tls_cert:
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            server_ctx.load_cert_chain(tls_cert, tls_key)
        except (ssl.SSLError, OSError) as e:
            named = f"--tls-cert {tls_cert}" + (f" with --tls-key {tls_key}" if tls_key else "")
            why = re.sub(r"\s*\(_ssl\.c:\d+\)", "", e.strerror or str(e))  # where in OpenSSL helps no one
            raise ValueError(f"{named}: not a certificate and its private key in PEM ({why})") from None
    async with DnsSockets.open() as sockets:
        await serve(make_handler(replace(cfg, dns_sockets=sockets)), host, port, ssl_context=server_ctx,
                    task_status=task_status)


async def serve_until_signal(host: str, port: int, listening: Callable[[int], None], **options: Any) -> None:
    """`serve_forever` until SIGINT or SIGTERM, then return: stopping the helper is not an error.

    `listening` is told the bound port once the socket listens. A failure to start (a port in use, a bad
    certificate) is raised as itself (OSError, ValueError), not inside an exception group."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with trio.open_nursery() as nursery:
                bound = await nursery.start(functools.partial(serve_forever, host, port, **options))
                listening(bound)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
        except BaseExceptionGroup as group:
            leaves = list(_leaves(group))
            if len(leaves) == 1 and isinstance(leaves[0], OSError | ValueError):
                raise leaves[0] from None
            raise


def _leaves(group: BaseExceptionGroup) -> Iterator[BaseException]:
    for e in group.exceptions:
        if isinstance(e, BaseExceptionGroup):
            yield from _leaves(e)
        else:
            yield e
