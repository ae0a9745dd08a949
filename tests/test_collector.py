"""`probe upload` and `probe collector serve`, over loopback, as volunteers and researchers run them: the
collector is the real command in a subprocess (Starlette on hypercorn on trio), the client the real `probe
upload`, or raw HTTP for what our client never sends."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from probe.collector import wire
from tests.collector_world import golden_observations, volunteer_db

PROBE = [sys.executable, "-m", "probe"]
CASES = golden_observations()


@dataclass
class Collector:
    url: str
    db: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def token(self, name: str) -> str:
        return _token(self.db, name)

    def count(self) -> int:
        return _count(self.db)

    def healthy(self) -> bool:
        return httpx.get(self.url + wire.HEALTH_PATH, timeout=5).json() == {"ok": True}


def _token(db: Path, name: str) -> str:
    proc = subprocess.run([*PROBE, "collector", "token", "add", name, "--db", str(db)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[-1]


def _count(db: Path, sql: str = "select count(*) from measurements") -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def start_collector(db: Path, *args: str) -> Collector:
    log = db.with_suffix(f".{time.monotonic_ns()}.log")
    with open(log, "wb") as out:
        proc = subprocess.Popen([*PROBE, "collector", "serve", "--listen", "127.0.0.1:0", "--db", str(db), *args],
                                stdout=out, stderr=out)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_text()
        if "listening on " in text:
            url = text.split("listening on ", 1)[1].split(";", 1)[0].split(",")[0].strip()
            return Collector(url.rstrip("/") + "/", db, log, proc)
        assert proc.poll() is None, text
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the collector did not start: {log.read_text()}")


def stop(c: Collector) -> None:
    if c.proc.poll() is None:
        c.proc.send_signal(signal.SIGINT)
        try:
            c.proc.wait(10)
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait()


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    c = start_collector(tmp_path_factory.mktemp("collector") / "collected.db")
    yield c
    stop(c)
    assert c.proc.returncode == 0, c.log.read_text()


def upload(url: str, token: str | None, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [*PROBE, "upload", "--to", url, "--db", str(db), "--yes", *args]
    env = dict(os.environ)
    env.pop("PROBE_UPLOAD_TOKEN", None)
    if token is not None:
        cmd += ["--token", token]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)


def batch(db: Path) -> bytes:
    """The body `probe upload` sends for a volunteer database's first run (for requests our client never makes)."""
    from probe import storage
    from probe.volunteer.upload import _documents

    vdb = storage.open_existing(db)
    try:
        run = storage.run_row(vdb, 1)
        assert run is not None
        docs = [json.loads(d) for d in _documents(vdb, run, set())]
    finally:
        vdb.close()
    return json.dumps({"format": wire.FORMAT, "measurements": docs}).encode()


def post(c: Collector, token: str | None, body: bytes, path: str = wire.MEASUREMENTS_PATH,
         **headers: str) -> httpx.Response:
    h = {"content-type": "application/json", **headers}
    if token is not None:
        h["authorization"] = f"Bearer {token}".strip()
    return httpx.post(c.url + path, content=body, headers=h, timeout=30)


def test_the_same_upload_twice_stores_once(collector: Collector, tmp_path: Path):
    token = collector.token("twice")
    vol = tmp_path / "volunteer.db"
    uuids = volunteer_db(vol, runs=2, per_run=30)
    before = collector.count()
    first = upload(collector.url, token, vol)
    assert first.returncode == 0, first.stderr
    assert "2 run(s), 60 measurements" in first.stderr and "AS64500 TESTNET-A (PK)" in first.stderr
    assert "done: 60 measurements stored" in first.stderr
    second = upload(collector.url, token, vol)
    assert second.returncode == 0, second.stderr
    assert "done: 0 measurements stored by the collector, 60 it had already" in second.stderr
    assert collector.count() == before + 60
    stored = {r[0] for r in sqlite3.connect(collector.db).execute("select uuid from measurements")}
    assert set(uuids) <= stored  # the volunteer's identities, kept
    status = subprocess.run([*PROBE, "collector", "status", "--db", str(collector.db), "--json"],
                            capture_output=True, text=True, timeout=30)
    row = next(json.loads(line) for line in status.stdout.splitlines() if json.loads(line)["token"] == "twice")
    assert row["measurements"] == 60 and row["last_upload"]
    assert row["networks"] == [{"asn": 64500, "network": "TESTNET-A", "country": "PK", "runs": 2}]


