"""Engine benchmark: N URLs against loopback servers that delay every HTTP response, as `probe run` runs them.

Prints wall time at the default concurrency and one at a time (`--concurrency 1 --workers 1 --late-window 0`,
as a sequential tool runs: the late window would idle 0.5 s per URL), CPU seconds per URL and peak RSS of the
probe and its workers (measured from a small launcher: see probe/lab/rusage.py). The servers run in another
process so their CPU is not counted.

    python bench/engine.py                 # 500 URLs, 100 ms per response
    python bench/engine.py --urls 200 --c1-urls 50
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from calibrate import machine  # bench/ is the script's directory

from probe.lab.rusage import run_measured

SERVER = r"""
import sys, time, trio
from probe.lab.servers import DnsEntry, DnsZone, Site, Sites, serve_dns, serve_http
delay, dns_delay = float(sys.argv[1]), float(sys.argv[2])
zone = DnsZone(entries={"*.bench.test": DnsEntry(a=("127.0.0.1",))}, delay=dns_delay)
sites = Sites(default=Site(title="A benchmark page"), delay=delay)
async def main():
    async with trio.open_nursery() as n:
        d = await n.start(serve_dns, zone)
        h = await n.start(serve_http, sites)
        print(d, h, flush=True)
trio.run(main)
"""


def run_probe(urls: list[str], dns_port: int, extra: list[str], workdir: Path) -> dict:
    listing = workdir / "list.txt"
    listing.write_text("\n".join(urls) + "\n")
    db = workdir / f"bench-{time.monotonic_ns()}.db"
    cmd = [sys.executable, "-m", "probe", "run", str(listing), "--db", str(db), "--quiet", "--accept-risk",
           "--no-vantage", "--portal-check", "none",  # the network survey's check is a public page by default
           "--resolver", f"127.0.0.1:{dns_port}", "--no-system-resolver", "--no-control",
           "--allow-net", "127.0.0.0/8",
           *extra]
    measured = run_measured(cmd)
    if measured.returncode != 0:
        raise SystemExit(f"probe failed: {measured.stderr}")
    import sqlite3

    con = sqlite3.connect(db)
    statuses = dict(con.execute("select status, count(*) from measurements group by status").fetchall())
    return {"wall_s": measured.wall_s, "cpu_s": measured.cpu_s, "rss_mb": measured.peak_rss_sum_mb,
            "statuses": statuses, "db_bytes": db.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--urls", type=int, default=500)
    ap.add_argument("--c1-urls", type=int, default=0, help="URLs for the one-at-a-time run (default: all);"
                    " fewer are extrapolated linearly and said so")
    ap.add_argument("--delay", type=float, default=0.1, help="seconds before each HTTP response")
    ap.add_argument("--dns-delay", type=float, default=0.0)
    ap.add_argument("--probe-args", default="", help="extra `probe run` options, e.g. '--late-window 0'")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.delay), str(args.dns_delay)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        dns_port, http_port = map(int, server.stdout.readline().split())
        urls = [f"http://site{i}.bench.test:{http_port}/page{i}" for i in range(args.urls)]
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            extra = args.probe_args.split()
            fast = run_probe(urls, dns_port, extra, work)
            c1_n = args.c1_urls or args.urls
            slow = run_probe(urls[:c1_n], dns_port, [*extra, "--concurrency", "1", "--workers", "1", "--late-window",
                                                     "0"], work)
    finally:
        server.terminate()
    slow_wall = slow["wall_s"] * args.urls / c1_n
    result = {
        "urls": args.urls, "delay_s": args.delay,
        "wall_default_s": round(fast["wall_s"], 2),
        "wall_concurrency1_s": round(slow_wall, 1), "concurrency1_extrapolated_from": c1_n,
        "speedup": round(slow_wall / fast["wall_s"], 1),
        "cpu_ms_per_url": round(1000 * fast["cpu_s"] / args.urls, 2),
        "peak_rss_mb": round(fast["rss_mb"], 1),
        "db_bytes_per_url": fast["db_bytes"] // args.urls,
        "statuses": fast["statuses"], "machine": machine(),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"URLs                      {args.urls} (HTTP responses delayed {args.delay * 1000:.0f} ms)")
    print(f"wall, default concurrency {result['wall_default_s']} s")
    extr = f" (extrapolated from {c1_n})" if c1_n != args.urls else ""
    print(f"wall, one at a time       {result['wall_concurrency1_s']} s{extr} (--concurrency 1 --workers 1"
          " --late-window 0)")
    print(f"speed-up                  {result['speedup']}x")
    print(f"CPU per URL               {result['cpu_ms_per_url']} ms (probe process, incl. start-up)")
    print(f"peak RSS                  {result['peak_rss_mb']} MB (the probe and its workers together)")
    print(f"database                  {result['db_bytes_per_url']} bytes per URL")
    print(f"verdicts                  {result['statuses']}")
    print(f"machine                   {result['machine']}")


if __name__ == "__main__":
    main()
