"""Building and tearing down the lab: four network namespaces and the processes in them.

    <p>-client 198.18.1.2 ──veth── 198.18.1.1 <p>-isp 198.18.2.1 ──veth── 198.18.2.2 <p>-net
    (the volunteer;                 (the censoring router: dnsmasq      (the internet: DNS 198.18.2.53, DoH
     resolv.conf -> the ISP)         resolver, iptables, nginx proxy,    .54, helper .80:8780, web sites on
                                     blockpage server 198.18.3.83)       198.18.10-12.x, ports 80 and 443)

A fourth, <p>-gw, is a second router between the ISP and the internet for some sites only (gateway.py).
Nothing is routed outside the namespaces: they have no link to the host's network. All state (pids, configs,
certificates, logs) lives in one directory so `down` can remove everything, also after a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import gateway, shaping
from .pki import make_pki
from .scenarios import (
    AD_SERVER_IP,
    BOGON,
    CDN_INSIDE_IP,
    DOMAIN,
    GHOST_IP,
    ISP_BLOCKPAGE_IP,
    ISP_NOTICE_IP,
    KEYWORD,
    MOBILINK_NOTICE,
    SCENARIOS,
    Scenario,
    url_of,
)
from .servers import Site

REQUIRED_TOOLS = {"ip": "iproute2", "iptables": "iptables", "dnsmasq": "dnsmasq", "nginx": "nginx-light"}
DNS_IP, DOH_IP, HELPER_IP, HELPER_PORT = "198.18.2.53", "198.18.2.54", "198.18.2.80", 8780
CLIENT_IP, ISP_CLIENT_IP, ISP_NET_IP, NET_IP = "198.18.1.2", "198.18.1.1", "198.18.2.1", "198.18.2.2"
PROXY_200_PORT, PROXY_302_PORT, PROXY_NOTICE_PORT = 8081, 8082, 8083
IFRAME_PORT, CACHE_PORT, INTERCEPT_PORT = 8084, 8085, 8443
QUIC_FILTER_PORT = 8600  # + k: the ISP's QUIC SNI filter, one relay port per filtered site (lab/quic_filter.py)
# The ISP's other resolvers (NXDOMAIN hijacking; SERVFAIL for intercepted queries), on the router itself.
HIJACK_DNS_IP, SERVFAIL_DNS_IP = "198.18.4.53", "198.18.4.54"
CHECK_HOST, CHECK_IP = f"check.{DOMAIN}", "198.18.14.99"  # the connectivity check: answers 204
UNREACHABLE_CONTROL_IP = "198.18.2.99"  # nothing there: the control of the "down" scenarios
LAB_ASN = 64512  # private-use ASN
BLOCKPAGE = """<html><head><title>Surf Safely</title></head><body><h1>Surf Safely!</h1>
<p>This website is not accessible.</p>
<p>The site you are trying to access contains content that is prohibited for viewership from within Pakistan.</p>
<p>(probe lab imitation of an in-path national blockpage)</p></body></html>
"""
# Notices no signature knows. The ISP server's is as long as a lab site's page (OONI's length test alone would
# call it the same page); the proxy's is short.
_NOTICE_HEAD = "<html><head><title>Access restricted</title></head><body><h1>Access restricted</h1><p>"
_NOTICE_LINE = "This service is not available on your connection at the moment. "
SHORT_NOTICE = f"{_NOTICE_HEAD}{_NOTICE_LINE}</p></body></html>\n"
SEARCH_PAGE = ("<html><head><title>Search results</title></head><body><h1>Did you mean...?</h1><p>Sponsored links "
               "for the name you typed. (The lab ISP's answer for names that do not exist.)</p></body></html>\n")
# A 200 page that frames a notice on the Mobilink address (the real blockpage arrives inside the frame).
IFRAME_PAGE = (f"<html><head><title></title></head><body style='margin:0'><iframe src='http://{MOBILINK_NOTICE}:8080/"
               f"redirect.html?accessurl=iframe-notice.{DOMAIN}/' width='100%' height='100%' frameborder='0'>"
               "</iframe></body></html>\n")


def _long_notice() -> str:
    page = len(Site(title=f"x.{DOMAIN} - home", paragraphs=600).render(0))  # as lab/serve.py renders a site
    return f"{_NOTICE_HEAD}{_NOTICE_LINE * (page // len(_NOTICE_LINE))}</p></body></html>\n"


def _site_ips(scenarios: tuple[Scenario, ...]) -> set[str]:
    """The lab internet's web site addresses (names that exist nowhere have none)."""
    return {ip for s in scenarios if s.exists for ip in s.ips if _in_lab(ip)}


