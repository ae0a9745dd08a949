"""OONI Web Connectivity measurements of each kind that OONI publishes from Pakistan, written for these tests.

Each one is shaped like OONI's published measurements (ooni/spec nettests/ts-017-web-connectivity.md and the
data formats df-001, df-002, df-005, df-006), in both generations:
- 0.4 ("classic"): system-resolver lookups one record per type (engine "system"), TCP connects (and TLS
  handshakes for https://) to those addresses only, the whole redirect chain in `requests`, last request first;
- 0.5 ("LTE"): a getaddrinfo lookup (query_type "ANY", A and AAAA together), a DNS-over-UDP and a DNS-over-HTTPS
  lookup beside it, connects to the test helper's addresses too, TLS handshakes on 443 that validate an http://
  URL's addresses (tag fetch_body=false), every record tagged with its redirect depth (depth=N) and a
  transaction id, a connectivity step per redirect (no request when it fails), `x_dns_duplicate_responses`;
  each 0.5 measurement also comes without its tags (transaction ids only, as records of earlier 0.5 builds
  are), so that import must place a redirect hop's records by host and address.

Each carries OONI's own verdict (`blocking`, `accessible`, `dns_consistency`) as the classic analysis computes
it for such data. Nothing here is ever contacted: the addresses are data. `python -m tests.ooni_fixtures FILE`
writes them all as JSON Lines, to look at or to feed `probe import-ooni`.
"""

from __future__ import annotations

import copy
import itertools
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

V04, V05 = "0.4.3", "0.5.28"
# Services the fixtures say the measuring probe used: recorded values that import only reads, never contacts.
# Documentation addresses and names (RFC 5737, RFC 2606) stand for the public resolver, DoH server and helper.
UDP_RESOLVER = "192.0.2.53:53"
DOH_RESOLVER = "https://doh.example/dns-query"
HELPER = "https://th.example"
NAYATEL_SURF_SAFELY = "203.82.48.83"  # Nayatel's blockpage server, as its DNS answers for blocked names
ISP_NOTICE_SERVER = "182.176.64.9"  # an ISP server no signature knows, serving a notice of its own
MOBILINK_NOTICE = "http://119.73.65.87:8080/redirect.html?accessurl="

SURF_SAFELY_PAGE = (
    "<html><head><title>Surf Safely!</title></head><body><h1>Surf Safely!</h1><p>This website is not accessible."
    " The content you asked for is prohibited for viewership from within Pakistan.</p></body></html>")
UNKNOWN_NOTICE = ("<html><head><title>Notice</title></head><body><p>This URL is unavailable on our network"
                  " by order.</p></body></html>")
NGINX_DOWN = "<html><head><title>502 Bad Gateway</title></head><body><center>502</center></body></html>"


