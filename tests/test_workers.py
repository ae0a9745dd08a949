"""Worker processes and the shared DNS sockets: each URL measured once, limits kept for the whole run, nothing
committed lost to a SIGKILL, no worker outliving its run, and late replies still heard after a URL is done."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

from probe import open_db, read_inputs, run_async
from probe.lab.servers import DnsEntry, DnsZone, InThread, Site, Sites, serve_dns, serve_http
from probe.measure.steps.dns_socket import ROTATE_AFTER
from probe.storage import load_observations, measurements
from tests.test_cli_run import probe_cmd


def _listing(tmp_path: Path, http_port: int, n: int) -> tuple[Path, list[str]]:
    urls = [f"http://w{i}.test:{http_port}/p{i}" for i in range(n)]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(urls) + "\n")
    return listing, urls


def test_workers_measure_each_url_exactly_once_within_the_run_s_dns_limit(tmp_path):
    # Slow answers, so that each process has queries waiting for seconds and the three overlap.
    zone = DnsZone(entries={"*.test": DnsEntry(a=("127.0.0.1",))}, delay=0.5)
    sites = Sites(default=Site(title="A lab page"), delay=0.05)
    with InThread(lambda task_status: serve_dns(zone, task_status=task_status),
                  lambda task_status: serve_http(sites, task_status=task_status)) as servers:
        dns_port, http_port = servers.ports
        listing, urls = _listing(tmp_path, http_port, 300)
        db = tmp_path / "w.db"
        proc = subprocess.run(probe_cmd(dns_port, db, str(listing), "--json", "--workers", "3", "--concurrency",
                                        "120", "--dns-timeout", "4"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    printed = [json.loads(line)["url"] for line in proc.stdout.splitlines()]
    assert sorted(printed) == sorted(urls)
    con = sqlite3.connect(db)
    assert con.execute("select count(*), count(distinct url) from measurements").fetchone() == (300, 300)
    assert {s for (s,) in con.execute("select status from measurements")} == {"ok"}
    # Three processes asked, each from one socket to the resolver (200 queries each: under ROTATE_AFTER)...
    assert len(zone.clients) == 3, zone.clients
    # ...and 240 queries were wanted at once (120 URLs, A and AAAA), yet the run kept to its 64 in flight (one
    # process alone may have 22).
    assert 32 < zone.max_in_flight <= 64, zone.max_in_flight


def test_a_resolver_socket_is_replaced_after_its_share_of_queries_and_the_old_one_drains(tmp_path):
    zone = DnsZone(entries={"*.test": DnsEntry(a=("127.0.0.1",))}, delay=0.05)
    with InThread(lambda task_status: serve_dns(zone, task_status=task_status),
                  lambda task_status: serve_http(Sites(default=Site(title="A lab page")), task_status=task_status)) \
            as servers:
        dns_port, http_port = servers.ports
        listing, urls = _listing(tmp_path, http_port, ROTATE_AFTER // 2 + 10)  # A and AAAA: just past one socket
        db = tmp_path / "r.db"
        proc = subprocess.run(probe_cmd(dns_port, db, str(listing), "--quiet", "--workers", "1", "--late-window",
                                        "1"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(zone.clients) == 2, zone.clients  # a second source port once the first carried ROTATE_AFTER
    con = sqlite3.connect(db)
    assert con.execute("select status, count(*) from measurements group by status").fetchall() == [("ok", len(urls))]
    # Every query had its answer (the zone has no AAAA records), none was lost in the change of socket.
    assert con.execute("select query_type, failure, count(*) from dns_queries group by 1, 2").fetchall() == [
        ("A", None, len(urls)), ("AAAA", "dns_no_answer", len(urls))]


def _probe_pids_with(mark: str) -> set[int]:
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if mark.encode() in Path(f"/proc/{entry}/environ").read_bytes():
                    pids.add(int(entry))
            except OSError:
                continue
    return pids


def test_sigkill_with_workers_loses_only_what_was_not_committed_and_resume_finishes(internet, tmp_path):
    dns_port, http_port, sites = internet
    sites.delay = 0.2
    listing, urls = _listing(tmp_path, http_port, 80)
    db = tmp_path / "k.db"
    mark = f"PROBE_TEST_RUN={uuid.uuid4().hex}"
    env = {**os.environ, mark.split("=")[0]: mark.split("=")[1]}
    proc = subprocess.Popen(probe_cmd(dns_port, db, str(listing), "--json", "--workers", "2", "--concurrency", "4"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    printed = [proc.stdout.readline() for _ in range(10)]
    assert all(printed), "probe ended early"
    assert len(_probe_pids_with(mark)) == 2, "the run and its worker are measuring"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    con = sqlite3.connect(db)
    assert con.execute("pragma integrity_check").fetchone()[0] == "ok"
    stored = {u for (u,) in con.execute("select url from measurements")}
    # A line is printed only after its batch is committed: every printed URL is in the database.
    assert {json.loads(x)["url"] for x in printed} <= stored
    assert 10 <= len(stored) < 80
    con.close()
    for _ in range(40):  # the orphaned worker notices within half a second
        if not _probe_pids_with(mark):
            break
        time.sleep(0.1)
    assert not _probe_pids_with(mark), "no worker outlives its run"
    resumed = subprocess.run(probe_cmd(dns_port, db, "--quiet", "--workers", "2", "--resume"), capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    con = sqlite3.connect(db)
    assert con.execute("select count(*), count(distinct url) from measurements").fetchone() == (80, 80)
    assert {u for (u,) in con.execute("select url from measurements")} == set(urls)
    assert con.execute("select status from runs").fetchone()[0] == "done"


async def test_a_late_injected_reply_is_heard_after_the_url_has_freed_its_slot(world):
    """One slot and a long window: the URL is done before its window ends, and the forgery is still judged."""
    net = world
    targets, _ = read_inputs([net.http("inject.test"), net.http("ok.test")])
    db = open_db(":memory:")
    summary = await run_async(db, targets, net.options(concurrency=1, late_window=3.0), emit=None)
    rows = {m["url"]: m for m in measurements(db, summary.run_id)}
    injected = rows[net.http("inject.test")]
    assert (injected["status"], injected["rule"]) == ("anomaly", "dns-injection-unverified")
    obs = load_observations(db, injected)
    a = next(q for q in obs.dns if q.query_type == "A")
    assert [late["answers"] for late in a.late_answers] == [["127.0.0.1"]] and a.answers == ("10.10.34.36",)
    # Both URLs went through the one slot: the second began while the first's 3 s window was still open (a slot
    # held through the window would have made it wait the window out). An order of events, not a speed limit.
    first, second = sorted(rows.values(), key=lambda r: r["started"])
    gap = dt.datetime.fromisoformat(second["started"]) - dt.datetime.fromisoformat(first["started"])
    assert gap.total_seconds() < 3.0, gap
