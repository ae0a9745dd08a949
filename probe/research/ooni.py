"""OONI interoperability: our observations as Web Connectivity measurements, and OONI's as our observations.

Export follows ooni/spec df-000-base (the envelope) and ts-017 (test_keys: queries, tcp_connect,
tls_handshakes, requests, control). `probe_ip` is always "127.0.0.1". `blocking` and `accessible` use OONI's
vocabulary (probe.verdicts.ooni_blocking), and our own status travels in `x_probe_status`. What OONI's format
has no field for (late DNS replies, the decoy flag, bogons, body length and hash of bodies we did not keep, which
address was the control's) travels in `x_probe_*` keys that OONI's tools ignore. Import reads OONI's standard
fields, so a measurement from OONI Explorer or the OONI API becomes observations that our analysis judges; the
extras only fill gaps when the file came from probe.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
from typing import Any

from ..models import ControlResult, DnsQuery, HttpHop, Observations, TcpConnect, TlsHandshake, Verdict
from ..netpolicy import NetPolicy
from ..steps.http import extract_title
from ..targets import normalise
from ..verdicts import ooni_blocking

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
        "x_probe_rcode": q.rcode,
    } for q in obs.dns]
    tcp = [{"ip": c.ip, "port": c.port, "status": {"success": c.failure is None, "failure": c.failure,
                                                   "blocked": None},
            "t0": c.t0, "t": c.t, "x_probe_origin": c.origin} for c in obs.tcp]
    tls = [{"address": _endpoint(h.ip, h.port), "server_name": h.sni, "failure": h.failure,
            "tls_version": h.version, "cipher_suite": h.cipher, "negotiated_protocol": h.alpn,
            "no_tls_verify": h.decoy, "t0": h.t0, "t": h.t, "x_probe_decoy": h.decoy,
            "x_probe_peer_chain": list(h.peer_chain)} for h in obs.tls]
    requests = [{
        "failure": h.failure, "address": _endpoint(h.ip, t.port) if h.ip else None, "t0": h.t0, "t": h.t,
        "request": {"url": h.url, "method": "GET", "headers_list": [], "body": ""},
        "response": None if h.status is None else {
            "code": h.status, "headers_list": [[k, v] for k, v in h.headers], "body": _body(h.body) if h.body
            else None, "body_is_truncated": h.body_truncated},
        "x_probe_body_length": h.body_length, "x_probe_body_sha256": h.body_sha256, "x_probe_stopped": h.stopped,
        "x_probe_title": h.title,
    } for h in reversed(obs.http)]  # OONI lists the last request first
    control: dict[str, Any] | None = None
    c = obs.control
    if c is not None and c.failure is None:
        control = {"dns": {"failure": c.dns_failure, "addrs": list(c.dns_addrs)},
                   "tcp_connect": c.tcp_connect, "tls_handshake": c.tls_handshake or None,
                   "http_request": {"body_length": c.http_body_length if c.http_body_length is not None else -1,
                                    "failure": c.http_failure, "title": c.http_title or "",
                                    "headers": c.http_headers, "status_code": c.http_status or -1,
                                    "x_body_sha256": c.http_body_sha256}}
    dns_failure = next((q.failure for q in obs.dns if q.failure and not q.answers and q.query_type == "A"), None)
    blocking, accessible = ooni_blocking(verdict.status, verdict.layer, verdict.detail)
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
            "control": control, "control_failure": c.failure if c else None,
            "dns_experiment_failure": dns_failure,
            "http_experiment_failure": next((h.failure for h in obs.http if h.failure), None),
            "blocking": blocking, "accessible": accessible, "x_probe_status": verdict.status,
            "x_probe_verdict": {"status": verdict.status, "layer": verdict.layer, "detail": verdict.detail,
                                "rule": verdict.rule, "fingerprint": verdict.fingerprint},
            "x_probe_bogons": list(obs.bogons), "x_probe_category": t.category,
            "x_probe_control_dns": [{"resolver": q.resolver, "query_type": q.query_type, "answers": list(q.answers),
                                     "failure": q.failure} for q in obs.control_dns],
        },
    }


# ------------------------------------------------------------------------------------------------- import

def _text(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, dict):
        return base64.b64decode(value.get("data", ""))
    return str(value).encode("utf-8")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _query(q: dict[str, Any]) -> DnsQuery:
    answers, cnames, ttl = [], [], None
    for a in q.get("answers") or []:
        if a.get("answer_type") in ("A", "AAAA"):
            answers.append(a.get("ipv4") or a.get("ipv6"))
            ttl = a.get("ttl") if ttl is None else ttl
        elif a.get("answer_type") == "CNAME" and a.get("hostname"):
            cnames.append(a["hostname"].rstrip("."))
    engine = q.get("engine") or "system"
    addr = q.get("resolver_address") or ""
    label = f"system:{addr}" if engine in ("system", "getaddrinfo", "go") else f"udp:{addr}"
    return DnsQuery(resolver=label, engine="tcp" if engine == "tcp" else "udp", hostname=q.get("hostname", ""),
                    query_type="AAAA" if q.get("query_type") == "AAAA" else "A", answers=tuple(a for a in answers if a),
                    cnames=tuple(cnames), ttl=ttl, rcode=q.get("x_probe_rcode") or ("NOERROR" if answers else None),
                    failure=q.get("failure"), late_answers=tuple(q.get("x_probe_late_answers") or ()),
                    t0=q.get("t0") or 0.0, t=q.get("t") or 0.0)


def _hop(r: dict[str, Any]) -> HttpHop:
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
        failure=r.get("failure"), stopped=r.get("x_probe_stopped"), t0=r.get("t0") or 0.0, t=r.get("t") or 0.0,
        body=body,
    )


def _control(m: dict[str, Any], tk: dict[str, Any]) -> ControlResult | None:
    c = tk.get("control")
    source = ((m.get("test_helpers") or {}).get("backend") or {}).get("address") or "ooni"
    if tk.get("control_failure"):
        return ControlResult(source=source, failure=tk["control_failure"])
    if not c:
        return None
    d, h = c.get("dns") or {}, c.get("http_request") or {}
    status = h.get("status_code")
    length = h.get("body_length")
    return ControlResult(
        source=source, dns_addrs=tuple(d.get("addrs") or ()), dns_failure=d.get("failure"),
        tcp_connect={k: dict(v) for k, v in (c.get("tcp_connect") or {}).items()},
        tls_handshake={k: dict(v) for k, v in (c.get("tls_handshake") or {}).items()},
        http_status=status if isinstance(status, int) and status > 0 else None, http_failure=h.get("failure"),
        http_title=h.get("title") or None, http_headers={str(k).lower(): str(v) for k, v in
                                                         (h.get("headers") or {}).items()},
        http_body_length=length if isinstance(length, int) and length >= 0 else None,
        http_body_sha256=h.get("x_body_sha256"),
    )


def import_measurement(m: dict[str, Any]) -> Observations:
    """A Web Connectivity measurement (OONI's, or one we exported) as our observations."""
    if m.get("test_name") != "web_connectivity":
        raise ValueError(f"not a web_connectivity measurement: {m.get('test_name')!r}")
    tk = m.get("test_keys") or {}
    target = normalise(str(m.get("input") or ""), category=tk.get("x_probe_category") or "", source="ooni")
    dns = tuple(_query(q) for q in tk.get("queries") or () if q.get("query_type") in ("A", "AAAA"))
    if "x_probe_bogons" in tk:
        bogons = tuple(tk["x_probe_bogons"])
    else:
        bogons = tuple(dict.fromkeys(a for q in dns for a in q.answers if not _POLICY.is_public(a)))
        if not dns and _is_ip(target.hostname) and not _POLICY.is_public(target.hostname):
            bogons = (target.hostname,)
    tcp = tuple(TcpConnect(ip=c["ip"], port=int(c["port"]), origin=c.get("x_probe_origin") or "probe",
                           failure=(c.get("status") or {}).get("failure"), t0=c.get("t0") or 0.0, t=c.get("t") or 0.0)
                for c in tk.get("tcp_connect") or ())
    tls = []
    for h in tk.get("tls_handshakes") or ():
        ip, port = _split_endpoint(h.get("address") or "")
        chain = tuple(h.get("x_probe_peer_chain") or ())
        if not chain and h.get("peer_certificates"):
            from ..steps.tls import cert_info

            chain = tuple(cert_info(_text(c)) for c in h["peer_certificates"])
        tls.append(TlsHandshake(ip=ip, port=port, sni=h.get("server_name") or target.hostname,
                                decoy=bool(h.get("x_probe_decoy", False)), failure=h.get("failure"),
                                version=h.get("tls_version"), cipher=h.get("cipher_suite"),
                                alpn=h.get("negotiated_protocol"), peer_chain=chain, t0=h.get("t0") or 0.0,
                                t=h.get("t") or 0.0))
    http = tuple(_hop(r) for r in reversed(tk.get("requests") or ()))
    control_dns = tuple(DnsQuery(resolver=q["resolver"], engine="doh", hostname=target.hostname,
                                 query_type=q["query_type"], answers=tuple(q["answers"]), failure=q["failure"],
                                 control=True) for q in tk.get("x_probe_control_dns") or ())
    started = str(m.get("measurement_start_time") or "").replace(" ", "T")
    return Observations(target=target, dns=dns, tcp=tcp, tls=tuple(tls), http=http, control=_control(m, tk),
                        control_dns=control_dns, bogons=bogons, started=started + "+00:00" if started else "",
                        runtime_s=float(m.get("test_runtime") or 0.0))
