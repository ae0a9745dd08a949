"""The lab's internet, in one process: authoritative/public DNS, DoH, the control helper, and every web site.

Run inside the lab's net namespace by topology.py (`python -m probe.lab.serve CONFIG.json`); it touches the
file named by `ready` once every listener is up.
"""

from __future__ import annotations

import json
import ssl
import sys
from functools import partial
from pathlib import Path
from typing import Any

import trio

from ..control.helper_server import serve_forever
from .servers import DnsEntry, DnsZone, Site, Sites, serve_dns, serve_doh, serve_http


async def main(config: dict[str, Any], part: str = "all") -> None:
    """part: "dns" (DNS and DoH), "web" (sites and helper) or "all"; separate processes use both cores."""
    zone = DnsZone(entries={h: DnsEntry(a=tuple(a)) for h, a in config["dns"]["entries"].items()},
                   delay=config.get("dns_delay", 0.0))
    for name, texts in config["dns"].get("txt", {}).items():
        zone.entries[name] = DnsEntry(txt=tuple(texts))
    tls_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ctx.load_cert_chain(config["cert"], config["key"])
    sites = Sites(by_host={s["host"]: Site(title=f"{s['host']} - home", paragraphs=600,
                                           behaviour="dynamic" if s.get("dynamic") else "normal")
                           if not s.get("redirect") else Site(status=302, location=s["redirect"])
                           for s in config["sites"]},
                  delay=config.get("http_delay", 0.0))
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


if __name__ == "__main__":
    trio.run(main, json.loads(Path(sys.argv[1]).read_text()), sys.argv[2] if len(sys.argv) > 2 else "all")
