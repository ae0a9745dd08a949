"""Lab benchmark: N URLs through the censoring lab, with a home connection's latency, as `probe run` runs them.

    sudo python bench/lab.py                     # 1,000 URLs, 5% blocked by DROP, 50 ms DNS and HTTP delays
    sudo python bench/lab.py --urls 10000 --no-c1  # peak RSS at 10,000 URLs
    sudo python bench/lab.py --no-c1 --repeat 3 --profile prof.txt  # medians; py-spy stacks of the first
    sudo python bench/lab.py --repeat 3 --delay 0.1 --timeout 2 --concurrency 100 --http-only --no-control

Sites are spread over 1,000 addresses (two thirds http, one third https, or all http with --http-only); every
20th address is dropped by the ISP's iptables, so each of those URLs costs a full TCP timeout. Prints wall time;
the floor (the longest single URL, or the sum of per-URL critical paths divided by the concurrency, whichever
is larger; a critical path is the URL's run time when it runs alone) and the ratio; two more lower bounds, the
DNS floor (every URL's A and AAAA queries, at most DNS_IN_FLIGHT in flight per resolver, each lasting the
delay) and the in-order floor (a tool that costs nothing starting the URLs in list order on the slots: a
dropped URL near the end of the list costs its whole timeout after the rest) and the ratio to the largest
bound; the one-at-a-time wall time
and the speed-up over it; CPU per URL, peak RSS (the largest process, and the sum over the probe and its
workers) and database bytes per URL; and the machine. Root only; builds and removes its own lab.

One at a time is measured fairly, as a sequential tool runs: `--concurrency 1 --workers 1 --late-window 0`
(the probe's late window would otherwise idle 0.5 s per URL, which a sequential tool does not), on a
proportional sample (5% dropped) extrapolated to the whole list, as said in the output.

The package is byte-compiled first (`compileall`), as an installed package is: this machine sets
PYTHONDONTWRITEBYTECODE, and every start would otherwise compile the whole package again.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from calibrate import machine  # bench/ is the script's directory

from probe.lab.run import probe_command
from probe.lab.rusage import run_measured
from probe.lab.scenarios import Scenario
from probe.lab.topology import Lab
from probe.measure.runner import DNS_IN_FLIGHT, default_concurrency, raise_fd_limit

SITES = 1000


def bench_sites(n: int = SITES, http_only: bool = False) -> tuple[Scenario, ...]:
    out = []
    for i in range(n):
        ip = f"198.18.{8 + i // 250}.{i % 250 + 1}"
        dropped = i % 20 == 0
        scheme = "https" if i % 3 == 0 and not http_only else "http"
        out.append(Scenario(f"b{i}", scheme, (ip,), "tcp-drop" if dropped else "none",
                            "interference" if dropped else "ok", "tcp" if dropped else None))
    return tuple(out)


def urls_for(sites: tuple[Scenario, ...], count: int) -> list[str]:
    return [f"{sites[i % len(sites)].url}page{i // len(sites)}" for i in range(count)]


def dropped(url: str) -> bool:
    """Is this URL's site one the ISP drops? (bench_sites: every 20th; its name is b<index>.)"""
    return int(url.split("://b", 1)[1].split(".", 1)[0]) % 20 == 0


def in_order_floor(urls: list[str], alone: dict[bool, list[float]], concurrency: int) -> float:
    """The wall time of a tool that takes no time itself, starting the URLs in list order on `concurrency`
    slots as each frees, each URL lasting its kind's mean time alone: a dropped URL started late in the list
    still costs its whole timeout after the others are done, which the area floor does not see."""
    mean = {kind: statistics.fmean(times) for kind, times in alone.items()}
    slots = [0.0] * concurrency
    for url in urls:
        start = heapq.heappop(slots)
        heapq.heappush(slots, start + mean[dropped(url)])
    return max(slots)


