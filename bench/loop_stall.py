"""Loop stalls: how long the trio loop of a run goes without running, while the run writes into a large database.

    python bench/loop_stall.py                       # 200,000 measurements in the database, 3,000 URLs measured
    python bench/loop_stall.py --existing 500000 --urls 5000 --keep-db /tmp/stall.db

Every DNS, TCP, TLS and HTTP deadline of a run is kept by the one trio loop: while it waits on SQLite (a commit,
a WAL checkpoint, index pages read from disk), no timer fires and no reply is read, and a slow commit becomes a
late measurement. The run here is `run_async` in this process (`--workers 1`), against loopback servers in
another process (a 50 ms HTTP delay); beside it a task asks to wake every millisecond, and how late it wakes is
the loop's stall. Printed: the longest stall, the 99.9th percentile, the stalls over 20 and 100 ms, and the
run's wall time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from calibrate import machine  # bench/ is the script's directory
from engine import SERVER
from merge_export import synthesise

from probe import storage
from probe.measure.runner import RunOptions, run_async
from probe.measure.targets import read_inputs


async def measured_run(db_path: Path, urls: list[str], dns_port: int) -> dict[str, object]:
    db = storage.open_db(db_path)
    targets, _ = read_inputs(urls)
    opts = RunOptions(resolvers=(f"127.0.0.1:{dns_port}",), system_resolver=False, no_control=True, doh=(),
                      allow_net=("127.0.0.0/8",), workers=1, concurrency=200, timeout=5.0, dns_timeout=2.0,
                      late_window=0.1, ip_service=None, db_path=str(db_path))
    lateness: list[float] = []
    stop = trio.Event()

    async def watch() -> None:
        while not stop.is_set():
            t0 = trio.current_time()
            await trio.sleep(0.001)
            lateness.append(trio.current_time() - t0 - 0.001)

    started = time.monotonic()
    async with trio.open_nursery() as n:
        n.start_soon(watch)
        summary = await run_async(db, targets, opts)
        stop.set()
    wall = time.monotonic() - started
    storage.close(db)
    lateness.sort()
    return {
        "urls": len(targets), "measured": summary.measured, "wall_s": round(wall, 2),
        "longest_stall_ms": round(1000 * lateness[-1], 1),
        "stall_p999_ms": round(1000 * lateness[int(len(lateness) * 0.999)], 1),
        "stalls_over_20ms": sum(x > 0.020 for x in lateness), "stalls_over_100ms": sum(x > 0.100 for x in lateness),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--existing", type=int, default=200_000, help="measurements already in the database")
    ap.add_argument("--urls", type=int, default=3000, help="URLs the run measures")
    ap.add_argument("--keep-db", type=Path, help="synthesise the database here once, and reuse it next time")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep_db or Path(tmp) / "base.db"
        t0 = time.monotonic()
        if not base.exists():
            synthesise(base, args.existing)
        made = time.monotonic() - t0
        size = base.stat().st_size
        server = subprocess.Popen([sys.executable, "-c", SERVER, "0.05", "0"], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            dns_port, http_port = map(int, server.stdout.readline().split())
            urls = [f"http://u{i}.bench.test:{http_port}/p{i}" for i in range(args.urls)]
            runs = []
            for _ in range(args.repeat):
                db_path = Path(tmp) / "run.db"
                shutil.copy(base, db_path)  # the same large database for every run
                runs.append(trio.run(measured_run, db_path, urls, dns_port))
                db_path.unlink()
        finally:
            server.kill()
    print(json.dumps({"existing_measurements": args.existing, "database_bytes": size,
                      "synthesised_s": round(made, 1), "runs": runs,
                      "machine": machine()}, indent=1))


if __name__ == "__main__":
    main()
