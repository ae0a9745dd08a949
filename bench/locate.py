"""What locating the censor costs: a URL whose TLS is reset or dropped, with the locate step and with --no-locate.

    sudo python bench/locate.py                 # snirst, gwreset, snidrop, gwdrop; 5 runs each way; --timeout 4
    sudo python bench/locate.py --repeat 9 --timeout 10 --prefix b20

For each scenario (the lab's ISP router resets or drops the ClientHello: snirst, snidrop; its gateway, one router
further: gwreset, gwdrop) and each way (locate on, `--no-locate`), `probe run` measures the one URL, as in the
lab's scenarios, `--repeat` times. Prints medians: the URL's run time (`runtime_s` as stored), the probe's CPU
(its whole process, start-up included, from wait4: the difference between the two ways is what locating adds),
the locate step's own span (first TTL sent to last TTL over) against its bound, min(--timeout, 4 s), the TTL
probes stored and where the URL was located. Root only; builds and removes its own lab.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

from calibrate import machine  # bench/ is the script's directory

from probe.analysis.locate import locate
from probe.lab.run import probe_command
from probe.lab.rusage import run_measured
from probe.lab.topology import Lab
from probe.measure.steps.locate import WAIT
from probe.models import TtlProbe

SCENARIOS = ("snirst", "gwreset", "snidrop", "gwdrop")


def one(lab: Lab, name: str, locate_on: bool, timeout: float, work: Path, i: int) -> dict[str, float | str]:
    list_file = work / f"{name}.txt"
    list_file.write_text(f"https://{name}.lab.test/\n")
    db = work / f"{name}-{int(locate_on)}-{i}.db"
    extra = ("--timeout", str(timeout), *(() if locate_on else ("--no-locate",)))
    env = {k: v for k, v in os.environ.items() if k != "PROBE_RESOLV_CONF"}
    measured = run_measured(probe_command(lab, list_file, db, extra), env=env, capture_stdout=True)
    if measured.returncode != 0:
        raise SystemExit(f"probe failed: {measured.stderr[-2000:]}")
    con = sqlite3.connect(db)
    status, runtime = con.execute("select status || ' ' || detail, runtime_s from measurements").fetchone()
    rows = con.execute("select ip, port, sni, ttl, failure, failed_step, router, icmp, t0, t from ttl_probes"
                       " order by ttl").fetchall()
    con.close()
    probes = tuple(TtlProbe(ip=r[0], port=r[1], sni=r[2], ttl=r[3], failure=r[4], failed_step=r[5], router=r[6],
                            icmp=r[7], t0=r[8], t=r[9]) for r in rows)
    spots = locate(probes)
    return {"status": status, "runtime_s": runtime, "cpu_s": measured.cpu_s, "probes": len(probes),
            "span_s": max((p.t for p in probes), default=0.0) - min((p.t0 for p in probes), default=0.0),
            "where": spots[0].sentence().split(": ", 1)[1] if spots else "-"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=4.0, help="probe run --timeout (the lab's is 4)")
    parser.add_argument("--prefix", default="bl20")
    args = parser.parse_args()
    lab = Lab(prefix=args.prefix)
    print(f"machine: {machine()}")
    print(f"--timeout {args.timeout}: the locate step waits at most {min(args.timeout, WAIT)} s; "
          f"medians of {args.repeat} runs each way")
    lab.up()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-locate-") as tmp:
            work = Path(tmp)
            head = (f"{'scenario':9} {'verdict':34} {'run s on/off':>14} {'added s':>8} {'cpu s on/off':>13} "
                    f"{'added cpu':>9} {'span s':>7} {'ttls':>4}  located")
            print(head)
            print("-" * len(head))
            for name in SCENARIOS:
                runs = {on: [one(lab, name, on, args.timeout, work, i) for i in range(args.repeat)]
                        for on in (True, False)}

                def med(on: bool, key: str, runs=runs) -> float:
                    return statistics.median(float(r[key]) for r in runs[on])

                on_s, off_s, on_cpu, off_cpu = (med(True, "runtime_s"), med(False, "runtime_s"),
                                                med(True, "cpu_s"), med(False, "cpu_s"))
                verdicts = {str(r["status"]) for rs in runs.values() for r in rs}
                print(f"{name:9} {', '.join(sorted(verdicts)):34} {on_s:6.2f}/{off_s:<6.2f} {on_s - off_s:8.2f} "
                      f"{on_cpu:6.2f}/{off_cpu:<6.2f} {on_cpu - off_cpu:9.3f} {med(True, 'span_s'):7.2f} "
                      f"{int(med(True, 'probes')):4}  {runs[True][0]['where']}")
                sys.stdout.flush()
    finally:
        lab.down()


if __name__ == "__main__":
    main()
