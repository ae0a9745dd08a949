"""OONI interoperability: our observations as Web Connectivity measurements, and OONI's as our observations.

Export follows ooni/spec df-000-base (the envelope) and ts-017 (test_keys: queries, tcp_connect,
tls_handshakes, requests, control); the control's DoH lookups are `queries` with engine "doh", as OONI writes
its own. `probe_ip` is always "127.0.0.1". `blocking` and `accessible` use OONI's vocabulary
(probe.verdicts.ooni_blocking), and our own status travels in `x_probe_status`. What OONI's format has no field
for (late DNS replies, the decoy flag, bogons, body length and hash of bodies we did not keep, which address was
the control's) travels in `x_probe_*` keys that OONI's tools ignore. Import reads OONI's standard fields in the
roles they had (see the notes above `import_measurement`), so a measurement from OONI Explorer or the OONI API
(Web Connectivity 0.4 or 0.5) becomes observations that our analysis judges; the extras only fill gaps when the
file came from probe.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import urllib.parse
from dataclasses import replace
from typing import Any, Literal

import dns.exception
import dns.message

from .. import failures
from ..control.client import parse_helper_reply
from ..measure.netpolicy import NetPolicy, is_ip_literal
from ..measure.steps.dns_wire import parse_reply
from ..measure.steps.http import extract_title
from ..measure.targets import normalise
from ..models import (
    ControlResult,
    DnsQuery,
    HttpHop,
    Observations,
    QuicHandshake,
    Target,
    TcpConnect,
    TlsHandshake,
    Verdict,
)
from ..verdicts import ooni_blocking
from . import ooni_locate

TEST_VERSION = "0.5.28"
_POLICY = NetPolicy()


def _ooni_time(iso: str) -> str:
    try:
        t = dt.datetime.fromisoformat(iso)
    except ValueError:
        t = dt.datetime.now(dt.UTC)
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _split_endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else 0


def _body(data: bytes) -> str | dict[str, str]:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"format": "base64", "data": base64.b64encode(data).decode()}


def _answers(q: DnsQuery) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"answer_type": "CNAME", "hostname": c, "ttl": q.ttl} for c in q.cnames]
    for a in q.answers:
        key = "ipv6" if ":" in a else "ipv4"
        out.append({"answer_type": "AAAA" if key == "ipv6" else "A", key: a, "ttl": q.ttl})
    return out


def _resolver_address(label: str) -> str:
    return label.split(":", 1)[1] if ":" in label else label


def export_measurement(obs: Observations, verdict: Verdict, run: dict[str, Any], software_version: str) -> dict:
    """One Web Connectivity measurement (a JSON object) for one of our measurements."""
    t = obs.target
    asn = f"AS{run.get('vantage_asn') or 0}"
    cc = run.get("vantage_country") or "ZZ"
    start = _ooni_time(obs.started or run["started"])
    queries = [{
        "hostname": q.hostname, "query_type": q.query_type, "engine": "system" if q.resolver.startswith("system:")
        else q.engine, "resolver_address": _resolver_address(q.resolver), "failure": q.failure,
        "answers": _answers(q) or None, "t0": q.t0, "t": q.t, "x_probe_late_answers": list(q.late_answers),
        "x_probe_rcode": q.rcode, "x_probe_retransmits": q.retransmits,
    } for q in obs.dns + obs.control_dns]  # the control's DoH lookups as OONI writes them (engine "doh")
    tcp = [{"ip": c.ip, "port": c.port, "status": {"success": c.failure is None, "failure": c.failure,
                                                   "blocked": None},
            "t0": c.t0, "t": c.t, "x_probe_origin": c.origin, "x_probe_no_local_route": c.no_local_route,
            "x_probe_attempt": c.attempt}
           for c in obs.tcp]
    tls = [{"address": _endpoint(h.ip, h.port), "server_name": h.sni, "failure": h.failure,
            "tls_version": h.version, "cipher_suite": h.cipher, "negotiated_protocol": h.alpn,
            "no_tls_verify": h.decoy, "t0": h.t0, "t": h.t, "x_probe_decoy": h.decoy,
            "x_probe_peer_chain": list(h.peer_chain), "x_probe_attempt": h.attempt,
            "x_probe_first_failure": h.first_failure, "x_probe_transfer": h.transfer} for h in obs.tls]
    # OONI's own key for QUIC (urlgetter's, the same record as a TLS handshake's); Web Connectivity has none yet.
    quic = [{"address": _endpoint(h.ip, h.port), "server_name": h.sni, "failure": h.failure,
             "tls_version": "TLSv1.3" if h.failure is None else None, "negotiated_protocol": h.alpn,
             "alpn": ["h3"], "no_tls_verify": h.decoy, "t0": h.t0, "t": h.t, "x_probe_decoy": h.decoy,
             "x_probe_peer_chain": list(h.peer_chain), "x_probe_attempt": h.attempt} for h in obs.quic]
    def request(h: HttpHop) -> dict[str, Any]:
        hop = normalise(h.url) if h.url.startswith(("http://", "https://")) else t
        return {
            "failure": h.failure, "address": _endpoint(h.ip, hop.port) if h.ip else None, "t0": h.t0, "t": h.t,
            "request": {"url": h.url, "method": "GET", "headers_list": [], "body": ""},
            "response": None if h.status is None else {
                "code": h.status, "headers_list": [[k, v] for k, v in h.headers], "body": _body(h.body) if h.body
                else None, "body_is_truncated": h.body_truncated},
            "x_probe_body_length": h.body_length, "x_probe_body_sha256": h.body_sha256,
            "x_probe_stopped": h.stopped, "x_probe_title": h.title, "x_probe_failed_step": h.failed_step,
            "x_probe_attempts": list(h.attempts), "x_probe_transfer": h.transfer,
        }

    # OONI lists the last request first. `requests` is the main chain (what OONI's own requests are); our
    # self-control chains (another resolver's answer, the control's, https://) travel apart.
    requests = [request(h) for h in reversed(obs.chain())]
    extra_chains = {chain: [request(h) for h in reversed(obs.chain(chain))]
                    for chain in dict.fromkeys(h.chain for h in obs.http) if chain}
    control: dict[str, Any] | None = None
    c = obs.control
    if c is not None and c.failure is None:
        control = {"dns": {"failure": c.dns_failure, "addrs": list(c.dns_addrs)},
                   "tcp_connect": c.tcp_connect, "tls_handshake": c.tls_handshake or None,
                   "http_request": {"body_length": c.http_body_length if c.http_body_length is not None else -1,
                                    "failure": c.http_failure, "title": c.http_title or "",
                                    "headers": c.http_headers, "status_code": c.http_status or -1,
                                    "x_body_sha256": c.http_body_sha256, "x_transfer": c.http_transfer}}
        if c.quic_handshake:
            control["x_quic_handshake"] = c.quic_handshake  # as our helper sends it
    dns_failure = next((q.failure for q in obs.dns if q.failure and not q.answers and q.query_type == "A"), None)
    blocking, accessible = ooni_blocking(verdict.status, verdict.layer, verdict.detail, verdict.rule)
    return {
        "annotations": {"engine_name": "probe", "platform": "linux"},
        "data_format_version": "0.2.0",
        "input": t.url,
        "measurement_start_time": start,
        "probe_asn": asn, "probe_cc": cc, "probe_ip": "127.0.0.1",
        "probe_network_name": run.get("vantage_network") or "",
        "report_id": f"{_ooni_time(run['started']).replace('-', '').replace(':', '').replace(' ', 'T')}Z"
                     f"_webconnectivity_{cc}_{asn[2:]}_n1_probe{run['id']:010d}",
        "resolver_asn": "AS0", "resolver_ip": _resolver_address(obs.dns[0].resolver).rsplit(":", 1)[0].strip("[]")
        if obs.dns else None,
        "software_name": "probe", "software_version": software_version,
        "test_helpers": {"backend": {"address": c.source, "type": "https"}} if c else {},
        "test_name": "web_connectivity", "test_runtime": obs.runtime_s, "test_start_time": _ooni_time(run["started"]),
        "test_version": TEST_VERSION,
        "test_keys": {
            "queries": queries, "tcp_connect": tcp, "tls_handshakes": tls, "requests": requests,
            **({"quic_handshakes": quic} if quic else {}),
            "network_events": _network_events(obs),
            "x_probe_chains": extra_chains,
            "control": control, "control_failure": c.failure if c else None,
            "dns_experiment_failure": dns_failure,
            "http_experiment_failure": next((h.failure for h in obs.chain() if h.failure), None),
            "blocking": blocking, "accessible": accessible, "x_probe_status": verdict.status,
            "x_probe_verdict": {"status": verdict.status, "layer": verdict.layer, "detail": verdict.detail,
                                "rule": verdict.rule, "fingerprint": verdict.fingerprint, "scope": verdict.scope,
                                "flaky": verdict.flaky, "quic": verdict.quic},
            "x_probe_bogons": list(obs.bogons), "x_probe_category": t.category,
            "x_probe_iterative_trace": ooni_locate.export_trace(obs.locate),
            "x_probe_network": json.loads(run.get("network") or "null"),  # the run's survey (netview.py)
        },
    }


# ------------------------------------------------------------------------------------------------- import
#
# OONI's records are read in the roles they had in the measurement (ts-017; Web Connectivity 0.4 and 0.5):
# - getaddrinfo lookups (0.5: engine "getaddrinfo", query_type "ANY", A and AAAA answers together; 0.4: engine
#   "system", one record per type) are the system resolver: the one OONI judges by, and ours too;
# - DNS-over-UDP lookups (0.5's extra resolver) are resolvers under test, like `probe run --resolver`;
# - DNS-over-HTTPS lookups are control (the answer travels encrypted), like `probe run --doh`;
# - TCP connects to addresses only the control resolved (the test helper's or DoH's) have origin "control";
# - records of a redirect hop (tag "depth=N", N > 0; or, untagged, another host's) are that hop's evidence, never
#   the URL's own: a hop whose connection failed before any request becomes a failing hop of the chain, as our
#   own HTTP step records it;
# - the test helper's DNS words (`dns_name_error`, an empty list) are translated (failures.from_helper_dns);
# - `x_dns_duplicate_responses` are late replies to the query they answer (same resolver, type, transaction).

Engine = Literal["udp", "tcp", "doh"]
QueryType = Literal["A", "AAAA"]
Origin = Literal["probe", "control"]
_SYSTEM_ENGINES = {"system", "getaddrinfo", "go"}
_CONTROL_ENGINES = {"doh"}
_RCODE_OF_FAILURE = {failures.DNS_NXDOMAIN: "NXDOMAIN", failures.DNS_SERVFAIL: "SERVFAIL",
                     failures.DNS_REFUSED: "REFUSED", failures.DNS_NO_ANSWER: "NOERROR"}
_REDIRECTS = {301, 302, 303, 307, 308}


def _text(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, dict):
        return base64.b64decode(value.get("data", ""))
    return str(value).encode("utf-8")


def _depth(record: dict[str, Any]) -> int | None:
    """The redirect depth a record belongs to (tag "depth=N"), None when untagged."""
    for tag in record.get("tags") or ():
        if isinstance(tag, str) and tag.startswith("depth=") and tag[6:].isdigit():
            return int(tag[6:])
    return None


def _host_of(url: str) -> str:
    try:
        return (urllib.parse.urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _raw_reply(q: dict[str, Any], qtype: str) -> dict[str, Any] | None:
    """Answers and rcode from the DNS message OONI kept (`raw_response`), when it did and it parses."""
    raw = q.get("raw_response")
    if not raw or qtype not in ("A", "AAAA"):
        return None
    try:
        return parse_reply(dns.message.from_wire(base64.b64decode(raw)), qtype)
    except (ValueError, dns.exception.DNSException):
        return None


def _queries(q: dict[str, Any], label: str, engine: Engine, *, control: bool) -> list[DnsQuery]:
    """One OONI lookup as our queries: a getaddrinfo `ANY` lookup becomes the A query and (when it got IPv6
    addresses) the AAAA query it stands for."""
    by_type: dict[str, list[str]] = {"A": [], "AAAA": []}
    cnames, ttl = [], None
    for a in q.get("answers") or []:
        kind = a.get("answer_type")
        if kind in by_type and (a.get("ipv4") or a.get("ipv6")):
            by_type[kind].append(a.get("ipv4") or a.get("ipv6"))
            ttl = a.get("ttl") if ttl is None else ttl
        elif kind == "CNAME" and a.get("hostname"):
            cnames.append(a["hostname"].rstrip("."))
    qtype = q.get("query_type")
    # ANY (getaddrinfo) stands for both queries, or for the A query alone when it got no IPv6 address.
    types: list[QueryType] = [qtype] if qtype in ("A", "AAAA") else ["A", "AAAA"] if by_type["AAAA"] else ["A"]
    failure = q.get("failure")
    out = []
    for t in types:
        answers = by_type[t]
        raw = _raw_reply(q, t)
        rcode = q.get("x_probe_rcode") or (raw["rcode"] if raw else None) or (
            "NOERROR" if answers else _RCODE_OF_FAILURE.get(failure or ""))
        out.append(DnsQuery(resolver=label, engine=engine, hostname=q.get("hostname", ""), query_type=t,
                            answers=tuple(dict.fromkeys(answers)), cnames=tuple(cnames), ttl=ttl, rcode=rcode,
                            failure=failure if not answers else None, control=control,
                            late_answers=tuple(q.get("x_probe_late_answers") or ()),
                            retransmits=int(q.get("x_probe_retransmits") or 0),
                            t0=q.get("t0") or 0.0, t=q.get("t") or 0.0))
    return out


def _role(q: dict[str, Any]) -> tuple[str, Engine, bool]:
    """(resolver label, engine, is control) for an OONI lookup."""
    engine = str(q.get("engine") or "system")
    addr = q.get("resolver_address") or ""
    if engine in _SYSTEM_ENGINES:
        return f"system:{addr or 'getaddrinfo'}", "udp", False
    if engine in _CONTROL_ENGINES:
        return f"doh:{addr}", "doh", True
    return f"udp:{addr}", "tcp" if engine == "tcp" else "udp", False


def _late_replies(tk: dict[str, Any], queries: list[tuple[dict[str, Any], DnsQuery]]) -> list[DnsQuery]:
    """Attach `x_dns_duplicate_responses` to the query each one answers."""
    dups = [d for d in tk.get("x_dns_duplicate_responses") or () if isinstance(d, dict)]
    out = []
    for raw, q in queries:
        late = list(q.late_answers)
        for d in dups:
            same = (d.get("resolver_address") == raw.get("resolver_address") and d.get("query_type") == q.query_type
                    and d.get("hostname") == raw.get("hostname") and d.get("engine", "udp") == raw.get("engine"))
            tid, dtid = raw.get("transaction_id"), d.get("transaction_id")
            if not same or (tid is not None and dtid is not None and tid != dtid):
                continue
            reply = _queries(d, q.resolver, q.engine, control=q.control)[0]
            late.append({"answers": list(reply.answers), "rcode": reply.rcode, "t": d.get("t") or 0.0})
        out.append(replace(q, late_answers=tuple(late)))
    return out


def _tls(h: dict[str, Any], hostname: str) -> TlsHandshake:
    ip, port = _split_endpoint(h.get("address") or "")
    chain = tuple(h.get("x_probe_peer_chain") or ())
    if not chain and h.get("peer_certificates"):
        from ..measure.steps.tls import cert_info

        chain = tuple(cert_info(_text(c)) for c in h["peer_certificates"])
    return TlsHandshake(ip=ip, port=port, sni=h.get("server_name") or hostname,
                        decoy=bool(h.get("x_probe_decoy", False)), failure=h.get("failure"),
                        version=h.get("tls_version"), cipher=h.get("cipher_suite"), alpn=h.get("negotiated_protocol"),
                        peer_chain=chain, attempt=int(h.get("x_probe_attempt") or 0),
                        first_failure=h.get("x_probe_first_failure"), transfer=_transfer(h.get("x_probe_transfer")),
                        t0=h.get("t0") or 0.0, t=h.get("t") or 0.0)


def _network_events(obs: Observations) -> list[dict[str, Any]]:
    """OONI's `network_events` (as Web Connectivity LTE writes them): the first reads of each hop of the main
    chain, from our transfer evidence (all of it travels in `x_probe_transfer`; this is for OONI's tools)."""
    out: list[dict[str, Any]] = []
    for h in obs.chain():
        address = _endpoint(h.ip, normalise(h.url).port) if h.ip and h.url.startswith(("http://", "https://")) \
            else None
        out.extend({"address": address, "failure": None, "num_bytes": int(n), "operation": "read", "proto": "tcp",
                    "t": t} for t, n in h.transfer.get("events") or ())
    return out


def _transfer(v: Any) -> dict[str, Any]:
    """Transfer evidence (steps/transfer.py) as exported; {} for anything else (OONI's own measurements)."""
    return dict(v) if isinstance(v, dict) else {}


def _quic(h: dict[str, Any], hostname: str) -> QuicHandshake:
    ip, port = _split_endpoint(h.get("address") or "")
    return QuicHandshake(ip=ip, port=port, sni=h.get("server_name") or hostname,
                         decoy=bool(h.get("x_probe_decoy", False)), failure=h.get("failure"),
                         alpn=h.get("negotiated_protocol"), peer_chain=tuple(h.get("x_probe_peer_chain") or ()),
                         attempt=int(h.get("x_probe_attempt") or 0), t0=h.get("t0") or 0.0, t=h.get("t") or 0.0)


def _hop(r: dict[str, Any], chain: str = "") -> HttpHop:
    req, resp = r.get("request") or {}, r.get("response") or {}
    body = _text(resp.get("body")) if resp else b""
    headers = tuple((str(k).lower(), _text(v).decode("utf-8", "replace")) for k, v in (resp.get("headers_list") or ()))
    if not headers and resp.get("headers"):
        headers = tuple((str(k).lower(), str(v)) for k, v in resp["headers"].items())
    status = resp.get("code") if resp else None
    ip, _ = _split_endpoint(r["address"]) if r.get("address") else (None, 0)
    length = r.get("x_probe_body_length")
    return HttpHop(
        url=req.get("url", ""), ip=ip, status=status or None, headers=headers, location=dict(headers).get("location"),
        body_length=length if length is not None else (len(body) if status else None),
        body_sha256=r.get("x_probe_body_sha256") or (hashlib.sha256(body).hexdigest() if status else None),
        body_truncated=bool(resp.get("body_is_truncated")),
        title=r.get("x_probe_title") or extract_title(body, dict(headers).get("content-type")),
        failure=r.get("failure"), stopped=r.get("x_probe_stopped"), failed_step=r.get("x_probe_failed_step"),
        chain=chain, attempts=tuple(r.get("x_probe_attempts") or ()), transfer=_transfer(r.get("x_probe_transfer")),
        t0=r.get("t0") or 0.0, t=r.get("t") or 0.0, body=body,
    )


def _control(m: dict[str, Any], tk: dict[str, Any], ip_literal: bool) -> ControlResult | None:
    source = ((m.get("test_helpers") or {}).get("backend") or {}).get("address") or "ooni"
    if tk.get("control_failure"):
        return ControlResult(source=source, failure=tk["control_failure"])
    if not tk.get("control"):
        return None
    return parse_helper_reply(source, tk["control"], ip_literal=ip_literal)


class _Measurement:
    """One OONI measurement's records sorted into the URL's own (depth 0) and each redirect hop's."""

    def __init__(self, m: dict[str, Any], target: Target) -> None:
        tk = m.get("test_keys") or {}
        self.tk = tk
        self.target = target
        self.tagged = any(_depth(r) is not None for key in ("queries", "tcp_connect", "tls_handshakes", "requests")
                          for r in tk.get(key) or ())
        self.queries = [q for q in tk.get("queries") or () if isinstance(q, dict)]
        self.tcp = [c for c in tk.get("tcp_connect") or () if isinstance(c, dict) and c.get("ip")]
        self.tls = [h for h in tk.get("tls_handshakes") or () if isinstance(h, dict)]

    def at_depth(self, record: dict[str, Any], depth: int, hostname: str) -> bool:
        d = _depth(record)
        if d is not None:
            return d == depth
        return not self.tagged and (record.get("hostname") or record.get("server_name") or hostname) == hostname

    def lookups(self, depth: int, hostname: str) -> list[tuple[dict[str, Any], DnsQuery]]:
        out: list[tuple[dict[str, Any], DnsQuery]] = []
        for q in self.queries:
            if q.get("query_type") not in ("A", "AAAA", "ANY") or not self.at_depth(q, depth, hostname):
                continue
            label, engine, control = _role(q)
            out.extend((q, x) for x in _queries(q, label, engine, control=control))
        return out


def _own_connects(meas: _Measurement, probe_addrs: set[str], control_addrs: set[str]) -> list[TcpConnect]:
    out = []
    for c in meas.tcp:
        ip = str(c["ip"])
        d = _depth(c)
        if (d is not None and d != 0) or (d is None and meas.tagged):
            continue
        origin: Origin
        if c.get("x_probe_origin") in ("probe", "control"):
            origin = c["x_probe_origin"]
        else:
            if ip in probe_addrs:
                origin = "probe"
            elif ip in control_addrs:
                origin = "control"
            elif not probe_addrs and not control_addrs:
                origin = "probe"  # nothing tells whose it was (no lookups at all): the probe's, as OONI 0.4 did
            else:
                continue  # an address nobody resolved for this host: a redirect hop's (untagged data)
        status = c.get("status") or {}
        if int(c.get("port") or 0) != meas.target.port and status.get("failure"):
            continue  # 0.5 also connects to 443 to validate an http:// URL's addresses: not the URL's connection
        out.append(TcpConnect(ip=ip, port=int(c.get("port") or 0), origin=origin, failure=status.get("failure"),
                              no_local_route=bool(c.get("x_probe_no_local_route")),
                              attempt=int(c.get("x_probe_attempt") or 0), t0=c.get("t0") or 0.0,
                              t=c.get("t") or 0.0))
    return out


def _own_handshakes(meas: _Measurement, addrs: set[str]) -> list[TlsHandshake]:
    """The URL's TLS handshakes. A handshake on another port (0.5 validates an http:// URL's addresses on 443)
    counts only when it succeeded: it then shows the address is good for the name, while its failure says
    nothing about the URL we measured."""
    t = meas.target
    out = []
    for h in meas.tls:
        hs = _tls(h, t.hostname)
        d = _depth(h)
        if d is not None and d != 0:
            continue
        if d is None and ((hs.sni != t.hostname and not hs.decoy) or (addrs and hs.ip not in addrs)):
            continue
        if hs.port != t.port and hs.failure is not None:
            continue
        out.append(hs)
    return out


def _chain(meas: _Measurement) -> list[tuple[int | None, dict[str, Any]]]:
    """The requests in chain order with their depth. OONI lists the last request first; with depth tags, the
    request of each depth that fetched the page (tag fetch_body=true, or any when untagged)."""
    requests = [r for r in meas.tk.get("requests") or () if isinstance(r, dict)]
    if not any(_depth(r) is not None for r in requests):
        return [(None, r) for r in reversed(requests)]
    by_depth: dict[int, dict[str, Any]] = {}
    for r in reversed(requests):
        d = _depth(r)
        if d is None or "fetch_body=false" in (r.get("tags") or ()):
            continue
        if d not in by_depth or (not (by_depth[d].get("response") or {}) and r.get("response")):
            by_depth[d] = r
    return sorted(by_depth.items())


def _failed_next_hop(meas: _Measurement, depth: int, url: str) -> HttpHop | None:
    """The next hop of a redirect when OONI recorded its lookup and connects but no request (0.5 stops there
    when they fail): a failing hop, as our own HTTP step records a redirect it could not follow."""
    parts = urllib.parse.urlsplit(url)
    host = _host_of(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    literal = is_ip_literal(host)  # nothing to resolve: the connects are the evidence
    lookups = [] if literal else [q for _, q in meas.lookups(depth, host) if not q.control]

    def for_this_hop(c: dict[str, Any]) -> bool:
        """Tagged with this depth; untagged, to an address this hop's lookups gave (or its IP literal)."""
        if _depth(c) is not None:
            return _depth(c) == depth
        return not meas.tagged and (str(c["ip"]) == host if literal else any(str(c["ip"]) in q.answers
                                                                               for q in lookups))

    connects = [c for c in meas.tcp if for_this_hop(c) and int(c.get("port") or 0) == port]
    handshakes = [h for h in (_tls(x, host) for x in meas.tls if meas.at_depth(x, depth, host)) if h.port == port]
    if not lookups and not connects:
        return None
    system = [q for q in lookups if q.resolver.startswith("system:")] or lookups
    if system and not any(q.answers for q in system):
        failure = next((q.failure for q in system if q.failure == failures.DNS_NXDOMAIN), None) or next(
            (q.failure for q in system if q.failure), failures.DNS_NO_ANSWER)
        return HttpHop(url=url, failure=failure, failed_step="dns")
    ok = [c for c in connects if not (c.get("status") or {}).get("failure")]
    if connects and not ok:
        c = connects[0]
        return HttpHop(url=url, ip=str(c["ip"]), failure=(c.get("status") or {}).get("failure"), failed_step="tcp")
    if parts.scheme == "https":
        good = [h for h in handshakes if h.failure is None]
        if handshakes and not good:
            return HttpHop(url=url, ip=handshakes[0].ip, failure=handshakes[0].failure, failed_step="tls")
    return None


def _hops(meas: _Measurement) -> tuple[HttpHop, ...]:
    """The main chain, then the self-control chains of a probe export."""
    chain = _chain(meas)
    hops = [_hop(r) for _, r in chain]
    if hops and hops[-1].failure is None and hops[-1].status in _REDIRECTS and hops[-1].location \
            and not hops[-1].stopped:
        last_depth = chain[-1][0]
        depth = (last_depth if last_depth is not None else len(hops) - 1) + 1
        nxt = urllib.parse.urljoin(hops[-1].url, hops[-1].location)
        failed = _failed_next_hop(meas, depth, nxt)
        if failed is not None:
            hops.append(failed)
    for name, requests in (meas.tk.get("x_probe_chains") or {}).items():
        hops.extend(_hop(r, str(name)) for r in reversed(requests) if isinstance(r, dict))
    return tuple(hops)


def _hop_lookups(meas: _Measurement, hops: tuple[HttpHop, ...]) -> list[DnsQuery]:
    """Lookups of the redirect targets' names: each hop's own DNS evidence (facts match them by name)."""
    out: list[DnsQuery] = []
    for depth, hop in enumerate(hops[1:], 1):
        host = _host_of(hop.url)
        if hop.chain == "" and host and host != meas.target.hostname and not is_ip_literal(host):
            out.extend(q for _, q in meas.lookups(depth, host) if q not in out)
    return out


def import_measurement(m: dict[str, Any]) -> Observations:
    """A Web Connectivity measurement (OONI's 0.4 or 0.5, or one we exported) as our observations."""
    if m.get("test_name") != "web_connectivity":
        raise ValueError(f"not a web_connectivity measurement: {m.get('test_name')!r}")
    tk = m.get("test_keys") or {}
    target = normalise(str(m.get("input") or ""), category=tk.get("x_probe_category") or "", source="ooni")
    ip_literal = is_ip_literal(target.hostname)
    meas = _Measurement(m, target)
    own = _late_replies(tk, meas.lookups(0, target.hostname))
    dns_here = tuple(q for q in own if not q.control)
    control_dns = tuple(q for q in own if q.control) + tuple(  # x_probe_control_dns: exports before 2026.11
        DnsQuery(resolver=q["resolver"], engine="doh", hostname=target.hostname, query_type=q["query_type"],
                 answers=tuple(q["answers"]), failure=q["failure"], control=True)
        for q in tk.get("x_probe_control_dns") or ())
    control = _control(m, tk, ip_literal)
    probe_addrs = {a for q in dns_here for a in q.answers} | ({target.hostname.strip("[]")} if ip_literal else set())
    control_addrs = {a for q in control_dns for a in q.answers} | set(control.dns_addrs if control else ())
    if "x_probe_bogons" in tk:
        bogons = tuple(tk["x_probe_bogons"])
    else:
        bogons = tuple(dict.fromkeys(a for q in dns_here for a in q.answers if not _POLICY.is_public(a)))
        if not dns_here and ip_literal and not _POLICY.is_public(target.hostname.strip("[]")):
            bogons = (target.hostname.strip("[]"),)
    tcp = _own_connects(meas, probe_addrs, control_addrs)
    tls = _own_handshakes(meas, probe_addrs | control_addrs)
    hops = _hops(meas)
    hop_lookups = _hop_lookups(meas, hops)
    dns_here += tuple(q for q in hop_lookups if not q.control)
    control_dns += tuple(q for q in hop_lookups if q.control)
    started = str(m.get("measurement_start_time") or "").replace(" ", "T")
    quic = tuple(_quic(h, target.hostname) for h in tk.get("quic_handshakes") or () if isinstance(h, dict))
    return Observations(target=target, dns=dns_here, tcp=tuple(tcp), tls=tuple(tls), http=hops, quic=quic,
                        control=control, control_dns=control_dns, bogons=bogons,
                        locate=ooni_locate.import_trace(m.get("test_keys") or {}),
                        started=started + "+00:00" if started else "", runtime_s=float(m.get("test_runtime") or 0.0))