def test_a_raw_batch_sent_twice_is_stored_once(collector: Collector, tmp_path: Path):
    token = collector.token("raw-twice")
    vol = tmp_path / "volunteer.db"
    volunteer_db(vol, per_run=10)
    body = batch(vol)
    assert post(collector, token, body).json() == {"stored": 10, "duplicates": 0}
    assert post(collector, token, body).json() == {"stored": 0, "duplicates": 10}


@pytest.mark.parametrize("token", [None, "", "not-a-token", "revoked"])
def test_a_missing_bad_or_revoked_token_is_refused_and_nothing_is_stored(collector: Collector, tmp_path: Path,
                                                                         token: str | None):
    vol = tmp_path / "volunteer.db"
    volunteer_db(vol, per_run=5)
    if token == "revoked":
        token = collector.token("to-revoke")
        revoke = subprocess.run([*PROBE, "collector", "token", "revoke", "to-revoke", "--db", str(collector.db)],
                                capture_output=True, text=True, timeout=30)
        assert revoke.returncode == 0, revoke.stderr
    before = collector.count()
    resp = post(collector, token, batch(vol))
    assert resp.status_code == 401 and resp.json()["error"]
    if token is not None:
        proc = upload(collector.url, token or "x y", vol)
        assert proc.returncode == (6 if token else 1), proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("error:"), proc.stderr
    assert collector.count() == before
    assert collector.healthy()


def test_upload_without_a_token_says_how_to_get_one(collector: Collector, tmp_path: Path):
    vol = tmp_path / "volunteer.db"
    volunteer_db(vol, per_run=2)
    proc = upload(collector.url, None, vol)
    assert proc.returncode == 1 and "PROBE_UPLOAD_TOKEN" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("to", "db", "run", "message"), [
    ("ftp://collector.test/", "volunteer.db", None, "error: --to: 'ftp://collector.test/' is not an http(s) URL"),
    (None, "missing.db", None, "error: no database at"),
    (None, "volunteer.db", "99", "error: no run 99 in this database"),
])
def test_bad_upload_input_is_one_line_and_exit_1(collector: Collector, tmp_path: Path, to, db, run, message):
    volunteer_db(tmp_path / "volunteer.db", per_run=2)
    proc = upload(to or collector.url, "a-token", tmp_path / db, *(["--run", run] if run else []))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().startswith(message), proc.stderr  # before anything is shown
    assert len(proc.stderr.strip().splitlines()) == 1


def test_malformed_json_is_400_and_nothing_is_stored(collector: Collector):
    token = collector.token("malformed")
    before = collector.count()
    for body in (b"{not json", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000):
        resp = post(collector, token, body)
        assert resp.status_code == 400, resp.text
        assert "not JSON" in resp.json()["error"]
    assert collector.count() == before
    assert collector.healthy()


def _doc(vol: Path) -> dict:
    return json.loads(batch(vol))["measurements"][0]


@pytest.mark.parametrize(("change", "reason"), [
    (lambda d: d["test_keys"].update(x_probe_uuid="not-a-uuid"), "x_probe_uuid is not a UUID"),
    (lambda d: d["test_keys"].pop("x_probe_run_uuid"), "x_probe_run_uuid must be a UUID"),
    (lambda d: d.update(probe_asn="64500"), "probe_asn must be AS<number>"),
    (lambda d: d.update(probe_cc="pk"), "probe_cc must be two upper-case letters"),
    (lambda d: d.update(probe_ip="203.0.113.7"), "probe_ip must be absent"),
    (lambda d: d.update(measurement_start_time="2099-01-01 00:00:00"), "out of range"),
    (lambda d: d.update(measurement_start_time="yesterday"), "YYYY-MM-DD HH:MM:SS"),
    (lambda d: d.update(input="ftp://a.test/"), "input must be an http"),
    (lambda d: d.update(test_name="tor"), "test_name must be 'web_connectivity'"),
    (lambda d: d.update(probe_network_name="x" * 1000), "probe_network_name must be at most"),
    (lambda d: d.update(test_keys=[]), "test_keys must be an object"),
])
def test_a_wrong_schema_is_422_naming_the_field_and_the_whole_batch_is_refused(collector: Collector,
                                                                               tmp_path: Path, change, reason):
    token = collector.token(f"schema-{time.monotonic_ns()}")
    vol = tmp_path / "volunteer.db"
    volunteer_db(vol, per_run=3)
    docs = json.loads(batch(vol))["measurements"]
    change(docs[2])  # the last one is bad: the two good ones before it are not stored either
    before = collector.count()
    resp = post(collector, token, json.dumps({"format": wire.FORMAT, "measurements": docs}).encode())
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"].startswith("measurements[2]: ") and reason in resp.json()["error"], resp.text
    assert collector.count() == before
    assert collector.healthy()


