"""A database with known runs over time, made by `probe run` itself against loopback servers (issue 22).

Runs, in order (network A unless said):
1. signatures from a test pack: notice.test shows the pack's notice (blocked), flip.test a plain page (ok);
2. the same method: flip.test now shows the notice too (newly blocked);
3. `--no-signatures`: another method, the same pages (both verdicts change, and that says nothing of censorship);
4. offline (`unshare -n`: nothing answers): nothing stored, the run stays open;
5. offline, then resumed online with its own options (`--resume 5`): done;
6. network B, the method of run 1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from probe import open_db
from probe.lab.servers import DnsEntry, DnsZone, InThread, Site, Sites, serve_dns, serve_http
from probe.storage import close, set_vantage
from tests.test_cli_run import PROBE, probe_cmd

needs_unshare = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                   reason="needs root and unshare(1) for a private network namespace (offline runs)")

NET_A = (64500, "TESTNET-A")
NET_B = (64501, "TESTNET-B")
A, B = f"AS{NET_A[0]} {NET_A[1]}", f"AS{NET_B[0]} {NET_B[1]}"
NOTICE = b"<html><head><title>Notice</title></head><body><h1>Blocked by order of the authority</h1></body></html>"
HOSTS = ("notice", "flip", "plain")


def pack(signature_id: str) -> str:
    return json.dumps({"about": "a test pack", "signatures": [
        {"id": signature_id, "where": "body", "kind": "contains", "pattern": "Blocked by order of the authority",
         "scope": "isp", "countries": ["PK"], "confidence": 9, "name": "a lab notice", "source": "this test"}]})


@dataclass
class TimeWorld:
    db: Path
    pack: Path
    listing: Path
    urls: dict[str, str]  # host -> URL
    outputs: dict[str, subprocess.CompletedProcess[str]]  # what each `probe run` said


def _probe(args: list[str], unshare: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "-n", *args] if unshare else args, capture_output=True, text=True,
                          timeout=120)


def build(tmp: Path) -> TimeWorld:
    zone = DnsZone(entries={"*.test": DnsEntry(a=("127.0.0.1",))})
    sites = Sites(default=Site(title="A lab page"))
    sites.by_host["notice.test"] = Site(body=NOTICE, headers=())
    with InThread(lambda task_status: serve_dns(zone, task_status=task_status),
                  lambda task_status: serve_http(sites, task_status=task_status)) as servers:
        dns_port, http_port = servers.ports
        urls = {h: f"http://{h}.test:{http_port}/" for h in HOSTS}
        world = TimeWorld(db=tmp / "time.db", pack=tmp / "pack.json", listing=tmp / "list.txt", urls=urls,
                          outputs={})
        world.pack.write_text(pack("test.notice"))
        world.listing.write_text("\n".join(urls.values()) + "\n")
        run = probe_cmd(dns_port, world.db, str(world.listing))
        sigs = ["--signatures", str(world.pack)]
        world.outputs["1"] = _probe([*run, *sigs])
        sites.by_host["flip.test"] = Site(body=NOTICE, headers=())
        world.outputs["2"] = _probe([*run, *sigs])
        world.outputs["3"] = _probe([*run, "--no-signatures"])
        world.outputs["4"] = _probe([*run, *sigs], unshare=True)
        world.outputs["5-offline"] = _probe([*run, *sigs], unshare=True)
        world.outputs["5-resumed"] = _probe([*PROBE, "run", "--db", str(world.db), "--resume", "5"])
        world.outputs["6"] = _probe([*run, *sigs])
    for name, out in world.outputs.items():
        assert out.returncode == (3 if "4" in name or "offline" in name else 0), (name, out.stderr)
    db = open_db(world.db)
    for run_id in range(1, 7):
        asn, network = NET_B if run_id == 6 else NET_A
        set_vantage(db, run_id, asn, network, "PK", None)
    # One run a day, as a researcher's cron makes them (the runs above took seconds).
    for run_id in range(1, 7):
        db.execute("update runs set started = ?, finished = ? where id = ?",
                   [f"2025-10-0{run_id}T06:00:00+00:00", f"2025-10-0{run_id}T06:00:02+00:00", run_id])
    db.conn.commit()
    close(db)
    return world
