"""The collector under many volunteers: V volunteers upload N measurements each, all at once, over loopback.

    python bench/collector.py                                   # 100 volunteers x 2,400 measurements
    python bench/collector.py --volunteers 20 --measurements 480 --json

1. One volunteer's database of N measurements (runs of --per-run, real observations from tests/golden, written
   through storage), and the requests `probe upload` makes for it: per run, `POST /v1/known` then one
   `POST /v1/measurements` with the run's measurements (the documents come from probe/volunteer/upload.py itself).
   Each volunteer sends those requests with its own token and its own UUIDs (run and measurement UUIDs
   remapped per volunteer), so nothing is a duplicate. The documents are made before the clock starts: the
   figures are the collector's, not the client's.
2. `probe collector serve` in a subprocess (rate limit lifted: 100 volunteers each catching up on N/per-run runs
   would otherwise meet the default 120 requests a minute), V threads sending at once, one keep-alive
   connection each.
3. Printed: measurements stored per second (wall, first request to last answer), latency of the measurement
   requests (p50, p99, max) and of each volunteer's whole upload, the collector's peak RSS (VmHWM) and CPU,
   the database's size, and a check that every measurement was stored once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from calibrate import machine  # bench/ is the script's directory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from probe import storage  # noqa: E402
from probe.collector import wire  # noqa: E402
from probe.collector.store import new_token  # noqa: E402
from probe.volunteer.upload import _documents  # noqa: E402
from tests.collector_world import golden_observations, volunteer_db  # noqa: E402

_IDS = re.compile(rb'"(x_probe_uuid|x_probe_run_uuid|run)": "([0-9a-f-]{36})"')


def template(tmp: Path, n: int, per_run: int) -> list[tuple[bytes, bytes, int]]:
    """(known body, measurements body, count) per run of one volunteer's database."""
    db_path = tmp / "volunteer.db"
    cases = golden_observations()
    runs, rest = divmod(n, per_run)
    volunteer_db(db_path, runs=runs, per_run=per_run, cases=cases)
    if rest:
        volunteer_db(db_path, runs=1, per_run=rest, cases=cases)
    db = storage.open_existing(db_path)
    out = []
    for run in db.query("select * from runs order by id"):
        docs = list(_documents(db, run, set()))
        known = json.dumps({"run": run["uuid"]}).encode()
        body = b'{"format": "' + wire.FORMAT.encode() + b'", "measurements": [' + b", ".join(docs) + b"]}"
        out.append((known, body, len(docs)))
    db.close()
    return out


def remap(body: bytes, volunteer: int) -> bytes:
    space = uuid.uuid5(uuid.NAMESPACE_URL, f"bench-volunteer-{volunteer}")
    return _IDS.sub(lambda m: b'"%s": "%s"' % (m[1], str(uuid.uuid5(space, m[2].decode())).encode()), body)


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmHWM", "VmRSS")):
            out[line.split(":")[0]] = int(line.split()[1]) // 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    out["cpu_s"] = round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)  # type: ignore[assignment]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--volunteers", type=int, default=100)
    ap.add_argument("--measurements", type=int, default=2400, help="per volunteer")
    ap.add_argument("--per-run", type=int, default=50, help="measurements per run (one request each)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    import httpx

    with tempfile.TemporaryDirectory(prefix="probe-bench-collector-") as tmp_name:
        tmp = Path(tmp_name)
        runs = template(tmp, a.measurements, a.per_run)
        bodies = [[(remap(k, v), remap(b, v), n) for k, b, n in runs] for v in range(a.volunteers)]
        db_path = tmp / "collected.db"
        db = storage.open_collector(db_path)
        tokens = [new_token(db, f"volunteer-{v}") for v in range(a.volunteers)]
        storage.close(db)
        log = tmp / "collector.log"
        with open(log, "wb") as out:
            server = subprocess.Popen([sys.executable, "-m", "probe", "collector", "serve", "--listen",
                                       "127.0.0.1:0", "--db", str(db_path), "--rate", "1000000", "--burst",
                                       "1000000"], stdout=out, stderr=out)
        while "listening on " not in log.read_text():
            assert server.poll() is None, log.read_text()
            time.sleep(0.05)
        url = log.read_text().split("listening on ", 1)[1].split(";", 1)[0].strip() + "/"
        idle = proc_status(server.pid)
        latencies: list[float] = []
        per_volunteer: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(a.volunteers + 1)

        def volunteer(v: int) -> None:
            client = httpx.Client(base_url=url, timeout=600, headers={
                "authorization": f"Bearer {tokens[v]}", "content-type": "application/json"})
            start.wait()
            t_all = time.perf_counter()
            mine = []
            for known, body, _ in bodies[v]:
                if client.post(wire.KNOWN_PATH, content=known).status_code != 200:
                    failures.append(f"{v}: known")
                t0 = time.perf_counter()
                resp = client.post(wire.MEASUREMENTS_PATH, content=body)
                mine.append(time.perf_counter() - t0)
                if resp.status_code != 200:
                    failures.append(f"{v}: {resp.status_code} {resp.text[:100]}")
            with lock:
                latencies.extend(mine)
                per_volunteer.append(time.perf_counter() - t_all)
            client.close()

        threads = [threading.Thread(target=volunteer, args=(v,)) for v in range(a.volunteers)]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        busy = proc_status(server.pid)
        server.terminate()
        server.wait(30)
        con = sqlite3.connect(db_path)
        stored, distinct = con.execute("select count(*), count(distinct uuid) from measurements").fetchone()
        con.close()
        total = a.volunteers * sum(n for _, _, n in runs)
        result = {
            "volunteers": a.volunteers, "measurements_each": a.measurements, "per_request": a.per_run,
            "requests": a.volunteers * len(runs) * 2, "stored": stored, "stored_once": stored == distinct == total,
            "failures": failures[:5], "wall_s": round(wall, 1), "measurements_per_s": round(total / wall, 1),
            "request_p50_s": round(percentile(latencies, 50), 3), "request_p99_s": round(percentile(latencies, 99), 3),
            "request_max_s": round(max(latencies), 3),
            "volunteer_upload_p50_s": round(percentile(per_volunteer, 50), 1),
            "volunteer_upload_p99_s": round(percentile(per_volunteer, 99), 1),
            "collector_rss_idle_mb": idle["VmRSS"], "collector_peak_rss_mb": busy["VmHWM"],
            "collector_cpu_s": busy["cpu_s"],
            "request_body_kb": round(sum(len(b) for _, b, _ in runs) / len(runs) / 1024, 1),
            "db_mb": round(sum(p.stat().st_size for p in tmp.glob("collected.db*")) / 2**20, 1),
            "machine": machine(),
        }
    print(json.dumps(result, indent=None if a.json else 1))


if __name__ == "__main__":
    main()
