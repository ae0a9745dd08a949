"""Many vantage points at scale: merge, Parquet export and the ClickHouse load, timed, with peak RSS.

    python bench/merge_export.py                        # 1,000,000 measurements; 100 databases of 10,000
    python bench/merge_export.py --measurements 100000 --sources 20 --json

1. Synthesises a database of N measurements (runs of 10,000 on four networks, weekly over months), each with
   what a real run stores: three DNS queries (A, AAAA, the control's DoH A), a TCP connect, a TLS handshake
   with a two-certificate chain for one URL in three, one HTTP hop (two for one in ten, a redirect) with
   realistic headers, the helper's reply; blockpage bodies for the blocked ones.
2. `probe export --format parquet --all` of it: wall, CPU, peak RSS, rows and bytes per file.
3. The ClickHouse load (chDB in its own venv, see .ci/run; a fresh process): the shipped schema, then
   `INSERT INTO t SELECT * FROM file(...)` per file, rows loaded against rows exported.
4. `probe merge` of S databases of M measurements each (copies of one synthesised database with fresh UUIDs
   and their own ASN): the time of each tenth of the sources (linear growth means a flat line), then the same
   merge again (idempotent: nothing added) as one `probe merge` command, with its peak RSS.

Peak RSS and CPU come from `probe/lab/rusage.py` (a small launcher, so a large parent does not inflate them).
Everything stays on this machine; nothing touches the network.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

from calibrate import machine  # bench/ is the script's directory

from probe import storage
from probe.lab.rusage import run_measured
from probe.research.clickhouse import DEFAULT_CHDB_PYTHON, chdb_python, schema
from probe.research.tables import TABLES

RUN_SIZE = 10_000
NETWORKS = ((64500, "TESTNET-A", "PK"), (64501, "TESTNET-B", "PK"), (64502, "TESTNET-C", "PK"),
            (64503, "TESTNET-D", "IR"))
HEADERS = json.dumps([["Server", "nginx"], ["Date", "Fri, 27 Nov 2026 08:00:00 GMT"],
                      ["Content-Type", "text/html; charset=utf-8"], ["Content-Length", "5120"],
                      ["Connection", "keep-alive"], ["Cache-Control", "max-age=600"],
                      ["X-Frame-Options", "SAMEORIGIN"], ["Vary", "Accept-Encoding"]])
CERT = {"subject": "CN={h}", "issuer": "CN=Lab Intermediate CA,O=Lab", "common_name": "{h}", "sans": ["{h}"],
        "not_before": "2026-01-01T00:00:00+00:00", "not_after": "2027-01-01T00:00:00+00:00"}
BLOCKPAGE = b"<html><head><title>Surf Safely!</title></head><body>" + b"prohibited for viewership " * 40 + b"</body>"


def _chain(host: str, i: int) -> str:
    leaf = {k: (v.replace("{h}", host) if isinstance(v, str) else [host]) for k, v in CERT.items()}
    inter = dict(CERT, subject="CN=Lab Intermediate CA,O=Lab", issuer="CN=Lab Root", common_name="Lab Intermediate",
                 sans=[])
    return json.dumps([dict(leaf, sha256=f"{i:064x}"), dict(inter, sha256="ab" * 32)])


def synthesise(path: Path, n: int, networks=NETWORKS, seed: int = 1) -> None:
    """A database of n measurements, written as the runner writes them (same tables, same JSON columns)."""
    storage.open_db(path).close()
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.execute("pragma synchronous = off")
    body_sha = "bb" * 32
    conn.execute("insert or ignore into bodies (sha256, length, data) values (?, ?, ?)",
                 [body_sha, len(BLOCKPAGE), __import__("zlib").compress(BLOCKPAGE)])
    mid = 0
    runs = max(1, n // RUN_SIZE)
    for r in range(runs):
        asn, network, cc = networks[r % len(networks)]
        week = r // len(networks)
        started = f"2026-{1 + (week // 4) % 12:02d}-{1 + 7 * (week % 4):02d}T03:00:00+00:00"
        size = RUN_SIZE if r < runs - 1 else n - RUN_SIZE * (runs - 1)
        run_id = conn.execute(
            "insert into runs (uuid, started, finished, status, options, software_version, rules_version, url_count,"
            " vantage_asn, vantage_network, vantage_country, resolvers) values (?, ?, ?, 'done', '{}', '0.1.0', "
            "'r1', ?, ?, ?, ?, '[]')", [str(uuid.uuid4()), started, started, size, asn, network, cc]).lastrowid
        m_rows, dns, tcp, tls, http, ctl = [], [], [], [], [], []
        for k in range(size):
            mid += 1
            site = rng.randrange(20_000)
            https = site % 3 == 0
            host = f"site{site}.example"
            url = f"{'https' if https else 'http'}://{host}/page{k}"
            roll = rng.random()
            status, layer, detail, rule = (("blocked", "dns", "dns/censor-ip:probe.pk.nayatel", "dns-censor-ip")
                                           if roll < 0.05 else ("anomaly", "http", "http/diff", "http-diff")
                                           if roll < 0.08 else ("down", "tcp", "tcp/connection_refused", "tcp-down")
                                           if roll < 0.10 else ("ok", None, "ok", "https-verified" if https else "ok"))
            ip = f"198.18.{10 + site // 250 % 100}.{site % 250 + 1}"
            m_rows.append((mid, str(uuid.uuid4()), run_id, url, host, "NEWS", status, layer, detail, None, "ok", rule,
                           "r1", f"{rule}: synthetic", round(rng.uniform(0.2, 3), 3), started, "[]"))
            add_observations((dns, tcp, tls, http, ctl), mid, host, url, ip, https=https,
                             hops=2 if k % 10 == 0 else 1, blocked=status == "blocked", body_sha=body_sha,
                             redirect_to=url + "/")
        insert_rows(conn, m_rows, dns, tcp, tls, http, ctl)
        conn.commit()
    conn.close()


def add_observations(rows: tuple[list, list, list, list, list], mid: int, host: str, url: str, ip: str, *,
                     https: bool, hops: int, blocked: bool, body_sha: str, redirect_to: str) -> None:
    """One measurement's observation rows (DNS, TCP, TLS, HTTP, control), as the runner stores them; a page
    reached after `hops - 1` redirects to `redirect_to` (bench/year.py builds its year with it too)."""
    dns, tcp, tls, http, ctl = rows
    answers = json.dumps([ip])
    dns.append((mid, "system:127.0.0.53:53", "udp", host, "A", answers, "[]", 300, "NOERROR", None, "[]",
                0, 0.001, 0.02))
    dns.append((mid, "system:127.0.0.53:53", "udp", host, "AAAA", "[]", "[]", None, "NOERROR", None, "[]",
                0, 0.001, 0.02))
    dns.append((mid, "doh:https://198.18.2.54/dns-query", "doh", host, "A", answers, "[]", 300, "NOERROR",
                None, "[]", 1, 0.001, 0.05))
    tcp.append((mid, ip, 443 if https else 80, "probe", None, 0.021, 0.04))
    if https:
        tls.append((mid, ip, 443, host, 0, None, "TLSv1.3", "TLS_AES_256_GCM_SHA384", "http/1.1",
                    _chain(host, mid), None, 0.04, 0.09))
    for h in range(hops):
        last = h == hops - 1
        http.append((mid, url if h == 0 else redirect_to, ip, 200 if last else 301, HEADERS,
                     None if last else redirect_to, 5120 if last else 0, body_sha if blocked else f"{mid:064x}", 0,
                     "Welcome" if not blocked else "Surf Safely!", None, None, 0.09, 0.2))
    ctl.append((mid, "http://198.18.2.80/", None, answers, None, "{}", "{}", 200, None, "Welcome", "{}", 5120,
                None, 0.0, 0.3))


def insert_rows(conn: sqlite3.Connection, m_rows: list, dns: list, tcp: list, tls: list, http: list,
                ctl: list) -> None:
    """A synthesised batch as the schema of m001-m007 has it (bench/year.py builds its year with it too)."""
    conn.executemany("insert into measurements (id, uuid, run_id, url, hostname, category, status, layer, detail,"
                     " fingerprint, control, rule, rules_version, evidence, runtime_s, started, bogons) values "
                     f"({', '.join('?' * 17)})", m_rows)
    conn.executemany("insert into dns_queries (measurement_id, resolver, engine, hostname, query_type, answers, "
                     "cnames, ttl, rcode, failure, late_answers, control, t0, t) values "
                     f"({', '.join('?' * 14)})", dns)
    conn.executemany("insert into tcp_connects (measurement_id, ip, port, origin, failure, t0, t) values "
                     "(?, ?, ?, ?, ?, ?, ?)", tcp)
    conn.executemany("insert into tls_handshakes (measurement_id, ip, port, sni, decoy, failure, version, cipher,"
                     " alpn, peer_chain, first_failure, t0, t) values "
                     f"({', '.join('?' * 13)})", tls)
    conn.executemany("insert into http_hops (measurement_id, url, ip, status, headers, location, body_length, "
                     "body_sha256, body_truncated, title, failure, stopped, t0, t) values "
                     f"({', '.join('?' * 14)})", http)
    conn.executemany("insert into control_results (measurement_id, source, failure, dns_addrs, dns_failure, "
                     "tcp_connect, tls_handshake, http_status, http_failure, http_title, http_headers, "
                     "http_body_length, http_body_sha256, t0, t) values "
                     f"({', '.join('?' * 15)})", ctl)


def reidentify(path: Path, asn: int) -> None:
    """A copy of a volunteer's database made into another volunteer's: fresh UUIDs, its own network."""
    conn = sqlite3.connect(path)
    conn.executemany("update runs set uuid = ? where id = ?",
                     [(str(uuid.uuid4()), rid) for (rid,) in conn.execute("select id from runs").fetchall()])
    conn.executemany("update measurements set uuid = ? where id = ?",
                     [(str(uuid.uuid4()), mid) for (mid,) in conn.execute("select id from measurements").fetchall()])
    conn.execute("update runs set vantage_asn = ?, vantage_network = ?", [asn, f"VOLUNTEER-{asn}"])
    conn.commit()
    conn.close()


# Runs in chDB's interpreter (stdlib and chdb only): argv = parquet dir, session dir, schema file, tables...
_LOAD = """
import json, sys, time
from chdb import session
s = session.Session(sys.argv[2])
s.query("CREATE DATABASE IF NOT EXISTS research"); s.query("USE research")
for stmt in open(sys.argv[3]).read().split(";"):
    if stmt.strip():
        s.query(stmt)