def lab_cpu_s(lab: Lab) -> float:
    """CPU seconds used so far by the lab's own servers (each started as a process group; dnsmasq, nginx too)."""
    groups = set(lab._pids().values())
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def run(lab: Lab, urls: list[str], work: Path, extra: tuple[str, ...] = (), profile: Path | None = None) -> dict:
    listing = work / f"list-{time.monotonic_ns()}.txt"
    listing.write_text("\n".join(urls) + "\n")
    db = work / f"bench-{time.monotonic_ns()}.db"
    cmd = [x for x in probe_command(lab, listing, db, ("--no-vantage", *extra)) if x != "--json"]
    if profile:  # py-spy samples the probe inside the client namespace; its CPU and RSS then count too
        cmd[4:4] = ["py-spy", "record", "--rate", "250", "--format", "raw", "--output", str(profile), "--"]
    env = {k: v for k, v in os.environ.items() if k != "PROBE_RESOLV_CONF"}
    lab_before = lab_cpu_s(lab)
    measured = run_measured(cmd, env=env)
    lab_used = lab_cpu_s(lab) - lab_before
    if measured.returncode != 0:
        raise SystemExit(f"probe failed: {measured.stderr[-2000:]}")
    con = sqlite3.connect(db)
    runtimes = [r for (r,) in con.execute("select runtime_s from measurements")]
    # Each URL's time when it ran alone, by whether its site is one the ISP drops (for the in-order floor).
    by_kind: dict[bool, list[float]] = {}
    for url, runtime in con.execute("select url, runtime_s from measurements"):
        by_kind.setdefault(dropped(url), []).append(runtime)
    statuses = dict(con.execute("select status, count(*) from measurements group by status").fetchall())
    resolvers = con.execute("select count(distinct resolver) from dns_queries where not control").fetchone()[0]
    con.close()
    size = sum(p.stat().st_size for p in work.glob(db.name + "*"))
    return {"wall_s": measured.wall_s, "cpu_s": measured.cpu_s, "sys_s": measured.sys_s, "lab_cpu_s": lab_used,
            "rss_mb": measured.peak_rss_mb,
            "rss_sum_mb": measured.peak_rss_sum_mb, "runtimes": runtimes, "by_kind": by_kind, "statuses": statuses,
            "db_bytes": size, "resolvers": resolvers,
            "n": len(urls), "db": db}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--urls", type=int, default=1000)
    ap.add_argument("--c1-sample", type=int, default=100, help="URLs measured at --concurrency 1 (extrapolated)")
    ap.add_argument("--no-c1", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="main runs; figures are medians (shared machines are noisy)")
    ap.add_argument("--delay", type=float, default=0.05, help="seconds before each DNS answer and HTTP response")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep-db", type=Path, help="copy the main run's database here")
    ap.add_argument("--profile", type=Path, help="record the main run with py-spy (collapsed stacks) into this file")
    ap.add_argument("--prefix", default="plb", help="the lab's namespace prefix (one per developer on a shared host)")
    ap.add_argument("--timeout", type=float, default=10.0, help="probe run --timeout (the probe's default: 10)")
    ap.add_argument("--dns-timeout", type=float, default=4.0, help="probe run --dns-timeout (default: 4)")
    ap.add_argument("--concurrency", type=int, help="probe run --concurrency (default: the probe's, from the fd limit)")
    ap.add_argument("--workers", type=int, help="probe run --workers (default: the probe's, the number of cores)")
    ap.add_argument("--no-control", action="store_true", help="probe run --no-control (default: helper + DoH)")
    ap.add_argument("--http-only", action="store_true", help="every site on http:// (default: a third https)")
    ap.add_argument("--probe-args", default="", help="more `probe run` options for the main runs")
    args = ap.parse_args()
    sites = bench_sites(http_only=args.http_only)
    lab = Lab(prefix=args.prefix, dns_delay=args.delay, http_delay=args.delay)
    concurrency = args.concurrency or default_concurrency(raise_fd_limit())
    common = ("--timeout", str(args.timeout), "--dns-timeout", str(args.dns_timeout),
              *(("--no-control",) if args.no_control else ()))
    main_args = (*common, *(("--concurrency", str(args.concurrency)) if args.concurrency else ()),
                 *(("--workers", str(args.workers)) if args.workers else ()), *args.probe_args.split())
    import compileall

    import probe

    compileall.compile_dir(str(Path(probe.__file__).parent), quiet=1)
    print(f"building a lab of {len(sites)} sites ...", file=sys.stderr)
    lab.up(sites)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            # Only the first run is profiled: py-spy writes one file, and its overhead would skew the median.
            runs = [run(lab, urls_for(sites, args.urls), work, main_args,
                        profile=args.profile if i == 0 else None) for i in range(args.repeat)]
            if args.keep_db:
                import shutil

                shutil.copy(runs[0]["db"], args.keep_db)
            c1 = None
            if not args.no_c1:
                c1 = run(lab, urls_for(sites, args.c1_sample), work,
                         (*common, "--concurrency", "1", "--workers", "1", "--late-window", "0"))
    finally:
        lab.down()
    result = summarise(runs, c1, urls_for(sites, args.urls), args.delay, concurrency)
    result["options"] = " ".join(main_args)
    print_result(result, args.json)