def page(title: str, size: int = 6000) -> str:
    para = f"<p>{title}: reporting, analysis and comment from our correspondents, updated through the day.</p>"
    body = para * (size // len(para) + 1)
    return f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"


SITE_HEADERS = {"Content-Type": "text/html; charset=utf-8", "Server": "nginx", "X-Cache": "HIT",
                "X-Served-By": "cache-sin1"}


@dataclass
class Site:
    host: str
    v4: tuple[str, ...]
    v6: tuple[str, ...] = ()
    title: str = "Daily News and Analysis"
    body: str = ""
    headers: dict[str, str] = field(default_factory=lambda: dict(SITE_HEADERS))

    def __post_init__(self) -> None:
        self.body = self.body or page(self.title)

    @property
    def addrs(self) -> tuple[str, ...]:
        return self.v4 + self.v6


NEWS = Site(host="www.news-daily.example", v4=("104.21.44.10", "172.67.140.21"), v6=("2606:4700:3030::6815:2c0a",))
BLOG = Site(host="blog.voices.example", v4=("185.199.108.153",), title="Voices Blog: Essays from Lahore")
SHOP = Site(host="shop.cdn-store.example", v4=("151.101.1.195", "151.101.65.195"), title="Store Catalogue Online")
RIGHTS = Site(host="www.rights-watch.example", v4=("95.216.10.20",), title="Rights Watch Reports Archive")
TUBE = Site(host="video.tube-site.example", v4=("142.250.181.14",), v6=("2a00:1450:4018:80a::200e",),
            title="Watch Videos Online Channel")
SITES = (NEWS, BLOG, SHOP, RIGHTS, TUBE)


def _answers(addrs: tuple[str, ...] | list[str], cname: str | None = None) -> list[dict[str, Any]] | None:
    out: list[dict[str, Any]] = []
    for a in addrs:
        key, kind = ("ipv6", "AAAA") if ":" in a else ("ipv4", "A")
        out.append({"asn": 0, "as_org_name": "", "answer_type": kind, key: a, "ttl": None})
    if cname:
        out.append({"answer_type": "CNAME", "hostname": cname + ".", "ttl": None})
    return out or None


class Builder:
    """One measurement under construction, in the shape of one Web Connectivity version."""

    def __init__(self, version: str, url: str) -> None:
        self.version = version
        self.url = url
        self.lte = version.startswith("0.5")
        self.tids = itertools.count(10001)
        self.queries: list[dict[str, Any]] = []
        self.tcp: list[dict[str, Any]] = []
        self.tls: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []  # chain order; written last-first
        self.duplicates: list[dict[str, Any]] = []
        self.control: dict[str, Any] | None = None
        self.control_failure: str | None = None

    def _tags(self, depth: int, *extra: str, classic: bool = True) -> dict[str, Any]:
        if not self.lte:
            return {}
        tags = (["classic"] if classic else []) + list(extra) + [f"depth={depth}"]
        return {"tags": tags, "transaction_id": next(self.tids)}

    # -- DNS
    def system_lookup(self, host: str, addrs: tuple[str, ...] | list[str], failure: str | None = None,
                      depth: int = 0) -> None:
        if self.lte:
            self.queries.append({"answers": _answers(addrs), "engine": "getaddrinfo", "failure": failure,
                                 "hostname": host, "query_type": "ANY", "resolver_hostname": None,
                                 "resolver_port": None, "resolver_address": "", "t0": 0.001, "t": 0.05,
                                 **self._tags(depth)})
            return
        v4 = [a for a in addrs if ":" not in a]
        v6 = [a for a in addrs if ":" in a]
        for qtype, got in (("A", v4), ("AAAA", v6)):
            self.queries.append({"answers": _answers(got), "engine": "system",
                                 "failure": failure if not addrs else (None if got else "dns_no_answer"),
                                 "hostname": host, "query_type": qtype, "resolver_hostname": None,
                                 "resolver_port": None, "resolver_address": "", "t": 0.05})

    def udp_lookup(self, host: str, addrs: tuple[str, ...] | list[str], failure: str | None = None,
                   depth: int = 0) -> list[dict[str, Any]]:
        """0.5's extra DNS-over-UDP lookup (E003); returns the A and AAAA records (duplicates refer to them)."""
        out = []
        for qtype in ("A", "AAAA"):
            got = [a for a in addrs if (":" in a) == (qtype == "AAAA")]
            rec = {"answers": _answers(got), "engine": "udp",
                   "failure": failure if not addrs else (None if got else "dns_no_answer"), "hostname": host,
                   "query_type": qtype, "resolver_hostname": None, "resolver_port": None,
                   "resolver_address": UDP_RESOLVER, "t0": 0.001, "t": 0.04, **self._tags(depth, classic=False)}
            self.queries.append(rec)
            out.append(rec)
        return out

    def duplicate(self, of: dict[str, Any], addrs: list[str]) -> None:
        dup = {k: v for k, v in of.items() if k not in ("answers", "t", "failure")}
        self.duplicates.append({**dup, "answers": _answers(addrs), "failure": None, "t": 0.09})

    def doh_lookup(self, host: str, addrs: tuple[str, ...] | list[str], failure: str | None = None) -> None:
        for qtype in ("A", "AAAA"):
            got = [a for a in addrs if (":" in a) == (qtype == "AAAA")]
            self.queries.append({"answers": _answers(got), "engine": "doh",
                                 "failure": failure if not addrs else (None if got else "dns_no_answer"),
                                 "hostname": host, "query_type": qtype, "resolver_hostname": None,
                                 "resolver_port": None, "resolver_address": DOH_RESOLVER, "t0": 0.001, "t": 0.25,
                                 **self._tags(0, classic=False)})

    # -- TCP, TLS
    def connect(self, ip: str, port: int, failure: str | None = None, depth: int = 0, classic: bool = True,
                fetch_body: bool = True) -> None:
        self.tcp.append({"ip": ip, "port": port, "status": {"failure": failure, "success": failure is None,
                                                            **({} if self.lte else {"blocked": False})},
                         "t0": 0.3, "t": 0.4, **self._tags(depth, "tcptls_experiment",
                                                            f"fetch_body={str(fetch_body).lower()}",
                                                            classic=classic)})

    def handshake(self, ip: str, port: int, sni: str, failure: str | None = None, depth: int = 0,
                  fetch_body: bool = True, classic: bool = True) -> None:
        ok = failure is None
        self.tls.append({"network": "tcp", "address": f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}",
                         "cipher_suite": "TLS_AES_128_GCM_SHA256" if ok else "", "failure": failure,
                         "negotiated_protocol": "h2" if ok else "", "no_tls_verify": False, "server_name": sni,
                         "tls_version": "TLSv1.3" if ok else "", "t0": 0.4, "t": 0.6,
                         **self._tags(depth, "tcptls_experiment", f"fetch_body={str(fetch_body).lower()}",
                                      classic=classic)})

    # -- HTTP
    def request(self, url: str, ip: str | None, port: int, *, status: int | None = None, body: str = "",
                headers: dict[str, str] | None = None, failure: str | None = None, depth: int = 0) -> None:
        response = None
        if status is not None:
            hdrs = dict(headers or {})
            response = {"body": body, "body_is_truncated": False, "code": status,
                        "headers_list": [[k, v] for k, v in hdrs.items()], "headers": hdrs}
        self.requests.append({
            "network": "tcp", "address": (f"[{ip}]:{port}" if ip and ":" in ip else f"{ip}:{port}") if ip else None,
            "alpn": "", "failure": failure,
            "request": {"body": "", "body_is_truncated": False, "headers_list": [["Host", url.split("/")[2]]],
                        "headers": {"Host": url.split("/")[2]}, "method": "GET", "tor": {"is_tor": False},
                        "x_transport": "tcp", "url": url},
            "response": response, "t0": 0.6, "t": 0.9,
            **self._tags(depth, "tcptls_experiment", "fetch_body=true")})

    # -- control
    def helper(self, *, addrs: tuple[str, ...] | list[str], port: int, dns_failure: str | None = None,
               tcp_failure: str | None = None, tls: bool = False, tls_failure: str | None = None,
               status: int | None = 200, body: str = "", title: str = "", http_failure: str | None = None,
               headers: dict[str, str] | None = None) -> None:
        endpoints = {(f"[{a}]:{port}" if ":" in a else f"{a}:{port}"): a for a in addrs}
        self.control = {
            "dns": {"failure": dns_failure, "addrs": list(addrs)},
            "tcp_connect": {ep: {"status": tcp_failure is None and ":" not in a,
                                 "failure": tcp_failure if ":" not in a else "host_unreachable"}
                            for ep, a in endpoints.items()},
            "tls_handshake": {ep: {"server_name": "", "status": tls_failure is None, "failure": tls_failure}
                              for ep, a in endpoints.items() if tls and ":" not in a} or None,
            "http_request": {"body_length": len(body.encode()) if status else -1, "failure": http_failure,
                             "title": title, "headers": headers if headers is not None else dict(SITE_HEADERS),
                             "status_code": status if status else -1},
            "ip_info": {},
        }

    def build(self, *, blocking: str | bool | None, accessible: bool | None, dns_consistency: str | None,
              asn: str = "AS23674", network: str = "Nayatel (Pvt) Ltd") -> dict[str, Any]:
        http_failure = next((r["failure"] for r in reversed(self.requests) if r["failure"]), None)
        dns_failure = next((q["failure"] for q in self.queries
                            if q["engine"] in ("system", "getaddrinfo") and not q["answers"]), None)
        tk: dict[str, Any] = {
            "agent": "redirect", "client_resolver": "203.82.48.3", "retries": None, "socksproxy": None,
            "network_events": [], "queries": self.queries, "tcp_connect": self.tcp, "tls_handshakes": self.tls,
            "requests": list(reversed(self.requests)), "control": self.control,
            "control_failure": self.control_failure, "dns_experiment_failure": dns_failure,
            "http_experiment_failure": http_failure, "dns_consistency": dns_consistency,
            "blocking": blocking, "accessible": accessible,
        }
        if self.lte:
            tk["x_dns_duplicate_responses"] = self.duplicates
            tk["x_control_request"] = {"http_request": self.url, "http_request_headers": {},
                                       "tcp_connect": sorted({f"{c['ip']}:{c['port']}" for c in self.tcp})}
            tk["x_blocking_flags"] = 0
        return {
            "annotations": {"architecture": "arm64", "engine_name": "ooniprobe-engine", "platform": "android"},
            "data_format_version": "0.2.0", "input": self.url, "measurement_start_time": "2025-10-14 09:31:02",
            "probe_asn": asn, "probe_cc": "PK", "probe_ip": "127.0.0.1", "probe_network_name": network,
            "report_id": "20251014T093055Z_webconnectivity_PK_23674_n1_fixture", "resolver_asn": asn,
            "resolver_ip": "203.82.48.3", "software_name": "ooniprobe-android", "software_version": "3.10.0",
            "test_helpers": {"backend": {"address": HELPER, "type": "https"}}, "test_name": "web_connectivity",
            "test_runtime": 1.2, "test_start_time": "2025-10-14 09:30:55", "test_version": self.version,
            "test_keys": tk,
        }


