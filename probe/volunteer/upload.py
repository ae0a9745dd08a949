"""`probe upload`: send finished runs to the researchers' collector (`probe collector serve`).

Each measurement travels as `probe export --format ooni` writes it (collector/wire.py), with its UUID: sending
twice stores once. Before a run's measurements go, the collector says which of them it already has, so an
upload cut short (network gone, collector restarted, Ctrl-C) resumes where it stopped when run again. Nothing
is written to the volunteer's database. The volunteer's IP address is never sent (probe never stores it, and
OONI's `probe_ip` placeholder is dropped): the network travels as ASN, name and country.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import sqlite_utils

from .. import storage
from ..collector import wire
from ..control.transport import split_service_url
from ..errors import ProbeError

EXIT_UPLOAD = 6  # after errors.py's codes (5: a captive portal)
MiB = 1024 * 1024
SENDABLE = ("done",)  # without --run: finished runs only (a resumable one may still grow)


class UploadError(ProbeError):
    """The collector could not be reached, or refused the upload; sending again resumes."""

    exit_code = EXIT_UPLOAD


@dataclass(frozen=True, slots=True, kw_only=True)
class RunToSend:
    id: int
    uuid: str
    started: str
    status: str
    asn: int | None
    network: str | None
    country: str | None
    count: int

    def line(self) -> str:
        where = f"AS{self.asn} {self.network or ''}".strip() if self.asn else "network unknown"
        return (f"run {self.id}  {self.started}  {where} ({self.country or '??'})  {self.count} measurements"
                f"{'' if self.status == 'done' else f'  [{self.status}]'}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent:
    runs: int = 0
    sent: int = 0  # measurements in requests this time
    already: int = 0  # the collector had them before this upload started
    stored: int = 0
    duplicates: int = 0  # sent, but the collector had them (an earlier attempt's batch that did land)
    requests: int = 0


def runs_to_send(db: sqlite_utils.Database, run_id: int | None) -> list[RunToSend]:
    """Finished runs with measurements (or the one run asked for, unless it is still running)."""
    if run_id is not None:
        row = storage.run_row(db, run_id)
        if row is None:
            raise ProbeError(f"no run {run_id} in this database; `probe runs` lists them")
        if row["status"] == "running":
            raise ProbeError(f"run {run_id} is still running (or was killed: `probe run --resume {run_id}` "
                             "finishes it)")
        rows = [row]
    else:
        rows = list(db.query(f"select * from runs where status in ({', '.join('?' * len(SENDABLE))}) order by id",
                             SENDABLE))
    out = []
    for r in rows:
        count = db.execute("select count(*) from measurements where run_id = ?", [r["id"]]).fetchone()[0]
        if count:
            out.append(RunToSend(id=r["id"], uuid=r["uuid"], started=r["started"], status=r["status"],
                                 asn=r["vantage_asn"], network=r["vantage_network"], country=r["vantage_country"],
                                 count=count))
    return out


WHAT_IS_SENT = (
    "Each measurement is sent as probe stores it: the URL, the verdict, the DNS answers and resolvers, the\n"
    "connections, TLS and HTTP records (addresses of the sites measured, page titles, the bodies of suspect\n"
    "pages), and your network's ASN, name and country. Your IP address is never sent (probe never stores it).")


def describe(runs: list[RunToSend], url: str) -> str:
    total = sum(r.count for r in runs)
    return "\n".join([f"To {url}: {len(runs)} run(s), {total} measurements", *(f"  {r.line()}" for r in runs),
                      WHAT_IS_SENT])


def _reason(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        data = None
    text = data.get("error") if isinstance(data, dict) else None
    return str(text or resp.text[:200] or resp.reason_phrase).replace("\n", " ")


def check_destination(url: str, token: str) -> None:
    """Before anything is read or shown: the collector's URL is http(s), the token one word."""
    try:
        split_service_url(url)
    except ValueError as e:
        raise ProbeError(f"--to: {e}") from None
    if not token or any(c.isspace() for c in token):
        raise ProbeError("a token is one word: `--token TOKEN` or $PROBE_UPLOAD_TOKEN")