@pytest.mark.parametrize("body", [
    {"measurements": []},
    {"format": "probe-upload/2", "measurements": [{}]},
    {"format": wire.FORMAT, "measurements": []},
    {"format": wire.FORMAT, "measurements": {}},
    [],
])
def test_a_wrong_envelope_is_422(collector: Collector, body):
    token = collector.token(f"envelope-{time.monotonic_ns()}")
    resp = post(collector, token, json.dumps(body).encode())
    assert resp.status_code == 422, resp.text


def test_a_10000_item_batch_is_413_and_nothing_is_stored(collector: Collector, tmp_path: Path):
    token = collector.token("huge-batch")
    vol = tmp_path / "volunteer.db"
    volunteer_db(vol, per_run=1)
    doc = _doc(vol)
    # Small items, so the body stays under the size limit and the item limit is what refuses it.
    doc = {"test_name": "web_connectivity", "test_keys": {"x_probe_run_uuid": doc["test_keys"]["x_probe_run_uuid"]}}
    docs = [dict(doc, test_keys=dict(doc["test_keys"], x_probe_uuid=f"00000000-0000-4000-8000-{i:012d}"))
            for i in range(10_000)]
    before = collector.count()
    resp = post(collector, token, json.dumps({"format": wire.FORMAT, "measurements": docs}).encode())
    assert resp.status_code == 413 and "10000 measurements" in resp.json()["error"], resp.text
    assert collector.count() == before
    assert collector.healthy()