@dataclass(frozen=True)
class Fixture:
    kind: str
    name: str
    measurement: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"


def _port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _probe_side(b: Builder, site: Site, addrs: tuple[str, ...], *, failure: str | None = None,
                udp: bool = True, doh: bool = True, udp_addrs: tuple[str, ...] | None = None) -> None:
    """The DNS step from the volunteer's network: the system resolver's answer (and 0.5's extra lookups)."""
    b.system_lookup(site.host, addrs, failure)
    if b.lte and udp:
        b.udp_lookup(site.host, site.addrs if udp_addrs is None else udp_addrs)
    if b.lte and doh:
        b.doh_lookup(site.host, site.addrs)


def _validate_443(b: Builder, site: Site, addrs: tuple[str, ...], scheme: str) -> None:
    """0.5 (E001): TLS handshakes on 443 that show an http:// URL's addresses are good for the name."""
    if b.lte and scheme == "http":
        for a in addrs:
            if ":" not in a:
                b.connect(a, 443, fetch_body=False)
                b.handshake(a, 443, site.host, fetch_body=False)


def _connect_all(b: Builder, site: Site, addrs: tuple[str, ...], scheme: str, failure: str | None = None,
                 tls_failure: str | None = None, control_only: tuple[str, ...] = ()) -> None:
    port = _port(scheme)
    for a in addrs + (control_only if b.lte else ()):
        classic = a in addrs
        v6 = ":" in a
        b.connect(a, port, "host_unreachable" if v6 else failure, classic=classic)
        if scheme == "https" and not v6 and failure is None:
            b.handshake(a, port, site.host, tls_failure, classic=classic)


