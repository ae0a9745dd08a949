"""Hostile servers: how long `probe run` takes over them and how much memory it needs (tests/test_hostile.py).

    python bench/hostile.py            # once
    python bench/hostile.py --repeat 3 # medians

The servers are the test's own (a slowloris body, a 1 GB body, a gzip bomb, 64 KB of headers, redirect loops,
DNS garbage, a 100 KB certificate...), on loopback. The test checks what each URL's verdict says; this prints
the wall time, the peak RSS (largest process, and all processes: probe/lab/rusage.py) and the longest URL,
against the limits the test used to assert (60 s wall, 250 MB, 20 s per URL with --timeout 3).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

from calibrate import machine  # bench/ is the script's directory

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' servers
import trustme

from probe.lab.rusage import run_measured
from tests.test_hostile import hostile_run, hostile_servers

LIMITS = {"wall_s": 60.0, "peak_rss_sum_mb": 250.0, "longest_url_s": 20.0}


def once(ca: trustme.CA, tmp: Path) -> dict[str, float]:
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with hostile_servers(ca, tmp) as ports:
        urls, db, cmd = hostile_run(ports, tmp, str(ca_file))
        cmd += ["--accept-risk", "--no-vantage"]  # resolver, list and no control given: nothing leaves loopback
        run = run_measured(cmd, timeout=300)
    if run.returncode != 0:
        raise SystemExit(f"probe run failed ({run.returncode}): {run.stderr[-2000:]}")
    with sqlite3.connect(db) as con:
        longest, count = con.execute("select max(runtime_s), count(*) from measurements").fetchone()
    assert count == len(urls)
    return {"wall_s": round(run.wall_s, 2), "cpu_s": round(run.cpu_s, 2), "peak_rss_mb": round(run.peak_rss_mb, 1),
            "peak_rss_sum_mb": round(run.peak_rss_sum_mb, 1), "longest_url_s": round(longest, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    ca = trustme.CA()
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(once(ca, Path(tmp)))
    out: dict[str, object] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out["within_limits"] = {k: out[k] <= v for k, v in LIMITS.items()}  # type: ignore[operator]
    out["limits"] = LIMITS
    out["runs"] = runs
    out["machine"] = machine()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