def test_an_oversized_body_is_413_and_nothing_is_stored(tmp_path: Path):
    c = start_collector(tmp_path / "small.db", "--max-body-mb", "0.05")
    try:
        token = c.token("big")
        vol = tmp_path / "volunteer.db"
        volunteer_db(vol, per_run=40)
        body = batch(vol)
        assert len(body) > 0.05 * 1024 * 1024
        resp = post(c, token, body)  # announced by Content-Length
        assert resp.status_code == 413 and "send smaller batches" in resp.json()["error"]

        def chunks():  # not announced: counted as it arrives
            for i in range(0, len(body), 4096):
                yield body[i:i + 4096]

        resp = httpx.post(c.url + wire.MEASUREMENTS_PATH, content=chunks(), timeout=30,
                          headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
        assert resp.status_code == 413
        assert c.count() == 0
        assert c.healthy()
        # The client splits to fit: the same database goes through in smaller requests.
        proc = upload(c.url, token, vol)
        assert proc.returncode != 0  # our client's 4 MiB batches are over this collector's 50 KiB
        assert "413" in proc.stderr
    finally:
        stop(c)


def test_a_slow_client_gets_408_and_the_server_keeps_serving(tmp_path: Path):
    c = start_collector(tmp_path / "slow.db", "--body-timeout", "1")
    try:
        token = c.token("slow")
        host, port = c.url.split("//")[1].rstrip("/").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(f"POST /{wire.MEASUREMENTS_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Authorization: Bearer {token}\r\nContent-Length: 1000\r\n\r\n{{".encode())
            time.sleep(1.5)  # the body never completes
            reply = s.recv(4096).decode()
        assert reply.startswith("HTTP/1.1 408"), reply
        assert "did not arrive within 1 s" in reply
        assert c.count() == 0
        assert c.healthy()
    finally:
        stop(c)


def test_over_the_rate_a_token_gets_429_with_retry_after(tmp_path: Path):
    c = start_collector(tmp_path / "rate.db", "--rate", "6", "--burst", "2")
    try:
        token, other = c.token("eager"), c.token("patient")
        body = json.dumps({"run": "00000000-0000-4000-8000-000000000000"}).encode()
        codes = [post(c, token, body, wire.KNOWN_PATH).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        resp = post(c, token, body, wire.KNOWN_PATH)
        assert resp.status_code == 429 and int(resp.headers["retry-after"]) >= 1
        assert post(c, other, body, wire.KNOWN_PATH).status_code == 200  # per token
    finally:
        stop(c)


def test_killed_in_the_middle_of_an_upload_then_retried_stores_each_measurement_once(tmp_path: Path):
    db = tmp_path / "killed.db"
    c = start_collector(db)
    token = c.token("interrupted")
    vol = tmp_path / "volunteer.db"
    uuids = volunteer_db(vol, runs=24, per_run=50)  # 1,200 measurements, one request per run
    client = subprocess.Popen([*PROBE, "upload", "--to", c.url, "--token", token, "--db", str(vol), "--yes",
                               "--retries", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while _count(db) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    c.proc.kill()  # SIGKILL: no goodbye, a request may be half received or half written
    c.proc.wait()
    _, err = client.communicate(timeout=60)
    assert client.returncode == 6, err
    assert "the same `probe upload` again resumes" in err
    partial = _count(db)
    assert 200 <= partial < len(uuids)
    c = start_collector(db)
    try:
        proc = upload(c.url, token, vol)
        assert proc.returncode == 0, proc.stderr
        assert f"done: {len(uuids) - partial} measurements stored" in proc.stderr
    finally:
        stop(c)
    assert _count(db) == len(uuids)
    assert _count(db, "select count(distinct uuid) from measurements") == len(uuids)
    assert {r[0] for r in sqlite3.connect(db).execute("select uuid from measurements")} == set(uuids)


def test_the_client_address_is_never_stored_or_logged(tmp_path: Path):
    db = tmp_path / "private.db"
    c = start_collector(db)
    try:
        token = c.token("quiet")
        vol = tmp_path / "volunteer.db"
        volunteer_db(vol, per_run=20)
        client = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.77"), timeout=30)
        resp = client.post(c.url + wire.MEASUREMENTS_PATH, content=batch(vol),
                           headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
        assert resp.status_code == 200 and resp.json()["stored"] == 20
        bad = client.post(c.url + wire.MEASUREMENTS_PATH, content=b"{",
                          headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
        assert bad.status_code == 400
        client.close()
    finally:
        stop(c)
    for path in [db, *db.parent.glob(db.name + "-*"), c.log]:
        assert b"127.0.0.77" not in path.read_bytes(), path
    assert "quiet: 20 stored" in c.log.read_text()  # the log is there, and says what happened


def test_the_collectors_database_is_a_probe_database(collector: Collector, tmp_path: Path):
    """Merge-compatible: merging the volunteer's own database into the collector's adds nothing (same UUIDs),
    and the collector's runs merge into another database like any run."""
    token = collector.token("merge")
    vol = tmp_path / "volunteer.db"
    volunteer_db(vol, per_run=12, asn=64501, network="TESTNET-B")
    assert upload(collector.url, token, vol).returncode == 0
    copy = tmp_path / "copy.db"
    src = sqlite3.connect(collector.db)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.close()
    again = subprocess.run([*PROBE, "merge", str(vol), "--into", str(copy)], capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0, again.stderr
    assert "runs +0 (skipped 1), measurements +0 (skipped 12)" in again.stdout, again.stdout
    out = tmp_path / "out.db"
    merged = subprocess.run([*PROBE, "merge", str(copy), "--into", str(out)], capture_output=True, text=True,
                            timeout=60)
    assert merged.returncode == 0, merged.stderr
    assert _count(out) == _count(copy)
    assert _count(out, "select count(*) from sqlite_master where name like 'collector_%'") == 0  # tokens stay
    runs = subprocess.run([*PROBE, "runs", "--db", str(copy)], capture_output=True, text=True, timeout=60)
    assert "AS64501 TESTNET-B" in runs.stdout
    parquet = subprocess.run([*PROBE, "export", "--format", "parquet", "--all", "-o", str(tmp_path / "pq"), "--db",
                              str(copy)], capture_output=True, text=True, timeout=120)
    assert parquet.returncode == 0, parquet.stderr
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "pq" / "measurements.parquet").num_rows == _count(copy)


def test_https_with_the_researchers_own_ca(tmp_path: Path, ca, ca_file: str):
    cert = ca.issue_cert("127.0.0.1")
    pem, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    cert.private_key_pem.write_to_path(str(key))
    c = start_collector(tmp_path / "tls.db", "--tls-cert", str(pem), "--tls-key", str(key))
    try:
        assert c.url.startswith("https://")
        token = c.token("tls")
        vol = tmp_path / "volunteer.db"
        volunteer_db(vol, per_run=5)
        refused = upload(c.url, token, vol, "--retries", "0")  # the system trust store does not know this CA
        assert refused.returncode == 6 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr, refused.stderr
        proc = upload(c.url, token, vol, "--ca-file", ca_file)
        assert proc.returncode == 0, proc.stderr
        assert c.count() == 5
    finally:
        stop(c)


def test_asks_once_and_sends_nothing_without_a_yes(collector: Collector, tmp_path: Path):
    token = collector.token("asked")
    vol = tmp_path / "volunteer.db"
    volunteer_db(vol, per_run=4)
    before = collector.count()
    proc = subprocess.run([*PROBE, "upload", "--to", collector.url, "--token", token, "--db", str(vol)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and "pass --yes" in proc.stderr
    assert "1 run(s), 4 measurements" in proc.stderr  # what would have been sent was shown
    assert collector.count() == before


def test_run_with_upload_sends_the_run_it_made(collector: Collector, internet, tmp_path: Path):
    """`probe run --upload URL` (cron): measure, then send that run without asking; the token from the env."""
    dns_port, http_port, _ = internet
    token = collector.token("cron")
    db = tmp_path / "r.db"
    cmd = [*PROBE, "run", "--db", str(db), "--resolver", f"127.0.0.1:{dns_port}", "--no-system-resolver",
           "--no-control", "--allow-net", "127.0.0.0/8", "--timeout", "2", "--dns-timeout", "1", "--late-window",
           "0.1", "--upload", collector.url, *(f"http://site{i}.test:{http_port}/" for i in range(3))]
    missing = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in os.environ.items() if k != "PROBE_UPLOAD_TOKEN"})
    assert missing.returncode == 1 and "--upload needs a token" in missing.stderr
    assert not db.exists()  # refused before measuring
    before = collector.count()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PROBE_UPLOAD_TOKEN": token})
    assert proc.returncode == 0, proc.stderr
    assert "done: 3 measurements stored" in proc.stderr
    assert collector.count() == before + 3
    run_uuid = sqlite3.connect(db).execute("select uuid from runs").fetchone()[0]
    assert _count(collector.db, f"select count(*) from runs where uuid = '{run_uuid}'") == 1


def test_upload_waits_out_a_429_and_finishes(tmp_path: Path):
    """A volunteer catching up on many runs meets the rate limit; the client waits as Retry-After says."""
    c = start_collector(tmp_path / "paced.db", "--rate", "120", "--burst", "2")
    try:
        token = c.token("paced")
        vol = tmp_path / "volunteer.db"
        volunteer_db(vol, runs=4, per_run=5)  # 8 requests: 6 over the burst
        proc = upload(c.url, token, vol)
        assert proc.returncode == 0, proc.stderr
        assert "done: 20 measurements stored" in proc.stderr
        assert c.count() == 20
    finally:
        stop(c)


def test_asks_once_on_a_terminal(collector: Collector, tmp_path: Path):
    import pty

    token = collector.token("terminal")
    vol = tmp_path / "volunteer.db"
    volunteer_db(vol, runs=2, per_run=3)
    before = collector.count()
    master, slave = pty.openpty()
    proc = subprocess.Popen([*PROBE, "upload", "--to", collector.url, "--token", token, "--db", str(vol)],
                            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(slave)
    os.write(master, b"y\n")
    _, err = proc.communicate(timeout=60)
    os.close(master)
    assert proc.returncode == 0, err
    assert err.count("Send these measurements?") == 1  # once, for both runs
    assert collector.count() == before + 6


def test_the_collector_judges_as_import_ooni_does(collector: Collector, tmp_path: Path):
    """The collector re-judges what it receives with its own rules and signatures, and the run's network survey
    travels with the run: the verdicts are those of `probe export --format ooni | probe import-ooni`."""
    from probe.models import NetworkView

    view = NetworkView(hijacking={"udp:127.0.0.1:53": ("198.18.0.9",)}, honest=(), control_reachable=True,
                       t="2026-12-04T10:00:00+00:00")
    token = collector.token("judged")
    vol = tmp_path / "volunteer.db"
    uuids = volunteer_db(vol, per_run=len(CASES), view=view)
    assert upload(collector.url, token, vol).returncode == 0
    exported = subprocess.run([*PROBE, "export", "--format", "ooni", "--db", str(vol), "--run", "1"],
                              capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0, exported.stderr
    (tmp_path / "run.jsonl").write_text(exported.stdout)
    imported = subprocess.run([*PROBE, "import-ooni", str(tmp_path / "run.jsonl"), "--db", str(tmp_path / "i.db")],
                              capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    query = "select uuid, status, layer, detail, rule from measurements where uuid in ({})".format(
        ", ".join(f"'{u}'" for u in uuids))
    collected = {r[0]: r[1:] for r in sqlite3.connect(collector.db).execute(query)}
    by_import = {r[0]: r[1:] for r in sqlite3.connect(tmp_path / "i.db").execute(query)}
    assert len(collected) == len(uuids) and collected == by_import
    run_uuid = sqlite3.connect(vol).execute("select uuid from runs").fetchone()[0]
    stored = sqlite3.connect(collector.db).execute("select network from runs where uuid = ?", [run_uuid]).fetchone()
    assert NetworkView.from_dict(json.loads(stored[0])) == view