def _fetch(b: Builder, site: Site, scheme: str, addr: str, **kw: Any) -> None:
    b.request(f"{scheme}://{site.host}/", addr, _port(scheme), **kw)


def _helper_ok(b: Builder, site: Site, scheme: str, addrs: tuple[str, ...] | None = None) -> None:
    b.helper(addrs=site.addrs if addrs is None else addrs, port=_port(scheme), tls=scheme == "https",
             body=site.body, title=site.title, headers=site.headers)


# ------------------------------------------------------------------------------------------------- the kinds

def accessible(version: str, site: Site, scheme: str) -> Fixture:
    b = Builder(version, f"{scheme}://{site.host}/")
    _probe_side(b, site, site.addrs)
    _connect_all(b, site, site.addrs, scheme)
    _validate_443(b, site, site.v4, scheme)
    _fetch(b, site, scheme, site.v4[0], status=200, body=site.body, headers=site.headers)
    _helper_ok(b, site, scheme)
    return Fixture("accessible", f"{site.host}-{scheme}-{version}",
                   b.build(blocking=False, accessible=True, dns_consistency="consistent"))


def accessible_cdn(version: str, site: Site, scheme: str) -> Fixture:
    """A CDN answering each vantage with other addresses (another /24): consistent for OONI by ASN."""
    b = Builder(version, f"{scheme}://{site.host}/")
    here = ("23.50.7.18",)
    _probe_side(b, site, here, udp_addrs=here)
    _connect_all(b, site, here, scheme, control_only=site.v4)  # 0.5 also tries the helper's addresses
    _validate_443(b, site, here, scheme)
    _fetch(b, site, scheme, here[0], status=200, body=site.body, headers=site.headers)
    _helper_ok(b, site, scheme)
    return Fixture("accessible", f"cdn-{site.host}-{scheme}-{version}",
                   b.build(blocking=False, accessible=True, dns_consistency="consistent"))


