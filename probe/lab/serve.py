"""The lab's internet, in one process: authoritative/public DNS, DoH, the control helper, and every web site.

Run inside the lab's net namespace by topology.py (`python -m probe.lab.serve CONFIG.json`); it touches the
file named by `ready` once every listener is up.
"""

from __future__ import annotations

import json
import ssl
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import trio

from ..control.helper_server import serve_forever
from .servers import DnsEntry, DnsZone, Site, Sites, serve_dns, serve_doh, serve_http


def _site(spec: dict[str, Any]) -> Site:
    """A lab site as the config describes it (see topology.py): its page, and how it treats the helper."""
    host = spec["host"]
    if spec.get("redirect"):
        return Site(status=302, location=spec["redirect"])
    if spec.get("status") == 204:  # the connectivity check
        return Site(status=204, body=b"", headers=())
    if spec.get("page"):
        return _server_page(spec["page"], host)
    page = Site(title=f"{host} - home {spec.get('keyword') or ''}".strip(),
                paragraphs=max(600, (spec.get("size") or 0) // 28),  # 28 bytes a paragraph: `size` is the page's
                behaviour="dynamic" if spec.get("dynamic") else "normal", rate=spec.get("rate") or 0)
    vantage = spec.get("vantage")
    if vantage is None:
        return page
    # The variant served to this network (here) and to the helper's datacenter (abroad); different header
    # names, as another edition or an edge's refusal has, so that OONI's tests see two different pages.
    here, abroad = {
        "localized": (Site(title=f"Urdu edition - {host}", paragraphs=150, headers=(("x-edition", "ur"),)), page),
        "consent": (page, Site(title="Before you continue", paragraphs=20, headers=(("x-consent", "required"),))),
        "datacenter": (page, Site(status=403, title="Access denied", paragraphs=3,
                                  headers=(("x-blocked-by", "bot-protection"),))),
        "ratelimit": (page, Site(status=429, title="Too Many Requests", paragraphs=1,
                                 headers=(("retry-after", "60"),))),
        "geoblock": (Site(status=451, title="Not available in your country", paragraphs=3,
                          headers=(("x-geo", "PK"),)), page),
        "cdn-challenge": (Site(status=403, headers=(("cf-ray", "lab-1"), ("server", "cloudflare")),
                               body=b"<html><head><title>Just a moment...</title></head><body><script>"
                                    b"window._cf_chl_opt={cType: 'managed'};</script></body></html>"), page),
    }[vantage]
    return replace(here, abroad=abroad)


_DEFAULTS = {  # status, body: what servers and CDNs answer everybody when they will not serve the page
    "nginx-default": (200, b"<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome to nginx!</h1>"
                           b"<p><em>Thank you for using nginx.</em></p></body></html>"),
    "404": (404, b"<html><head><title>404 Not Found</title></head><body><center><h1>404 Not Found</h1></center>"
                 b"<hr><center>nginx</center></body></html>"),
    "403": (403, b"<html><head><title>403 Forbidden</title></head><body><center><h1>403 Forbidden</h1></center>"
                 b"<hr><center>nginx</center></body></html>"),
    "500": (500, b"<html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server Error</h1>"
                 b"</body></html>"),
    "cf-challenge": (403, b"<html><head><title>Just a moment...</title></head><body><script>window._cf_chl_opt="
                          b"{cType: 'managed'};</script><noscript>Enable JavaScript and cookies to continue"
                          b"</noscript></body></html>"),
    "js-only": (200, b"<html><head><title></title><script src='/app.js'></script></head><body><div id='root'>"
                     b"</div><noscript>You need to enable JavaScript to run this app.</noscript></body></html>"),
    "unavailable": (503, b"<html><head><title>Site Unavailable</title></head><body>Try again later.</body></html>"),
}


def _server_page(kind: str, host: str) -> Site:
    if kind == "to-https":
        return Site(title=f"{host} - home", paragraphs=400, https_redirect=True)
    status, body = _DEFAULTS[kind]
    return Site(status=status, body=body, headers=(("x-served-by", "edge"),))


async def main(config: dict[str, Any], part: str = "all") -> None:
    """part: "dns" (DNS and DoH), "web" (sites and helper), "isp-dns" (the ISP's other resolvers) or "all";
    separate processes use both cores."""
    if part == "isp-dns":
        async with trio.open_nursery() as n:
            for isp_zone, listen in _isp_zones(config["isp_dns"]):
                await n.start(partial(serve_dns, isp_zone, listen, 53))
            Path(f"{config['ready']}.{part}").touch()
        return
    zone = DnsZone(entries={h: DnsEntry(a=tuple(a)) for h, a in config["dns"]["entries"].items()},
                   delay=config.get("dns_delay", 0.0))
    for name, texts in config["dns"].get("txt", {}).items():
        zone.entries[name] = DnsEntry(txt=tuple(texts))
    tls_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ctx.load_cert_chain(config["cert"], config["key"])
    sites = Sites(by_host={s["host"]: _site(s) for s in config["sites"]}, delay=config.get("http_delay", 0.0),
                  abroad_peers=frozenset(config.get("abroad_peers", ())))
    async with trio.open_nursery() as n:
        if part in ("dns", "all"):
            await n.start(partial(serve_dns, zone, config["dns"]["listen"], 53))
            await n.start(partial(serve_doh, zone, config["doh"]["listen"], 443, ssl_context=tls_ctx))
        if part in ("web", "all"):
            h = config["helper"]
            await n.start(partial(serve_forever, h["listen"], h["port"], resolvers=(h["resolver"],),
                                  ca_file=config["ca"], allow_net=("198.18.0.0/15",), timeout=h.get("timeout", 4.0)))
            for ip in sorted({s["ip"] for s in config["sites"] if s.get("listen", True)}):
                await n.start(partial(serve_http, sites, ip, 80))
                await n.start(partial(serve_http, sites, ip, 443, ssl_context=tls_ctx))
        Path(f"{config['ready']}.{part}").touch()


def _isp_zones(config: dict[str, Any]) -> list[tuple[DnsZone, str]]:
    """The ISP's other resolvers: one that answers every name that does not exist with its ad server (NXDOMAIN
    hijacking), and the one that intercepted queries are sent to, which answers SERVFAIL."""
    hijack = config["hijack"]
    return [(DnsZone(entries={h: DnsEntry(a=tuple(a)) for h, a in hijack["entries"].items()},
                     default=DnsEntry(a=tuple(hijack["default"]))), hijack["listen"]),
            (DnsZone(default=DnsEntry(behaviour="servfail")), config["servfail"]["listen"])]


if __name__ == "__main__":
    trio.run(main, json.loads(Path(sys.argv[1]).read_text()), sys.argv[2] if len(sys.argv) > 2 else "all")
