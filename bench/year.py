"""A year of runs stays fast: `probe run` start-up, `diff --since`, `timeline` and `report` on a year-long database.

    python bench/year.py                          # 90 runs of 10,000 URLs: 900,000 measurements (~1.4 GB)
    python bench/year.py --runs 30 --urls 2000    # smaller, same shape
    python bench/year.py --db /tmp/year.db --keep # build once, time again later (an existing file is reused)

1. Synthesises the database of issue 22: one list of N URLs measured every four days for a year, alternating
   between two networks, each measurement with what a real run stores (three DNS queries, a TCP connect, a TLS
   handshake with a two-certificate chain for one URL in three, one or two HTTP hops, the helper's reply; see
   merge_export.py); 5% blocked (a few flapping), 3% anomalous; one run in fifteen offline (nothing stored); the
   rules version changes at two thirds of the year (a change of method).
2. Times, each a fresh `probe` process (wall clock, the process included): `probe run` of one loopback URL (and
   the part before measuring: the database check and open, in-process), `probe diff --since` the first run,
   `probe timeline URL`, `probe timeline --category`, `probe report --since` the first run with the size of the
   page it writes.

Nothing touches the network: the one URL measured is served on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path

from calibrate import machine  # bench/ is the script's directory
from merge_export import BLOCKPAGE, add_observations, insert_rows

from probe import storage
from probe.lab.servers import DnsEntry, DnsZone, InThread, Site, Sites, serve_dns, serve_http
from probe.measure import method

NETWORKS = ((64500, "TESTNET-A", "PK"), (64501, "TESTNET-B", "PK"))
PROBE = [sys.executable, "-m", "probe"]


def synthesise(path: Path, runs: int, urls: int, seed: int = 1) -> None:
    storage.open_db(path).close()
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.execute("pragma synchronous = off")
    body_sha = "bb" * 32
    conn.execute("insert or ignore into bodies (sha256, length, data) values (?, ?, ?)",
                 [body_sha, len(BLOCKPAGE), zlib.compress(BLOCKPAGE)])
    # Each URL's nature, fixed for the year: blocked, flapping, anomalous or reachable.
    nature = [("blocked" if r < 0.04 else "flap" if r < 0.05 else "anomaly" if r < 0.08 else "ok")
              for r in (rng.random() for _ in range(urls))]
    categories = ("NEWS", "POLR", "HUMR", "GMB", "COMT", "REL")
    options = {"signatures": True, "no_control": False, "helper": "http://198.18.2.80/", "doh": [],
               "resolvers": [], "timeout": 10.0}
    mid = 0
    for r in range(runs):
        asn, network, cc = NETWORKS[r % 2]
        day = r * 4
        started = f"2025-{1 + day // 31 % 12:02d}-{1 + day % 28:02d}T03:{r % 60:02d}:00+00:00"
        rules = "2026.10.1" if r < runs * 2 // 3 else "2026.11.2"
        offline = r % 15 == 14
        run_method = method.describe(options, rules, [{"name": "builtin", "sha256": "0" * 16}])
        run_id = conn.execute(
            "insert into runs (uuid, started, finished, status, options, software_version, rules_version, url_count,"
            " vantage_asn, vantage_network, vantage_country, resolvers, method) values (?, ?, ?, ?, ?, '0.1.0', ?, "
            "?, ?, ?, ?, '[]', ?)", [str(uuid.uuid4()), started, started, "offline" if offline else "done",
                                     json.dumps(options), rules, urls, asn, network, cc,
                                     json.dumps(run_method, sort_keys=True)]).lastrowid
        if offline:
            conn.commit()
            continue
        m_rows, dns, tcp, tls, http, ctl = [], [], [], [], [], []
        for k in range(urls):
            mid += 1
            https = k % 3 == 0
            host = f"site{k}.example"
            url = f"{'https' if https else 'http'}://{host}/"
            kind = nature[k]
            if kind == "flap":
                kind = "blocked" if (r // 2 + k) % 3 else "ok"
            status, layer, detail, rule = (("blocked", "dns", "dns/censor-ip:probe.pk.nayatel", "dns-censor-ip")
                                           if kind == "blocked" else ("anomaly", "http", "http/diff", "http-diff")
                                           if kind == "anomaly" else ("ok", None, "ok", "ok"))
            ip = f"198.18.{10 + k // 250 % 100}.{k % 250 + 1}"
            m_rows.append((mid, str(uuid.uuid4()), run_id, url, host, categories[k % len(categories)], status, layer,
                           detail, "probe.pk.nayatel" if status == "blocked" else None, "ok", rule, rules,
                           f"{rule}: synthetic", round(rng.uniform(0.2, 3), 3), started, "[]"))
            add_observations((dns, tcp, tls, http, ctl), mid, host, url, ip, https=https,
                             hops=2 if k % 10 == 0 else 1, blocked=status == "blocked", body_sha=body_sha,
                             redirect_to=url + "x/")
        insert_rows(conn, m_rows, dns, tcp, tls, http, ctl)
        conn.commit()
    conn.close()


def timed(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=3600)
    took = time.monotonic() - t0
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    return took, proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=90)
    ap.add_argument("--urls", type=int, default=10_000)
    ap.add_argument("--db", type=Path, help="Where the database goes (reused if it exists).")
    ap.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="probe-year-"))
    db = a.db or tmp / "year.db"
    # Nothing leaves this machine: no what-is-my-IP lookup, no connectivity check, no cached signature sets.
    env = dict(os.environ, PROBE_IP_SERVICE="none", PROBE_PORTAL_CHECK="none", PROBE_DATA_DIR=str(tmp / "data"),
               PROBE_ACCEPT_RISK="1", XDG_CONFIG_HOME=str(tmp / "config"))
    out: dict[str, object] = {"machine": machine(), "runs": a.runs, "urls": a.urls}
    if not db.exists():
        t0 = time.monotonic()
        synthesise(db, a.runs, a.urls)
        out["synthesise_s"] = round(time.monotonic() - t0, 1)
    con = sqlite3.connect(db)
    out["measurements"] = con.execute("select count(*) from measurements").fetchone()[0]
    first = con.execute("select min(started) from runs").fetchone()[0][:10]
    con.close()
    out["db_mb"] = round(db.stat().st_size / 2**20)

    t0 = time.monotonic()
    storage.check_database(db, full=True)
    out["quick_check_s"] = round(time.monotonic() - t0, 2)
    t0 = time.monotonic()
    storage.close(storage.open_db(db, checked=True))
    out["open_db_s"] = round(time.monotonic() - t0, 2)

    zone = DnsZone(entries={"*.test": DnsEntry(a=("127.0.0.1",))})
    with InThread(lambda task_status: serve_dns(zone, task_status=task_status),
                  lambda task_status: serve_http(Sites(default=Site(title="A lab page")),
                                                 task_status=task_status)) as servers:
        dns_port, http_port = servers.ports
        run = [*PROBE, "run", "--db", str(db), "--resolver", f"127.0.0.1:{dns_port}", "--no-system-resolver",
               "--no-control", "--allow-net", "127.0.0.0/8", "--late-window", "0", "--quiet",
               f"http://one.test:{http_port}/"]
        # The day's first run checks the whole file (no passed check recorded); the next ones do not.
        with sqlite3.connect(db) as con:
            if con.execute("select 1 from sqlite_master where name = 'probe_meta'").fetchone():
                con.execute("delete from probe_meta where key = 'quick_check_passed'")
        took, _ = timed(run, env)
        out["run_first_of_day_s"] = round(took, 2)
        took, _ = timed(run, env)
        out["run_one_url_s"] = round(took, 2)
        t0 = time.monotonic()
        storage.check_database(db)
        out["check_database_checked_today_s"] = round(time.monotonic() - t0, 3)
    took, _ = timed([*PROBE, "diff", "--db", str(db), "--since", first], env)
    out["diff_since_s"] = round(took, 2)
    took, _ = timed([*PROBE, "timeline", "--db", str(db), "http://site1.example/"], env)
    out["timeline_url_s"] = round(took, 2)
    took, _ = timed([*PROBE, "timeline", "--db", str(db), "--category", "NEWS", "--csv"], env)
    out["timeline_category_s"] = round(took, 2)
    page = tmp / "report.html"
    took, _ = timed([*PROBE, "report", "--db", str(db), "--since", first, "--html", str(page)], env)
    out["report_s"] = round(took, 2)
    out["report_mb"] = round(page.stat().st_size / 2**20, 2)
    if not a.keep and a.db is None:
        for f in tmp.glob("year.db*"):
            f.unlink()
    if a.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:22} {v}")


if __name__ == "__main__":
    main()