def dns_nxdomain(version: str, site: Site, scheme: str) -> Fixture:
    b = Builder(version, f"{scheme}://{site.host}/")
    _probe_side(b, site, (), failure="dns_nxdomain_error")
    if not b.lte:  # 0.4's HTTP client resolves by itself and fails the same way
        _fetch(b, site, scheme, None, failure="dns_nxdomain_error")
    _helper_ok(b, site, scheme)
    return Fixture("dns-system", f"nxdomain-{site.host}-{scheme}-{version}",
                   b.build(blocking="dns", accessible=False, dns_consistency="inconsistent"))


def dns_censor_ip(version: str, site: Site, scheme: str) -> Fixture:
    """Nayatel: the ISP's resolver points the name at its blockpage server."""
    b = Builder(version, f"{scheme}://{site.host}/")
    lie = (NAYATEL_SURF_SAFELY,)
    _probe_side(b, site, lie)
    if scheme == "http":
        b.connect(lie[0], 80)
        _fetch(b, site, scheme, lie[0], status=200, body=SURF_SAFELY_PAGE, headers={"Content-Type": "text/html"})
    else:
        b.connect(lie[0], 443)
        b.handshake(lie[0], 443, site.host, "ssl_invalid_hostname")
        if not b.lte:
            _fetch(b, site, scheme, lie[0], failure="ssl_invalid_hostname")
    _helper_ok(b, site, scheme)
    return Fixture("dns-system", f"nayatel-{site.host}-{scheme}-{version}",
                   b.build(blocking="dns", accessible=False, dns_consistency="inconsistent"))


def dns_bogon(version: str, site: Site, scheme: str) -> Fixture:
    b = Builder(version, f"{scheme}://{site.host}/")
    lie = ("10.42.0.1",) if site is not BLOG else ("127.0.0.1",)
    _probe_side(b, site, lie)
    b.connect(lie[0], _port(scheme), "generic_timeout_error")
    if not b.lte:
        _fetch(b, site, scheme, None, failure="generic_timeout_error")
    _helper_ok(b, site, scheme)
    return Fixture("dns-system", f"bogon-{site.host}-{scheme}-{version}",
                   b.build(blocking="dns", accessible=False, dns_consistency="inconsistent"))


def dns_unknown_server(version: str, site: Site) -> Fixture:
    """The ISP resolver sends the name to a server of its own whose notice no signature knows (the public
    resolver tells the truth)."""
    b = Builder(version, f"http://{site.host}/")
    lie = (ISP_NOTICE_SERVER,)
    _probe_side(b, site, lie)
    b.connect(lie[0], 80)
    _fetch(b, site, "http", lie[0], status=200, body=UNKNOWN_NOTICE, headers={"Content-Type": "text/html"})
    _helper_ok(b, site, "http")
    return Fixture("dns-system", f"isp-server-{site.host}-{version}",
                   b.build(blocking="dns", accessible=False, dns_consistency="inconsistent"))


def tcp_blocked(version: str, site: Site, scheme: str) -> Fixture:
    b = Builder(version, f"{scheme}://{site.host}/")
    _probe_side(b, site, site.addrs)
    _connect_all(b, site, site.addrs, scheme, failure="generic_timeout_error")
    if not b.lte:
        _fetch(b, site, scheme, None, failure="generic_timeout_error")
    _helper_ok(b, site, scheme)
    return Fixture("tcp", f"{site.host}-{scheme}-{version}",
                   b.build(blocking="tcp_ip", accessible=False, dns_consistency="consistent"))


def tls_reset(version: str, site: Site, failure: str) -> Fixture:
    """SNI-based blocking since 2023: the connection is reset (or cut, or left silent) after the ClientHello."""
    b = Builder(version, f"https://{site.host}/")
    _probe_side(b, site, site.addrs)
    _connect_all(b, site, site.addrs, "https", tls_failure=failure)
    if not b.lte:
        _fetch(b, site, "https", None, failure=failure)
    _helper_ok(b, site, "https")
    return Fixture("tls-sni", f"{failure}-{site.host}-{version}",
                   b.build(blocking="http-failure", accessible=False, dns_consistency="consistent"))