class _Collector:
    """The collector's API over one keep-alive connection, with a few retries for what may pass."""

    def __init__(self, url: str, token: str, *, ca_file: str | None, retries: int, timeout: float) -> None:
        check_destination(url, token)
        self.url = url.rstrip("/") + "/"
        self.retries = retries
        verify = ssl.create_default_context()  # the system's trust store, and the researchers' CA if given
        if ca_file:
            verify.load_verify_locations(ca_file)
        self.client = httpx.Client(base_url=self.url, verify=verify, timeout=timeout, trust_env=False,
                                   headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
        self.requests = 0

    def close(self) -> None:
        self.client.close()

    def post(self, path: str, body: bytes) -> dict[str, Any]:
        failure = ""
        for attempt in range(self.retries + 1):
            delay = float(2**attempt)
            try:
                self.requests += 1
                resp = self.client.post(path, content=body)
            except httpx.TransportError as e:
                failure = f"cannot reach the collector at {self.url}: {type(e).__name__}: {e}"
            else:
                if resp.status_code == 200:
                    try:
                        data = resp.json()
                    except ValueError:
                        data = None
                    if not isinstance(data, dict):
                        raise UploadError(f"the collector at {self.url} answered something that is not probe's API")
                    return data
                failure = f"the collector refused the upload ({resp.status_code}): {_reason(resp)}"
                if resp.status_code == 401:
                    raise UploadError(f"{failure}; ask the researchers for a token")
                if resp.status_code != 429 and resp.status_code < 500:
                    raise UploadError(failure)
                retry_after = resp.headers.get("retry-after", "")
                delay = float(retry_after) if retry_after.isdigit() else delay
            if attempt < self.retries:
                time.sleep(min(delay, 30.0))
        raise UploadError(f"{failure}; nothing is lost: the same `probe upload` again resumes")


def _batches(docs: Iterator[bytes], max_items: int, max_bytes: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    size = 0
    for doc in docs:
        if batch and (len(batch) >= max_items or size + len(doc) > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(doc)
        size += len(doc) + 1
    if batch:
        yield batch


def _documents(db: sqlite_utils.Database, run: dict[str, Any], skip: set[str]) -> Iterator[bytes]:
    from ..research.exchange import ooni_document, with_survey

    for m in storage.measurements(db, run["id"]):
        if m["uuid"] in skip:
            continue
        doc = ooni_document(storage.load_observations(db, m), m, with_survey(db, run, m))
        doc.pop("probe_ip", None)  # OONI's placeholder (127.0.0.1): no address for the volunteer at all
        yield json.dumps(doc, ensure_ascii=False).encode()


def upload(db: sqlite_utils.Database, runs: list[RunToSend], url: str, token: str, *, ca_file: str | None = None,
           batch_items: int = 500, batch_bytes: int = 4 * MiB, retries: int = 3, timeout: float = 120.0,
           say: Callable[[str], None] = lambda _: None) -> Sent:
    """Send these runs' measurements that the collector does not have yet; `UploadError` when it cannot."""
    collector = _Collector(url, token, ca_file=ca_file, retries=retries, timeout=timeout)
    totals = {"sent": 0, "already": 0, "stored": 0, "duplicates": 0}
    try:
        for r in runs:
            have = collector.post(wire.KNOWN_PATH, json.dumps({"run": r.uuid}).encode()).get("measurements")
            known = set(have) if isinstance(have, list) else set()
            totals["already"] += len(known)
            if len(known) >= r.count:
                say(f"run {r.id}: the collector has all {r.count} measurements already")
                continue
            run_row = storage.run_row(db, r.id)
            assert run_row is not None
            for batch in _batches(_documents(db, run_row, known), batch_items, batch_bytes):
                body = b'{"format": "' + wire.FORMAT.encode() + b'", "measurements": [' + b", ".join(batch) + b"]}"
                result = collector.post(wire.MEASUREMENTS_PATH, body)
                totals["sent"] += len(batch)
                totals["stored"] += int(result.get("stored", 0))
                totals["duplicates"] += int(result.get("duplicates", 0))
            say(f"run {r.id}: sent {r.count - len(known)} measurements ({len(known)} were there already)")
    finally:
        collector.close()
    return Sent(runs=len(runs), requests=collector.requests, **totals)