def _qname(host: str) -> str:
    """A name as it is on the wire, in iptables' --hex-string notation."""
    return "".join(f"|{len(label):02x}|{label}" for label in host.split(".")) + "|00|"


def _in_lab(ip: str) -> bool:
    return ip.startswith("198.18.") or ip.startswith("198.19.")


class LabError(RuntimeError):
    pass


def missing_requirements() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("the lab needs root (network namespaces, iptables)")
    for tool, package in REQUIRED_TOOLS.items():
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            problems.append(f"{tool} not found (Debian package {package})")
    return problems


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


@dataclass
class Lab:
    prefix: str = "pl"
    state_root: Path = Path("/run/probe-lab")
    dns_delay: float = 0.0
    http_delay: float = 0.0

    @property
    def client(self) -> str:
        return f"{self.prefix}-client"

    @property
    def isp(self) -> str:
        return f"{self.prefix}-isp"

    @property
    def net(self) -> str:
        return f"{self.prefix}-net"

    @property
    def gateway(self) -> str:
        return f"{self.prefix}-gw"  # a second router, for some sites only (gateway.py)

    @property
    def namespaces(self) -> tuple[str, ...]:
        return self.client, self.isp, self.net, self.gateway

    @property
    def state(self) -> Path:
        return self.state_root / self.prefix

    @property
    def ca_file(self) -> Path:
        return self.state / "ca.pem"

    @property
    def signatures_file(self) -> Path:
        return self.state / "lab-signatures.json"

    def ns(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", name, *args, check=check)

    # ------------------------------------------------------------------------------------------- status
    def existing_namespaces(self) -> list[str]:
        out = _run("ip", "netns", "list", check=False).stdout
        names = [line.split()[0] for line in out.splitlines() if line.strip()]
        return [n for n in names if n in self.namespaces]

    def is_up(self) -> bool:
        return (len(self.existing_namespaces()) == len(self.namespaces) and (self.state / "ready").exists()
                and all(self._alive(p) for p in self._pids().values()))

    def status(self) -> dict[str, object]:
        pids = self._pids()
        return {"namespaces": self.existing_namespaces(), "state": str(self.state),
                "processes": {k: (v, self._alive(v)) for k, v in pids.items()}, "up": self.is_up()}

    # ------------------------------------------------------------------------------------------- up
    def up(self, scenarios: tuple[Scenario, ...] = SCENARIOS) -> None:
        problems = missing_requirements()
        if problems:
            raise LabError("; ".join(problems))
        self.down()  # whatever a crash left behind
        self.state.mkdir(parents=True, exist_ok=True)
        try:
            self._network(scenarios)
            ca, cert, key = make_pki(self.state, [f"*.{DOMAIN}", *(s.host for s in scenarios)],
                                     [DOH_IP, HELPER_IP, DNS_IP])
            self._write_lab_signatures()
            self._start_net(scenarios, ca, cert, key)
            self._start_isp_dns()
            self._start_isp(scenarios)
            self._censor(scenarios)
        except BaseException:
            self.down()
            raise

    def _network(self, scenarios: tuple[Scenario, ...]) -> None:
        c, i, n = self.client, self.isp, self.net
        for name in (c, i, n):
            _run("ip", "netns", "add", name)
            self.ns(name, "ip", "link", "set", "lo", "up")
        p = self.prefix
        _run("ip", "link", "add", f"{p}-c0", "netns", c, "type", "veth", "peer", "name", f"{p}-i0", "netns", i)
        _run("ip", "link", "add", f"{p}-i1", "netns", i, "type", "veth", "peer", "name", f"{p}-n0", "netns", n)
        for ns, dev, addr in ((c, f"{p}-c0", CLIENT_IP), (i, f"{p}-i0", ISP_CLIENT_IP), (i, f"{p}-i1", ISP_NET_IP),
                              (n, f"{p}-n0", NET_IP)):
            self.ns(ns, "ip", "addr", "add", f"{addr}/24", "dev", dev)
            self.ns(ns, "ip", "link", "set", dev, "up")
        self.ns(c, "ip", "route", "add", "default", "via", ISP_CLIENT_IP)
        self.ns(n, "ip", "route", "add", "default", "via", ISP_NET_IP)
        self.ns(i, "ip", "route", "add", "198.18.8.0/21", "via", NET_IP)
        self.ns(i, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for addr in (ISP_BLOCKPAGE_IP, ISP_NOTICE_IP, MOBILINK_NOTICE, GHOST_IP, AD_SERVER_IP, HIJACK_DNS_IP,
                     SERVFAIL_DNS_IP):
            self.ns(i, "ip", "addr", "add", f"{addr}/32", "dev", "lo")
        for addr in sorted({DNS_IP, DOH_IP, HELPER_IP, CHECK_IP, CDN_INSIDE_IP, *_site_ips(scenarios)}):
            self.ns(n, "ip", "addr", "add", f"{addr}/32", "dev", "lo")
        gateway.build(self)
        netns_etc = Path("/etc/netns") / c
        netns_etc.mkdir(parents=True, exist_ok=True)
        (netns_etc / "resolv.conf").write_text(f"nameserver {ISP_CLIENT_IP}\n")

    def _write_lab_signatures(self) -> None:
        pack = {"about": "signatures of the probe lab's own censor", "signatures": [
            {"id": "lab.isp-blockpage-dns", "where": "dns", "kind": "full", "pattern": ISP_BLOCKPAGE_IP,
             "scope": "isp", "name": "the lab ISP's blockpage server", "source": "probe lab"}]}
        self.signatures_file.write_text(json.dumps(pack, indent=1))

    def _spawn(self, key: str, ns: str, *cmd: str) -> int:
        log = open(self.state / f"{key}.log", "ab")  # noqa: SIM115  (the child owns it from now on)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        pids = self._pids()
        pids[key] = proc.pid
        (self.state / "pids.json").write_text(json.dumps(pids))
        return proc.pid

    def _start_net(self, scenarios: tuple[Scenario, ...], ca: Path, cert: Path, key: Path) -> None:
        ready = self.state / "ready"
        entries = {s.host: list(s.ips) for s in scenarios if s.exists} | {CHECK_HOST: [CHECK_IP]}
        config = {
            "dns": {"listen": DNS_IP, "entries": entries, "txt": {
                # The lab network's ASN, in Team Cymru's TXT format (answered inside the lab only).
                ".".join(reversed(CLIENT_IP.split("."))) + ".origin.asn.cymru.com":
                    [f"{LAB_ASN} | 198.18.1.0/24 | PK | lab | 2026-01-01"],
                f"AS{LAB_ASN}.asn.cymru.com": [f"{LAB_ASN} | PK | lab | 2026-01-01 | PROBE-LAB-ISP Probe Lab ISP, PK"],
            }},
            "doh": {"listen": DOH_IP},
            "helper": {"listen": HELPER_IP, "port": HELPER_PORT, "resolver": DNS_IP, "timeout": 4.0},
            "sites": [*({"ip": ip, "host": s.host, "dynamic": s.dynamic, "listen": s.censor != "down",
                         "redirect": url_of(s.redirect) if s.redirect else None, "vantage": s.vantage,
                         "keyword": KEYWORD if s.censor == "keyword-rst" else None, "page": s.page,
                         "size": s.size, "rate": s.rate}
                        for s in scenarios if s.exists
                        for ip in (*s.ips, *((CDN_INSIDE_IP,) if s.censor == "cdn-inside" else ())) if _in_lab(ip)),
                      {"ip": CHECK_IP, "host": CHECK_HOST, "status": 204}],
            "abroad_peers": [HELPER_IP],  # the helper's datacenter: sites with a `vantage` treat it apart
            "isp_dns": {"hijack": {"listen": HIJACK_DNS_IP, "entries": entries, "default": [AD_SERVER_IP]},
                        "servfail": {"listen": SERVFAIL_DNS_IP}},
            "ca": str(ca), "cert": str(cert), "key": str(key), "ready": str(ready),
            "dns_delay": self.dns_delay, "http_delay": self.http_delay,
        }
        path = self.state / "net.json"
        path.write_text(json.dumps(config, indent=1))
        # Two processes: DNS must not wait behind a thousand busy web sites (and two use both cores).
        for part in ("dns", "web"):
            pid = self._spawn(f"net-{part}", self.net, sys.executable, "-m", "probe.lab.serve", str(path), part)
            self._wait_ready(Path(f"{ready}.{part}"), pid, f"net-{part}", f"the lab's internet ({part})", 30)
        self._start_quic(scenarios, cert, key)
        ready.touch()

    def _start_quic(self, scenarios: tuple[Scenario, ...], cert: Path, key: Path) -> None:
        """QUIC (HTTP/3's handshake) on UDP/443 of the https sites that speak it: one process for all."""
        ips = sorted({ip for s in scenarios if s.exists and s.scheme == "https" and s.h3 and s.censor != "down"
                      for ip in s.ips if _in_lab(ip)})
        if not ips:
            return
        ready = self.state / "ready.quic"
        path = self.state / "quic.json"
        path.write_text(json.dumps({"ips": ips, "cert": str(cert), "key": str(key), "ready": str(ready)}))
        pid = self._spawn("net-quic", self.net, sys.executable, "-m", "probe.lab.quic_server", str(path))
        self._wait_ready(ready, pid, "net-quic", "the lab's QUIC server", 30)

    def _start_isp_dns(self) -> None:
        ready = self.state / "ready.isp-dns"
        pid = self._spawn("isp-dns", self.isp, sys.executable, "-m", "probe.lab.serve", str(self.state / "net.json"),
                          "isp-dns")
        self._wait_ready(ready, pid, "isp-dns", "the ISP's other resolvers", 30)

    def _start_isp(self, scenarios: tuple[Scenario, ...]) -> None:
        lines = ["no-resolv", "no-hosts", "no-poll", "bind-interfaces", f"listen-address={ISP_CLIENT_IP}",
                 f"server={DNS_IP}", "cache-size=0", "dns-forward-max=4096", "user=root", "pid-file="]
        # What the ISP's resolver says for a censored name: no address (NXDOMAIN), an address of its choice, or
        # whatever a server that fails says (SERVFAIL).
        answers = {"dns-nxdomain": ("address", ""), "dns-intercept": ("address", ""),
                   "dns-blockpage": ("address", ISP_BLOCKPAGE_IP), "dns-bogon": ("address", BOGON),
                   "dns-unknown-server": ("address", ISP_NOTICE_IP), "dns-ghost": ("address", GHOST_IP),
                   "cdn-inside": ("address", CDN_INSIDE_IP), "dns-servfail-all": ("server", SERVFAIL_DNS_IP)}
        lines += [f"{answers[s.censor][0]}=/{s.host}/{answers[s.censor][1]}" for s in scenarios if s.censor in answers]
        (self.state / "dnsmasq.conf").write_text("\n".join(lines) + "\n")
        self._spawn("dnsmasq", self.isp, "dnsmasq", "-k", "-C", str(self.state / "dnsmasq.conf"))
        www = self.state / "www"
        www.mkdir(exist_ok=True)
        (www / "blockpage.html").write_text(BLOCKPAGE)
        (www / "notice.html").write_text(_long_notice())
        (www / "short-notice.html").write_text(SHORT_NOTICE)
        (www / "search.html").write_text(SEARCH_PAGE)
        (www / "iframe.html").write_text(IFRAME_PAGE)
        # The ISP's own CA, which nobody trusts: its certificates for the names it intercepts fail verification.
        (self.state / "isp-pki").mkdir(exist_ok=True)
        _, isp_cert, isp_key = make_pki(self.state / "isp-pki", [s.host for s in scenarios
                                                                 if s.censor == "tls-intercept"] or [DOMAIN], [])
        tmp = self.state / "nginx-tmp"
        tmp.mkdir(exist_ok=True)
        temps = "".join(f"  {k}_temp_path {tmp}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        def page(name: str) -> str:
            return f"location / {{ root {www}; default_type text/html; rewrite ^ /{name} break; }}"

        blockpage_loc = page("blockpage.html")
        conf = (f"user root;\nworker_processes 1;\npid {self.state}/nginx.pid;\nerror_log {self.state}/nginx.log;\n"
                f"events {{ worker_connections 512; }}\nhttp {{\n  access_log off;\n{temps}"
                f"  server {{ listen {ISP_BLOCKPAGE_IP}:80; {blockpage_loc} }}\n"
                f"  server {{ listen {ISP_CLIENT_IP}:{PROXY_200_PORT}; {blockpage_loc} }}\n"
                f"  server {{ listen {ISP_NOTICE_IP}:80; {page('notice.html')} }}\n"
                f"  server {{ listen {MOBILINK_NOTICE}:8080; {page('notice.html')} }}\n"
                f"  server {{ listen {ISP_CLIENT_IP}:{PROXY_NOTICE_PORT}; {page('short-notice.html')} }}\n"
                f"  server {{ listen {ISP_CLIENT_IP}:{PROXY_302_PORT}; location / {{ return 302 "
                f"http://{ISP_BLOCKPAGE_IP}/blocked.html?accessurl=$host$request_uri; }} }}\n"
                f"  server {{ listen {AD_SERVER_IP}:80; {page('search.html')} }}\n"
                f"  server {{ listen {ISP_CLIENT_IP}:{IFRAME_PORT}; {page('iframe.html')} }}\n"
                f"  server {{ listen {ISP_CLIENT_IP}:{INTERCEPT_PORT} ssl; ssl_certificate {isp_cert}; "
                f"ssl_certificate_key {isp_key}; {page('short-notice.html')} }}\n"
                + "".join(f"  server {{ listen {ISP_CLIENT_IP}:{CACHE_PORT + k}; location / {{ proxy_pass "
                          f"http://{s.ips[0]}; proxy_set_header Host $host; proxy_http_version 1.1; "
                          f"add_header Via \"1.1 isp-cache\" always; add_header X-Cache HIT always; }} }}\n"
                          for k, s in enumerate(s for s in scenarios if s.censor == "transparent-cache"))
                + "}\n")
        (self.state / "nginx.conf").write_text(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self._spawn("nginx", self.isp, nginx, "-c", str(self.state / "nginx.conf"), "-p", str(self.state),
                    "-g", "daemon off;")
        deadline = time.monotonic() + 10
        while self.ns(self.isp, "ss", "-ltn", check=False).stdout.count(f":{PROXY_302_PORT}") == 0:
            if time.monotonic() > deadline:
                raise LabError(f"nginx did not start: {(self.state / 'nginx.log').read_text(errors='replace')}")
            time.sleep(0.05)

    def _censor(self, scenarios: tuple[Scenario, ...]) -> None:
        """The ISP's interference, as real kernel filtering in the router namespace.

        String matches use Knuth-Morris-Pratt: the kernel's Boyer-Moore search misses a pattern that crosses the
        boundary between two fragments of a packet, so now and then a ClientHello the censor should have
        dropped got through (seen once in a lab run)."""
        inbound = f"{self.prefix}-i0"
        fwd = ["iptables", "-A", "FORWARD", "-i", inbound, "-p", "tcp"]
        nat = ["iptables", "-t", "nat", "-A", "PREROUTING", "-i", inbound]
        for s in scenarios:
            ip, port = s.ips[0], "443" if s.scheme == "https" else "80"
            rules: list[list[str]] = []
            if s.censor == "tcp-drop":
                rules.append([*fwd, "-d", ip, "-j", "DROP"])
            elif s.censor == "tcp-unreachable":
                rules.append([*fwd, "-d", ip, "--syn", "-j", "REJECT", "--reject-with", "icmp-host-unreachable"])
            elif s.censor == "tcp-rst":
                rules.append([*fwd, "-d", ip, "--syn", "-j", "REJECT", "--reject-with", "tcp-reset"])
            elif s.censor == "partial-drop":
                rules.append([*fwd, "-d", s.ips[-1], "-j", "DROP"])
            elif s.censor in ("sni-rst", "sni-drop"):
                action = ["REJECT", "--reject-with", "tcp-reset"] if s.censor == "sni-rst" else ["DROP"]
                rules.append([*fwd, "--dport", "443", "-m", "string", "--algo", "kmp", "--string", s.host,
                              "-j", *action])
            elif s.censor == "host-rst":
                rules.append([*fwd, "--dport", "80", "-m", "string", "--algo", "kmp", "--string",
                              f"Host: {s.host}", "-j", "REJECT", "--reject-with", "tcp-reset"])
            elif s.censor == "proxy-notice":  # plain HTTP only: the site's HTTPS goes through untouched
                rules.append([*nat, "-p", "tcp", "-d", ip, "--dport", "80", "-j", "REDIRECT", "--to-ports",
                              str(PROXY_NOTICE_PORT)])
            elif s.censor == "inject-302":  # the injector answers; the real request never reaches the site
                rules.append([*fwd, "--dport", "80", "-m", "string", "--algo", "kmp", "--string",
                              f"Host: {s.host}", "-j", "DROP"])
            elif s.censor in ("proxy-200", "proxy-302"):
                to = str(PROXY_200_PORT if s.censor == "proxy-200" else PROXY_302_PORT)
                rules.append([*nat, "-p", "tcp", "-d", ip, "--dport", port, "-j", "REDIRECT", "--to-ports", to])
            elif s.censor == "loss":  # a congested access link: 10% of this site's packets, both ways
                for way in (["-i", inbound, "-d", ip], ["-o", inbound, "-s", ip]):
                    rules.append(["iptables", "-A", "FORWARD", *way, "-m", "statistic", "--mode", "random",
                                  "--probability", "0.1", "-j", "DROP"])
            elif s.censor == "flaky-syn":  # every other connection to the site is reset: a second try gets through
                rules.append([*fwd, "-d", ip, "--syn", "-m", "statistic", "--mode", "nth", "--every", "2",
                              "--packet", "0", "-j", "REJECT", "--reject-with", "tcp-reset"])
            elif s.censor == "keyword-rst":  # the response carries the keyword: the filter resets the server's side
                rules.append(["iptables", "-A", "FORWARD", "-o", inbound, "-p", "tcp", "-s", ip, "--sport", "80",
                              "-m", "string", "--algo", "kmp", "--string", KEYWORD, "-j", "REJECT", "--reject-with",
                              "tcp-reset"])
            elif s.censor == "tls-intercept":
                rules.append([*nat, "-p", "tcp", "-d", ip, "--dport", "443", "-j", "REDIRECT", "--to-ports",
                              str(INTERCEPT_PORT)])
            elif s.censor == "iframe-notice":
                rules.append([*nat, "-p", "tcp", "-d", ip, "--dport", "80", "-j", "REDIRECT", "--to-ports",
                              str(IFRAME_PORT)])
            elif s.censor == "transparent-cache":
                caches = [x for x in scenarios if x.censor == "transparent-cache"]
                rules.append([*nat, "-p", "tcp", "-d", ip, "--dport", "80", "-j", "REDIRECT", "--to-ports",
                              str(CACHE_PORT + caches.index(s))])
            elif s.censor == "dns-servfail-all":
                # Every query for the name, to any resolver, answered SERVFAIL: the ISP's resolver forwards the
                # name to a server that fails, and queries to any other resolver are dropped on the way while
                # the injector answers them with SERVFAIL (per packet: a NAT rule would miss the queries of a
                # socket the router already knows).
                rules.append(["iptables", "-A", "FORWARD", "-i", inbound, "-p", "udp", "--dport", "53", "-m",
                              "string", "--algo", "kmp", "--hex-string", _qname(s.host), "-j", "DROP"])
            elif s.censor == "udp-drop":  # UDP/443 to this site dropped: QUIC only, TCP untouched
                rules.append(["iptables", "-A", "FORWARD", "-i", inbound, "-p", "udp", "-d", ip, "--dport", "443",
                              "-j", "DROP"])
            elif s.censor == "quic-sni":  # to the SNI filter's relay (it forwards what it does not drop)
                filtered = [x for x in scenarios if x.censor == "quic-sni"]
                rules.append([*nat, "-p", "udp", "-d", ip, "--dport", "443", "-j", "REDIRECT", "--to-ports",
                              str(QUIC_FILTER_PORT + filtered.index(s))])
            elif s.censor == "dns-intercept":
                # Transparent DNS interception: a query for this name to *any* resolver goes to the ISP's.
                rules.append([*nat, "-p", "udp", "--dport", "53", "-m", "string", "--algo", "kmp", "--hex-string",
                              _qname(s.host), "-j", "DNAT", "--to-destination", f"{ISP_CLIENT_IP}:53"])
            for rule in rules:
                self.ns(self.isp, *rule)
        gateway.censor(self, scenarios)
        shaping.install(self, scenarios)  # throttled sites and the access line (shaping.py)
        targets = {s.host: s.inject_to for s in scenarios if s.censor == "inject-302" and s.inject_to}
        dns_targets = {s.host: s.inject_to for s in scenarios if s.censor == "dns-inject" and s.inject_to}
        dns_targets |= {s.host: "SERVFAIL" for s in scenarios if s.censor == "dns-servfail-all"}
        if targets or dns_targets:
            self._start_injector(targets, dns_targets)
        self._start_quic_filter([s for s in scenarios if s.censor == "quic-sni"])

    def _start_quic_filter(self, filtered: list[Scenario]) -> None:
        if not filtered:
            return
        ready = self.state / "quic-filter.ready"
        path = self.state / "quic-filter.json"
        path.write_text(json.dumps({"ready": str(ready), "relays": [
            {"listen": ISP_CLIENT_IP, "port": QUIC_FILTER_PORT + k, "upstream": s.ips[0], "names": [s.host]}
            for k, s in enumerate(filtered)]}))
        pid = self._spawn("quic-filter", self.isp, sys.executable, "-m", "probe.lab.quic_filter", str(path))
        self._wait_ready(ready, pid, "quic-filter", "the ISP's QUIC SNI filter", 10)

    def _start_injector(self, targets: dict[str, str], dns_targets: dict[str, str]) -> None:
        ready = self.state / "injector.ready"
        path = self.state / "injector.json"
        path.write_text(json.dumps({"iface": f"{self.prefix}-i0", "targets": targets, "forged_answers": dns_targets,
                                    "resolvers": [DNS_IP], "ready": str(ready)}))
        pid = self._spawn("injector", self.isp, sys.executable, "-m", "probe.lab.injector", str(path))
        self._wait_ready(ready, pid, "injector", "the lab's injector", 10)

    def _wait_ready(self, ready: Path, pid: int, key: str, what: str, seconds: float) -> None:
        """Until the process `key` touches `ready`; its log's tail in the error when it dies or is late."""
        deadline = time.monotonic() + seconds
        while not ready.exists():
            if not self._alive(pid) or time.monotonic() > deadline:
                log = (self.state / f"{key}.log").read_text(errors="replace")[-2000:]
                raise LabError(f"{what} did not start:\n{log}")
            time.sleep(0.05)

    # ------------------------------------------------------------------------------------------- down
    def _pids(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads((self.state / "pids.json").read_text()).items()}
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return False  # our own child, just reaped
        except ChildProcessError:
            pass  # not our child (started by an earlier `probe lab up`)
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"

    def _ns_pids(self) -> list[int]:
        pids: list[int] = []
        for name in self.existing_namespaces():
            out = _run("ip", "netns", "pids", name, check=False).stdout
            pids.extend(int(x) for x in out.split() if x.isdigit())
        return pids

    def down(self) -> None:
        """Remove everything: processes, namespaces (their veths and iptables rules go with them), state."""
        targets = set(self._pids().values()) | set(self._ns_pids())
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in targets:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, sig) if pid in self._pids().values() else os.kill(pid, sig)
            deadline = time.monotonic() + 3
            while any(self._alive(p) for p in targets) and time.monotonic() < deadline:
                time.sleep(0.05)
            targets = {p for p in targets if self._alive(p)} | set(self._ns_pids())
            if not targets:
                break
        for name in self.existing_namespaces():
            _run("ip", "netns", "del", name, check=False)
        shutil.rmtree(Path("/etc/netns") / self.client, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)