def http_blockpage(version: str, site: Site) -> Fixture:
    """The national "Surf Safely" page served in-path for the plain-HTTP request."""
    b = Builder(version, f"http://{site.host}/")
    _probe_side(b, site, site.addrs)
    _connect_all(b, site, site.addrs, "http")
    _validate_443(b, site, site.v4, "http")
    _fetch(b, site, "http", site.v4[0], status=200, body=SURF_SAFELY_PAGE, headers={"Content-Type": "text/html"})
    _helper_ok(b, site, "http")
    return Fixture("http-blockpage", f"surf-safely-{site.host}-{version}",
                   b.build(blocking="http-diff", accessible=False, dns_consistency="consistent"))


def http_mobilink_redirect(version: str, site: Site) -> Fixture:
    """Mobilink/Jazz: an in-path 302 to the ISP's notice, on another host."""
    b = Builder(version, f"http://{site.host}/")
    _probe_side(b, site, site.addrs)
    _connect_all(b, site, site.addrs, "http")
    notice = MOBILINK_NOTICE + f"http://{site.host}/"
    _fetch(b, site, "http", site.v4[0], status=302, headers={"Location": notice, "Content-Length": "0"})
    if b.lte:
        b.connect("119.73.65.87", 8080, depth=1)
    b.request(notice, "119.73.65.87", 8080, status=200, body="<html><head><title>Access Denied</title></head>"
              "<body><p>The requested URL has been blocked.</p></body></html>", headers={"Content-Type": "text/html"},
              depth=1)
    _helper_ok(b, site, "http")
    return Fixture("http-blockpage", f"mobilink-{site.host}-{version}",
                   b.build(blocking="http-diff", accessible=False, dns_consistency="consistent",
                           asn="AS45669", network="Mobilink"))


def http_diff(version: str, site: Site) -> Fixture:
    """A transparent proxy answering plain HTTP with a notice nobody has a signature for."""
    b = Builder(version, f"http://{site.host}/")
    _probe_side(b, site, site.addrs)
    _connect_all(b, site, site.addrs, "http")
    _validate_443(b, site, site.v4, "http")
    _fetch(b, site, "http", site.v4[0], status=200, body=UNKNOWN_NOTICE, headers={"Content-Type": "text/html"})
    _helper_ok(b, site, "http")
    return Fixture("http-diff", f"{site.host}-{version}",
                   b.build(blocking="http-diff", accessible=False, dns_consistency="consistent"))


def down_refused(version: str, site: Site, scheme: str) -> Fixture:
    b = Builder(version, f"{scheme}://{site.host}/")
    _probe_side(b, site, site.addrs)
    _connect_all(b, site, site.addrs, scheme, failure="connection_refused")
    if not b.lte:
        _fetch(b, site, scheme, None, failure="connection_refused")
    b.helper(addrs=site.addrs, port=_port(scheme), tcp_failure="connection_refused", status=None,
             http_failure="connection_refused", headers={})
    return Fixture("down", f"refused-{site.host}-{scheme}-{version}",
                   b.build(blocking=False, accessible=False, dns_consistency="consistent"))


def down_nxdomain(version: str, site: Site, scheme: str) -> Fixture:
    """The name is gone: NXDOMAIN here, and the helper says so in its own words (`dns_name_error`)."""
    b = Builder(version, f"{scheme}://{site.host}/")
    _probe_side(b, site, (), failure="dns_nxdomain_error", udp_addrs=())
    if b.lte:
        b.queries = [q for q in b.queries if q["engine"] != "doh"]
        b.doh_lookup(site.host, (), failure="dns_nxdomain_error")
    else:
        _fetch(b, site, scheme, None, failure="dns_nxdomain_error")
    b.helper(addrs=(), port=_port(scheme), dns_failure="dns_name_error", status=None,
             http_failure="dns_nxdomain_error", headers={})
    return Fixture("down", f"gone-{site.host}-{scheme}-{version}",
                   b.build(blocking=False, accessible=False, dns_consistency="consistent"))


def down_no_answer(version: str, site: Site) -> Fixture:
    """The name exists with no address (NOERROR, no answer): the helper returns an empty list, no failure."""
    b = Builder(version, f"http://{site.host}/")
    _probe_side(b, site, (), failure="dns_no_answer", udp_addrs=(), doh=False)
    if b.lte:
        b.doh_lookup(site.host, (), failure="dns_no_answer")
    else:
        _fetch(b, site, "http", None, failure="dns_no_answer")
    b.helper(addrs=(), port=80, status=None, http_failure="dns_no_answer", headers={})
    return Fixture("down", f"no-address-{site.host}-{version}",
                   b.build(blocking=False, accessible=False, dns_consistency="consistent"))


