"""A world that censors nothing, built from the real test lists: how many false alarms does a real list give?

    sudo python bench/world.py                 # Citizen Lab global + PK lists, full OONI + Censored Planet sets
    sudo python bench/world.py --loss 0.1      # the same behind an access link that drops 10% of packets
    sudo python bench/world.py --limit 300     # a quicker look

Every URL of the Citizen Lab global and Pakistan lists (read from ../shared/data, never copied) becomes a site
in the lab, under a lab name (`www.dawn.com` -> `www-dawn-com.lab.test`, path kept). Nothing is censored: the
ISP's router only forwards (and with --loss drops that share of the client's packets, both ways, DNS included).
The sites are as untidy as real ones, chosen by a hash of the name: most serve a page (a few change on every
request), others serve everybody a server's default page, a 403/404/500, a CDN challenge, a JavaScript-only
page, a 503 "Site Unavailable", or redirect http:// to https://; some treat the helper's datacenter otherwise
(a localized edition here, a consent wall, a refusal or a rate limit there). The probe runs as the lab runs it
(helper, DoH, the ISP's and the public resolver) with OONI's and Censored Planet's signature sets downloaded by
`probe signatures update` from a loopback mirror of the reference files. Prints counts by status, the
anomalies and anything blocked with their rules, and the run's network facts (DNS retransmissions, flaky
measurements). Root only; builds and removes its own lab.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import http.server
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import get_args

from probe.lab.run import probe_command
from probe.lab.scenarios import DOMAIN, Page, Scenario, Vantage
from probe.lab.topology import Lab
from probe.signatures.loaders import CACHE_FILES
from probe.signatures.update import update

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LISTS = ("citizenlab-global.csv", "citizenlab-pk.csv")
MIRROR = {"fingerprints_dns.csv": "fingerprints_dns.csv", "fingerprints_http.csv": "fingerprints_http.csv",
          "censoredplanet-assets-blockpage_signatures.json": "blockpage_signatures.json",
          "censoredplanet-assets-false_positive_signatures.json": "false_positive_signatures.json"}
# Of every 100 sites: what each serves (to everybody, or by vantage). The rest serve their page.
MIX: list[tuple[int, Page | Vantage | str]] = [
    (4, "nginx-default"), (4, "404"), (4, "403"), (2, "500"), (4, "cf-challenge"), (4, "js-only"),
    (2, "unavailable"), (6, "to-https"), (3, "localized"), (2, "consent"), (2, "datacenter"), (1, "ratelimit"),
    (5, "dynamic"),
]


def lab_name(host: str) -> str:
    label = host.lower().rstrip(".").replace(".", "-")[:63].strip("-")
    return f"{label}.{DOMAIN}"


def kind_of(host: str) -> str:
    n = int.from_bytes(hashlib.sha256(host.encode()).digest()[:4], "big") % 100
    for share, kind in MIX:
        if n < share:
            return kind
        n -= share
    return "page"


def world(limit: int | None) -> tuple[list[str], tuple[Scenario, ...]]:
    urls: list[str] = []
    hosts: dict[str, Scenario] = {}
    for name in LISTS:
        with (SHARED / name).open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                parts = urllib.parse.urlsplit(row["url"].strip())
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    continue
                host = lab_name(parts.hostname)
                url = urllib.parse.urlunsplit((parts.scheme, host, parts.path or "/", parts.query, ""))
                if url in urls:
                    continue
                urls.append(url)
                if host not in hosts:
                    i = len(hosts)
                    kind = kind_of(parts.hostname)
                    slot = i % 1250  # then sites share addresses, as on a CDN (198.18.8-12: the lab routes these)
                    ip = f"198.18.{8 + slot // 250}.{slot % 250 + 1}"
                    hosts[host] = Scenario(
                        host.removesuffix(f".{DOMAIN}"), "http", (ip,), "none", "ok", None,
                        dynamic=kind == "dynamic",
                        vantage=kind if kind in get_args(Vantage) else None,  # type: ignore[arg-type]
                        page=kind if kind in get_args(Page) else None)  # type: ignore[arg-type]
    urls = urls[:limit] if limit else urls
    used = {urllib.parse.urlsplit(u).hostname for u in urls}
    return urls, tuple(s for h, s in hosts.items() if h in used)


def signatures(into: Path) -> int:
    """OONI's and Censored Planet's sets, downloaded by `update` from a loopback mirror of the reference files."""
    mirror = Path(tempfile.mkdtemp(prefix="probe-world-mirror-"))
    for src, dst in MIRROR.items():
        shutil.copy(SHARED / src, mirror / dst)
    assert set(MIRROR.values()) == set(CACHE_FILES)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(mirror)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        results = update(into, ooni_base=base, cp_base=base)
    finally:
        server.shutdown()
        shutil.rmtree(mirror)
    errors = [r.error for r in results if r.error]
    if errors:
        raise SystemExit(f"signature update failed: {errors}")
    return sum(r.loaded for r in results)


def lossy(lab: Lab, share: float, on: bool) -> None:
    """Drop `share` of the client's packets on its link, both ways (the ISP's own resolver included)."""
    iface = f"{lab.prefix}-i0"
    stat = ["-m", "statistic", "--mode", "random", "--probability", str(share), "-j", "DROP"]
    action = "-I" if on else "-D"
    for chain, way in (("FORWARD", "-i"), ("FORWARD", "-o"), ("INPUT", "-i"), ("OUTPUT", "-o")):
        lab.ns(lab.isp, "iptables", action, chain, way, iface, *stat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, help="only the first N URLs")
    ap.add_argument("--loss", type=float, default=0.0, help="share of the client's packets dropped (0.1 = 10%%)")
    ap.add_argument("--prefix", default="pw", help="the lab's namespace prefix")
    ap.add_argument("--keep", type=Path, help="copy the run's database here")
    args = ap.parse_args()
    urls, sites = world(args.limit)
    lab = Lab(prefix=args.prefix)
    print(f"world: {len(urls)} URLs on {len(sites)} sites; loss {args.loss:.0%}", flush=True)
    lab.up(sites)
    try:
        loaded = signatures(lab.state / "data" / "signatures")
        print(f"signatures: {loaded} loaded from the OONI and Censored Planet sets (+ probe's own pack)", flush=True)
        work = Path(tempfile.mkdtemp(prefix="probe-world-"))
        listing, db = work / "world.txt", work / "world.db"
        listing.write_text("\n".join(urls) + "\n")
        if args.loss:
            lossy(lab, args.loss, True)
        cmd = [x for x in probe_command(lab, listing, db, ("--no-vantage",)) if x != "--json"]
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - started
        if args.loss:
            lossy(lab, args.loss, False)
        if proc.returncode != 0:
            raise SystemExit(f"probe exited {proc.returncode}: {proc.stderr[-2000:]}")
        report(db, len(urls), wall)
        if args.keep:
            shutil.copy(db, args.keep)
        shutil.rmtree(work)
    finally:
        lab.down()


def report(db: Path, total: int, wall: float) -> None:
    con = sqlite3.connect(db)
    statuses = Counter(dict(con.execute("select status, count(*) from measurements group by status").fetchall()))
    print(f"measured {sum(statuses.values())}/{total} in {wall:.0f} s: " + ", ".join(
        f"{statuses[s]} {s}" for s in ("blocked", "anomaly", "filtered", "down", "ok", "error")))
    anomalies = statuses["anomaly"]
    print(f"anomaly rate: {anomalies / total:.2%} (aim <= 0.1% clean); blocked: {statuses['blocked']} (aim 0)")
    for status in ("blocked", "anomaly", "error"):
        for rule, detail, n in con.execute("select rule, detail, count(*) from measurements where status = ? "
                                           "group by rule, detail order by 3 desc", [status]):
            print(f"  {status:8} {n:5}  {rule:24} {detail}")
    retx, queries = con.execute("select sum(retransmits), count(*) from dns_queries where not control").fetchone()
    flaky = con.execute("select count(*) from measurements where flaky = 1").fetchone()[0]
    server_side = con.execute("select count(*) from measurements where detail like 'http/server-side:%'").fetchone()[0]
    print(f"network: {retx or 0} DNS retransmissions for {queries} queries ({(retx or 0) / max(queries, 1):.1%}); "
          f"{flaky} flaky measurements (a failure a second try did not repeat)")
    print(f"server-side pages (false-positive signatures) judged: {server_side}")
    network = con.execute("select network from runs").fetchone()[0]
    print(f"survey: {json.loads(network) if network else None}")
    con.close()


if __name__ == "__main__":
    if not Path("/proc/self").exists() or sys.platform != "linux":
        raise SystemExit("linux only")
    main()
