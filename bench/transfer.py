"""Transfer evidence's cost (issue 20): CPU per URL of `probe run` with transfer evidence, against another tree.

N URLs of `--kib` KiB pages (large enough to time) on loopback, with a helper and a DoH resolver on loopback
too, so every part of issue 20 runs: the HTTP step's and the TLS step's read counting, the helper's
`x_transfer`, the survey's fetch of the line's speed, the throttling rules. `--against DIR` runs the same
`probe run` from another source tree (PYTHONPATH=DIR), e.g. main before issue 20, alternately with this one,
`--rounds` times each; medians are printed. Nothing here is slow for the probe only, so no page is fetched a
second time (the count of `repeat` hops says so): that costs one more GET, of suspect pages only.

    git archive <commit-before-issue-20> | tar -x -C /tmp/before
    python bench/transfer.py --against /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from calibrate import machine  # bench/ is the script's directory

from probe.lab.rusage import run_measured

SERVER = r"""
import sys, trio
from functools import partial
from probe.control.helper_server import serve_forever
from probe.lab.servers import DnsEntry, DnsZone, Site, Sites, serve_dns, serve_doh, serve_http
kib = int(sys.argv[1])
zone = DnsZone(entries={"*.bench.test": DnsEntry(a=("127.0.0.1",))})
sites = Sites(default=Site(title="A benchmark page", paragraphs=kib * 1024 // 28))
async def main():
    async with trio.open_nursery() as n:
        d = await n.start(serve_dns, zone)
        h = await n.start(serve_http, sites)
        doh = await n.start(partial(serve_doh, zone, "127.0.0.1", 0, ssl_context=None))
        helper = await n.start(partial(serve_forever, "127.0.0.1", 0, resolvers=(f"127.0.0.1:{d}",),
                                       allow_net=("127.0.0.0/8",), timeout=5.0))
        print(d, h, doh, helper, flush=True)
trio.run(main)
"""


def run_probe(tree: Path | None, listing: Path, ports: tuple[int, int, int, int], workdir: Path) -> dict:
    dns, _, doh, helper = ports
    db = workdir / f"bench-{time.monotonic_ns()}.db"
    cmd = [sys.executable, "-m", "probe", "run", str(listing), "--db", str(db), "--quiet", "--accept-risk",
           "--no-vantage", "--portal-check", "none", "--resolver", f"127.0.0.1:{dns}", "--no-system-resolver",
           "--helper", f"http://127.0.0.1:{helper}/", "--doh", f"http://127.0.0.1:{doh}/dns-query",
           "--allow-net", "127.0.0.0/8"]
    env = dict(os.environ)
    here = os.getcwd()
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
        os.chdir(tree)  # `python -m` puts the working directory first: the other tree's probe must be found first
    try:
        measured = run_measured(cmd, env=env)
    finally:
        os.chdir(here)
    if measured.returncode != 0:
        raise SystemExit(f"probe failed: {measured.stderr}")
    con = sqlite3.connect(db)
    statuses = dict(con.execute("select status, count(*) from measurements group by status").fetchall())
    columns = {r[1] for r in con.execute("pragma table_info(http_hops)")}
    repeats = con.execute("select count(*) from http_hops where chain = 'repeat'").fetchone()[0] \
        if "transfer" in columns else None
    con.close()
    return {"cpu_s": measured.cpu_s, "wall_s": measured.wall_s, "db_bytes": db.stat().st_size,
            "statuses": statuses, "repeats": repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--urls", type=int, default=300)
    ap.add_argument("--kib", type=int, default=128, help="page size")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--against", type=Path, help="another source tree to compare with (PYTHONPATH)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.kib)], stdout=subprocess.PIPE, text=True)
    trees: dict[str, Path | None] = {"this tree": None}
    if args.against:
        trees[str(args.against)] = args.against.resolve()
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    try:
        assert server.stdout is not None
        dns, http_port, doh, helper = map(int, server.stdout.readline().split())
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            listing = work / "list.txt"
            listing.write_text("".join(f"http://site{i}.bench.test:{http_port}/page{i}\n" for i in range(args.urls)))
            for _ in range(args.rounds):
                for name, tree in trees.items():
                    runs[name].append(run_probe(tree, listing, (dns, http_port, doh, helper), work))
    finally:
        server.terminate()
    result = {"urls": args.urls, "page_kib": args.kib, "rounds": args.rounds, "machine": machine(), "trees": {
        name: {"cpu_ms_per_url": round(1000 * statistics.median(r["cpu_s"] for r in rs) / args.urls, 2),
               "cpu_ms_per_url_each": [round(1000 * r["cpu_s"] / args.urls, 2) for r in rs],
               "wall_s": round(statistics.median(r["wall_s"] for r in rs), 2),
               "db_bytes_per_url": statistics.median(r["db_bytes"] for r in rs) // args.urls,
               "repeat_fetches": [r["repeats"] for r in rs], "statuses": [r["statuses"] for r in rs]}
        for name, rs in runs.items()}}
    if args.json:
        print(json.dumps(result))
        return
    print(f"URLs {args.urls} of {args.kib} KiB pages, helper and DoH on loopback; {args.rounds} rounds, medians")
    for name, r in result["trees"].items():
        print(f"{name:24} CPU per URL {r['cpu_ms_per_url']} ms (each: {r['cpu_ms_per_url_each']}), wall "
              f"{r['wall_s']} s, database {r['db_bytes_per_url']} bytes per URL, second fetches "
              f"{r['repeat_fetches']}, verdicts {r['statuses']}")
    print(f"machine {result['machine']}")


if __name__ == "__main__":
    main()