def down_http(version: str, site: Site) -> Fixture:
    """The origin behind the site's proxy is down: 502 for everyone."""
    b = Builder(version, f"https://{site.host}/")
    _probe_side(b, site, site.addrs)
    _connect_all(b, site, site.addrs, "https")
    _fetch(b, site, "https", site.v4[0], status=502, body=NGINX_DOWN, headers={"Server": "nginx"})
    b.helper(addrs=site.addrs, port=443, tls=True, status=502, body=NGINX_DOWN, title="502 Bad Gateway",
             headers={"Server": "nginx"})
    # OONI: a final response over verified TLS is no blocking; 502 everywhere is the site's own state.
    return Fixture("accessible", f"502-{site.host}-{version}",
                   b.build(blocking=False, accessible=True, dns_consistency="consistent"))


def redirect_to_blocked(version: str, site: Site, how: str) -> Fixture:
    """http://host/ redirects to https://www.host/, which is blocked (SNI reset, or NXDOMAIN at the ISP)."""
    b = Builder(version, f"http://{site.host}/")
    nxt = site.host.replace("www.", "") if site.host.startswith("www.") else "www." + site.host
    nxt_url = f"https://{nxt}/"
    _probe_side(b, site, site.addrs)
    _connect_all(b, site, site.addrs, "http")
    _fetch(b, site, "http", site.v4[0], status=301, headers={"Location": nxt_url, "Server": "nginx"})
    if how == "sni":
        if b.lte:
            b.system_lookup(nxt, site.v4, depth=1)
            for a in site.v4:
                b.connect(a, 443, depth=1)
                b.handshake(a, 443, nxt, "connection_reset", depth=1)
        else:
            b.request(nxt_url, None, 443, failure="connection_reset", depth=1)
        blocking = "http-failure"
    else:
        if b.lte:
            b.system_lookup(nxt, (), "dns_nxdomain_error", depth=1)
        else:
            b.request(nxt_url, None, 443, failure="dns_nxdomain_error", depth=1)
        blocking = "dns"
    _helper_ok(b, site, "http")
    return Fixture("redirect-blocked", f"{how}-{site.host}-{version}",
                   b.build(blocking=blocking, accessible=False, dns_consistency="consistent"))


def redirect_ok(version: str, site: Site) -> Fixture:
    """The same redirect to the https:// site, not blocked: the chain ends on the page."""
    b = Builder(version, f"http://{site.host}/")
    nxt = "www." + site.host if not site.host.startswith("www.") else site.host.replace("www.", "")
    nxt_url = f"https://{nxt}/"
    _probe_side(b, site, site.addrs)
    _connect_all(b, site, site.addrs, "http")
    _fetch(b, site, "http", site.v4[0], status=301, headers={"Location": nxt_url, "Server": "nginx"})
    if b.lte:
        b.system_lookup(nxt, site.v4, depth=1)
        b.connect(site.v4[0], 443, depth=1)
        b.handshake(site.v4[0], 443, nxt, depth=1)
    b.request(nxt_url, site.v4[0], 443, status=200, body=site.body, headers=site.headers, depth=1)
    _helper_ok(b, site, "http")
    return Fixture("accessible", f"redirect-{site.host}-{version}",
                   b.build(blocking=False, accessible=True, dns_consistency="consistent"))