def summarise(runs: list[dict], c1: dict | None, urls: list[str], delay: float, concurrency: int) -> dict:
    n = len(urls)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    wall = med("wall_s")
    # The floor is made of each URL's critical path when it runs alone: the --concurrency 1 sample measures
    # exactly that. Without it, the main run's own per-URL times stand in (they include queueing, so that
    # floor is too high and the ratio flatters us: it is labelled).
    if c1:
        alone = c1["runtimes"]
        floor, basis = max(max(alone), statistics.fmean(alone) * n / concurrency), "concurrency-1 sample"
    else:
        loaded = runs[0]["runtimes"]
        floor, basis = max(max(loaded), sum(loaded) / concurrency), "main run (loaded)"
    result = {
        "urls": n, "delay_ms": delay * 1000, "concurrency": concurrency, "runs": len(runs),
        "wall_s": round(wall, 2), "wall_range_s": [round(min(r["wall_s"] for r in runs), 2),
                                                   round(max(r["wall_s"] for r in runs), 2)],
        "floor_s": round(floor, 2), "floor_from": basis, "ratio_to_floor": round(wall / floor, 2),
        "cpu_ms_per_url": round(1000 * med("cpu_s") / n, 2),
        "of_which_kernel_ms_per_url": round(1000 * med("sys_s") / n, 2),
        "lab_servers_cpu_s": round(med("lab_cpu_s"), 2),  # the same cores' other load, besides other users
        "peak_rss_mb": round(med("rss_mb"), 1), "peak_rss_all_processes_mb": round(med("rss_sum_mb"), 1),
        "load_average": os.getloadavg(), "db_bytes_per_url": int(med("db_bytes")) // n,
        "statuses": runs[0]["statuses"], "machine": machine(),
    }
    # Two more lower bounds: each resolver answers after `delay`, and the run keeps at most DNS_IN_FLIGHT
    # queries in flight per resolver (A and AAAA for every URL); and the URLs started in list order.
    dns_floor = 2 * n * delay / DNS_IN_FLIGHT
    result["dns_floor_s"] = round(dns_floor, 2)
    if c1:
        ordered = max(in_order_floor(urls, c1["by_kind"], concurrency), dns_floor, floor)
        result |= {"floor_in_order_s": round(ordered, 2), "ratio_to_floor_in_order": round(wall / ordered, 2)}
    if c1:
        c1_wall = c1["wall_s"] * n / c1["n"]
        result |= {"wall_one_at_a_time_s": round(c1_wall, 1), "one_at_a_time_sample": c1["n"],
                   "one_at_a_time": "--concurrency 1 --workers 1 --late-window 0",
                   "speedup": round(c1_wall / wall, 1)}
    return result


def print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    for k, v in result.items():
        print(f"{k:24} {v}")


if __name__ == "__main__":
    main()
