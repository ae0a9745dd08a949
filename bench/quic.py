"""QUIC benchmark: what the QUIC step costs, `probe run` with QUIC against `--no-quic`, through the lab.

    sudo python bench/quic.py                      # 200 https sites, every 20th with UDP/443 dropped, 3 rounds
    sudo python bench/quic.py --urls 500 --repeat 5 --prefix q20b
    sudo python bench/quic.py --dropped all        # UDP/443 dropped for every site (a network that blocks QUIC)
    sudo python bench/quic.py --dropped half       # ... for every other site

Every site is https and speaks QUIC (the lab's QUIC server); the ISP drops UDP/443 of every 20th (`--dropped`:
or of every other one, or of all; TCP untouched, so each is `ok` with quic `udp-blocked`, or `failed` once the
run has learned that UDP/443 is dropped for everything and cuts QUIC short). The same list is measured with
QUIC and with `--no-quic`, alternately, with the lab's helper and DoH; prints CPU per URL (the probe and its
workers), wall time, each URL's mean time, the slowest URL against the step timeout, and how many QUIC
handshakes each address got. Root only; builds and removes its own lab.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
from pathlib import Path

from calibrate import machine  # bench/ is the script's directory
from lab import run

from probe.lab.scenarios import Scenario
from probe.lab.topology import Lab

EVERY = {"every20": 20, "half": 2, "all": 1}  # --dropped: UDP/443 dropped for every n-th site


def quic_sites(n: int, every: int = 20) -> tuple[Scenario, ...]:
    out = []
    for i in range(n):
        dropped = i % every == 0
        out.append(Scenario(f"b{i}", "https", (f"198.18.{8 + i // 250}.{i % 250 + 1}",),
                            "udp-drop" if dropped else "none", "ok", None,
                            quic="udp-blocked" if dropped else "ok"))
    return tuple(out)


def quic_figures(db: Path) -> dict:
    con = sqlite3.connect(db)
    per_address = [n for (n,) in con.execute("select count(*) from quic_handshakes group by measurement_id, ip")]
    # From an address's first QUIC try to its last one's end: what QUIC takes of the URL's time.
    spans = [s for (s,) in con.execute("select max(t) - min(t0) from quic_handshakes group by measurement_id, ip")]
    values = dict(con.execute("select coalesce(quic, '-'), count(*) from measurements group by quic").fetchall())
    statuses = dict(con.execute("select status, count(*) from measurements group by status").fetchall())
    con.close()
    return {"per_address": per_address, "spans": spans, "values": values, "statuses": statuses}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--urls", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of (QUIC, --no-quic); figures are medians")
    ap.add_argument("--timeout", type=float, default=4.0, help="probe run --timeout (the lab's: 4)")
    ap.add_argument("--dropped", choices=list(EVERY), default="every20",
                    help="which sites' UDP/443 the ISP drops: every 20th, every other one, or all")
    ap.add_argument("--concurrency", type=int, help="probe run --concurrency (default: the probe's)")
    ap.add_argument("--prefix", default="plq", help="the lab's namespace prefix (one per developer on a shared host)")
    args = ap.parse_args()
    every = EVERY[args.dropped]
    sites = quic_sites(args.urls, every)
    more = ("--concurrency", str(args.concurrency)) if args.concurrency else ()
    urls = [s.url for s in sites]
    lab = Lab(prefix=args.prefix)
    lab.up(sites)
    results: dict[str, list[dict]] = {"quic": [], "no-quic": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            for _ in range(args.repeat):
                for mode, extra in (("quic", ()), ("no-quic", ("--no-quic",))):
                    r = run(lab, urls, work, ("--timeout", str(args.timeout), *more, *extra))
                    r.update(quic_figures(r["db"]))
                    results[mode].append(r)
    finally:
        lab.down()
    print(f"{args.urls} https URLs ({args.urls // every + (args.urls % every > 0)} with UDP/443 dropped), helper + "
          f"DoH, --timeout {args.timeout}{' --concurrency ' + str(args.concurrency) if args.concurrency else ''}, "
          f"{args.repeat} rounds, medians; {machine()}")
    for mode, runs in results.items():
        cpu = statistics.median(r["cpu_s"] for r in runs) / args.urls * 1000
        wall = statistics.median(r["wall_s"] for r in runs)
        slowest = statistics.median(max(r["runtimes"]) for r in runs)
        per_url = statistics.median(statistics.fmean(r["runtimes"]) for r in runs)
        per_address = [n for r in runs for n in r["per_address"]]
        spans = [s for r in runs for s in r["spans"]]
        tries = (f"handshakes per address: max {max(per_address)}, mean {statistics.fmean(per_address):.2f}, "
                 f"longest QUIC per address {max(spans):.2f} s" if per_address else "no QUIC handshakes")
        print(f"  {mode:8} CPU {cpu:.1f} ms/URL, wall {wall:.1f} s, URL mean {per_url:.2f} s, "
              f"slowest URL {slowest:.2f} s (timeout {args.timeout}); {tries}; quic {runs[-1]['values']}; "
              f"status {runs[-1]['statuses']}")
    on, off = (statistics.median(r["cpu_s"] for r in results[m]) for m in ("quic", "no-quic"))
    print(f"  QUIC adds {(on - off) / args.urls * 1000:.1f} ms of CPU per URL ({(on / off - 1) * 100:+.0f}%)")


if __name__ == "__main__":
    main()