def doh_only(version: str, site: Site, case: str) -> Fixture:
    """0.5 measurements whose only lookups are getaddrinfo and DoH (no DNS-over-UDP): the DoH answer is the
    control's view, never the volunteer's resolver."""
    scheme = "https" if case == "https-ok" else "http"
    b = Builder(version, f"{scheme}://{site.host}/")
    if case in ("ok", "https-ok"):
        _probe_side(b, site, site.addrs, udp=False)
        _connect_all(b, site, site.addrs, scheme)
        _fetch(b, site, scheme, site.v4[0], status=200, body=site.body, headers=site.headers)
        verdict: dict[str, Any] = dict(blocking=False, accessible=True, dns_consistency="consistent")
    elif case == "nxdomain":
        _probe_side(b, site, (), failure="dns_nxdomain_error", udp=False)
        verdict = dict(blocking="dns", accessible=False, dns_consistency="inconsistent")
    else:  # the ISP's resolver lies, the page is the ISP's notice; DoH (from here) has the truth
        _probe_side(b, site, (ISP_NOTICE_SERVER,), udp=False)
        b.connect(ISP_NOTICE_SERVER, 80)
        _fetch(b, site, "http", ISP_NOTICE_SERVER, status=200, body=UNKNOWN_NOTICE,
               headers={"Content-Type": "text/html"})
        verdict = dict(blocking="dns", accessible=False, dns_consistency="inconsistent")
    _helper_ok(b, site, scheme)
    return Fixture("doh-only", f"{case}-{site.host}-{version}", b.build(**verdict))


def dns_injected(version: str, site: Site) -> Fixture:
    """An on-path injector answers first with a forged address; the real reply arrives after it (OONI keeps it
    in x_dns_duplicate_responses)."""
    b = Builder(version, f"http://{site.host}/")
    forged = ("31.13.94.41",)  # an address of another network, unrelated to the site
    b.system_lookup(site.host, forged)
    a_rec, _ = b.udp_lookup(site.host, forged)
    b.duplicate(a_rec, list(site.v4))
    b.doh_lookup(site.host, site.addrs)
    b.connect(forged[0], 80, "generic_timeout_error")
    _helper_ok(b, site, "http")
    return Fixture("dns-injected", f"{site.host}-{version}",
                   b.build(blocking="dns", accessible=False, dns_consistency="inconsistent"))


def benign_duplicate(version: str, site: Site) -> Fixture:
    """A resolver that answers twice with the same addresses: no injection."""
    b = Builder(version, f"http://{site.host}/")
    b.system_lookup(site.host, site.addrs)
    a_rec, _ = b.udp_lookup(site.host, site.addrs)
    b.duplicate(a_rec, list(site.v4))
    b.doh_lookup(site.host, site.addrs)
    _connect_all(b, site, site.addrs, "http")
    _fetch(b, site, "http", site.v4[0], status=200, body=site.body, headers=site.headers)
    _helper_ok(b, site, "http")
    return Fixture("accessible", f"duplicate-{site.host}-{version}",
                   b.build(blocking=False, accessible=True, dns_consistency="consistent"))


def untagged(f: Fixture) -> Fixture:
    m = copy.deepcopy(f.measurement)
    for key in ("queries", "tcp_connect", "tls_handshakes", "requests", "x_dns_duplicate_responses"):
        for record in m["test_keys"].get(key) or ():
            record.pop("tags", None)
    return Fixture(f.kind, f"{f.name}-untagged", m)


def all_fixtures() -> Iterator[Fixture]:
    for f in _tagged_fixtures():
        yield f
        if f.measurement["test_version"] == V05:
            yield untagged(f)


def _tagged_fixtures() -> Iterator[Fixture]:
    for v in (V04, V05):
        for site in SITES:
            for scheme in ("http", "https"):
                yield accessible(v, site, scheme)
                yield dns_nxdomain(v, site, scheme)
                yield dns_censor_ip(v, site, scheme)
                yield dns_bogon(v, site, scheme)
                yield tcp_blocked(v, site, scheme)
                yield down_refused(v, site, scheme)
                yield down_nxdomain(v, site, scheme)
            yield accessible_cdn(v, site, "https")
            yield dns_unknown_server(v, site)
            yield http_blockpage(v, site)
            yield http_diff(v, site)
            yield down_no_answer(v, site)
            yield down_http(v, site)
            yield redirect_ok(v, site)
            for failure in ("connection_reset", "eof_error", "generic_timeout_error"):
                yield tls_reset(v, site, failure)
            for how in ("sni", "dns"):
                yield redirect_to_blocked(v, site, how)
        yield http_mobilink_redirect(v, NEWS)
        yield http_mobilink_redirect(v, BLOG)
    for site in SITES:
        for case in ("ok", "https-ok", "nxdomain", "lie"):
            yield doh_only(V05, site, case)
        yield dns_injected(V05, site)
        yield benign_duplicate(V05, site)


if __name__ == "__main__":
    with open(sys.argv[1], "w") as out:
        for f in all_fixtures():
            out.write(json.dumps({"x_fixture": f.id, **f.measurement}) + "\n")