out = {}
for name in sys.argv[4:]:
    t0 = time.monotonic()
    s.query(f"INSERT INTO {name} SELECT * FROM file('{sys.argv[1]}/{name}.parquet', Parquet)")
    n = int(s.query(f"SELECT count() FROM {name}", "CSV").bytes())
    out[name] = {"rows": n, "s": round(time.monotonic() - t0, 2)}
s.close()
print(json.dumps(out))
"""

_MERGE_TIMED = """
import json, sys, time
from probe import storage
from probe.research.merge import merge
dest = storage.open_db(sys.argv[1])
sources = sys.argv[3:]
step = int(sys.argv[2])
times, added = [], 0
for i in range(0, len(sources), step):
    t0 = time.monotonic()
    for r in merge(dest, sources[i:i + step]):
        assert r.error is None, r.summary()
        added += r.added["measurements"]
    times.append(round(time.monotonic() - t0, 2))
print(json.dumps({"seconds_per_step": times, "measurements_added": added}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measurements", type=int, default=1_000_000)
    ap.add_argument("--sources", type=int, default=100, help="databases to merge")
    ap.add_argument("--per-source", type=int, default=10_000, help="measurements in each")
    ap.add_argument("--work", help="directory for the databases (default: a temporary one, removed)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="probe-bench-merge-"))
    work.mkdir(parents=True, exist_ok=True)
    env = _env()
    result: dict = {"machine": machine(), "measurements": args.measurements}
    try:
        big = work / "big.db"
        big.unlink(missing_ok=True)
        t0 = time.monotonic()
        synthesise(big, args.measurements)
        conn = sqlite3.connect(big)
        result["synthesised"] = {
            "seconds": round(time.monotonic() - t0, 1), "db_mb": round(big.stat().st_size / 2**20, 1),
            "rows": {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in
                     ("measurements", "dns_queries", "tcp_connects", "tls_handshakes", "http_hops")}}
        conn.close()

        out = work / "parquet"
        shutil.rmtree(out, ignore_errors=True)
        m = run_measured([sys.executable, "-m", "probe", "export", "--db", str(big), "--format", "parquet", "--all",
                          "-o", str(out)], env=env)
        if m.returncode:
            raise SystemExit(f"export failed: {m.stderr[-2000:]}")
        result["export"] = {"wall_s": round(m.wall_s, 1), "cpu_s": round(m.cpu_s, 1),
                            "peak_rss_mb": round(m.peak_rss_mb), "said": m.stderr.strip().splitlines()[-1],
                            "files_mb": {p.stem: round(p.stat().st_size / 2**20, 1) for p in sorted(out.iterdir())}}

        chdb_dir = work / "chdb"
        shutil.rmtree(chdb_dir, ignore_errors=True)
        ddl = work / "schema.sql"
        ddl.write_text(schema())
        python = chdb_python()
        if python is None:
            raise SystemExit(f"chdb not found: set PROBE_CHDB_PYTHON (.ci/run makes {DEFAULT_CHDB_PYTHON})")
        m = run_measured([python, "-c", _LOAD, str(out), str(chdb_dir), str(ddl), *(t.name for t in TABLES)],
                         env=env, capture_stdout=True)
        if m.returncode:
            raise SystemExit(f"ClickHouse load failed: {m.stderr[-2000:]}")
        loaded = json.loads(m.stdout)
        exported = result["synthesised"]["rows"]
        result["clickhouse_load"] = {"wall_s": round(m.wall_s, 1), "cpu_s": round(m.cpu_s, 1),
                                     "peak_rss_mb": round(m.peak_rss_mb), "tables": loaded,
                                     "rows_rejected": {t: exported[t] - loaded[t]["rows"] for t in exported}}

        template = work / "volunteer.db"
        template.unlink(missing_ok=True)
        synthesise(template, args.per_source, seed=2)
        sources = []
        for i in range(args.sources):
            path = work / f"volunteer-{i:03d}.db"
            shutil.copyfile(template, path)
            reidentify(path, 65000 + i)
            sources.append(str(path))
        dest = work / "merged.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(dest) + suffix).unlink(missing_ok=True)
        step = max(1, args.sources // 10)
        m = run_measured([sys.executable, "-c", _MERGE_TIMED, str(dest), str(step), *sources], env=env,
                         capture_stdout=True)
        if m.returncode:
            raise SystemExit(f"merge failed: {m.stderr[-2000:]}")
        first = json.loads(m.stdout)
        again = run_measured([sys.executable, "-m", "probe", "merge", *sources, "--into", str(dest)], env=env,
                             capture_stdout=True)
        conn = sqlite3.connect(dest)
        total = conn.execute("select count(*) from measurements").fetchone()[0]
        conn.close()
        result["merge"] = {
            "sources": args.sources, "per_source": args.per_source, "wall_s": round(m.wall_s, 1),
            "peak_rss_mb": round(m.peak_rss_mb), "seconds_per_tenth": first["seconds_per_step"],
            "measurements_added": first["measurements_added"], "measurements_in_dest": total,
            "again": {"wall_s": round(again.wall_s, 1), "peak_rss_mb": round(again.peak_rss_mb),
                      "returncode": again.returncode,
                      "added_nothing": again.stdout.strip().splitlines()[-1].endswith(
                          f"added 0 runs, 0 measurements from {args.sources} of {args.sources} source(s)")},
            "dest_mb": round(dest.stat().st_size / 2**20, 1)}
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=None if args.json else 1))


if __name__ == "__main__":
    main()
