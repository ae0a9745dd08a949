"""What travels between `probe upload` and the collector, and the collector's check of it.

A batch is `{"format": "probe-upload/1", "measurements": [doc, ...]}`: each doc is one measurement exactly as
`probe export --format ooni` writes it (OONI Web Connectivity, research/exchange.ooni_document), whose
`test_keys.x_probe_uuid` and `x_probe_run_uuid` are the identities `probe merge` and `import-ooni` keep. No new
format: the collector reads it with import-ooni's reader and re-judges it with its own rules, as import-ooni does.

Validation is strict and all-or-nothing: one bad document refuses the batch (HTTP 422, naming the item and
the field), so nothing half-checked is stored. The volunteer's network travels as ASN, name and country; an IP
address for the volunteer is refused (`probe_ip` may only be OONI's placeholder, 127.0.0.1).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from ..models import NetworkView, Observations
from ..research.ooni import import_measurement

FORMAT = "probe-upload/1"
MEASUREMENTS_PATH = "v1/measurements"
KNOWN_PATH = "v1/known"
HEALTH_PATH = "v1/health"

_ASN = re.compile(r"AS(0|[1-9][0-9]{0,9})")
_CC = re.compile(r"[A-Z]{2}")
_OONI_TIME = "%Y-%m-%d %H:%M:%S"
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
MAX_TEXT = 256  # network names, software versions
MAX_URL = 2048


class Invalid(ValueError):
    """A request the collector refuses: the HTTP status and a one-line reason naming the value at fault."""

    def __init__(self, status: int, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One checked measurement, ready for storage."""

    uuid: str
    run_uuid: str
    asn: int | None
    country: str | None
    network: str | None
    started: str  # ISO 8601, UTC
    software_version: str
    observations: Observations
    network_view: NetworkView | None  # the run's network survey (netview.py), which its verdicts depend on


def canonical_uuid(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a UUID string, got {type(value).__name__}")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ValueError(f"{what} is not a UUID: {value[:60]!r}") from None
    if str(parsed) != value:
        raise ValueError(f"{what} must be a UUID in canonical form (lower-case, hyphenated): {value[:60]!r}")
    return value


def _text(doc: dict[str, Any], key: str, limit: int = MAX_TEXT, *, required: bool = True) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {type(value).__name__}")
    if len(value) > limit or any(ord(c) < 32 for c in value):
        raise ValueError(f"{key} must be at most {limit} printable characters")
    return value


def _started(value: Any, now: dt.datetime) -> str:
    if not isinstance(value, str):
        raise ValueError("measurement_start_time must be a string")
    try:
        t = dt.datetime.strptime(value, _OONI_TIME).replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"measurement_start_time must be 'YYYY-MM-DD HH:MM:SS' (UTC), got {value[:40]!r}") from None
    if not EARLIEST <= t <= now + dt.timedelta(days=1):
        raise ValueError(f"measurement_start_time {value!r} is out of range (2000 .. tomorrow)")
    return t.isoformat()


def check_document(doc: Any, now: dt.datetime) -> Item:
    if not isinstance(doc, dict):
        raise ValueError(f"a measurement must be a JSON object, got {type(doc).__name__}")
    if doc.get("test_name") != "web_connectivity":
        raise ValueError(f"test_name must be 'web_connectivity', got {str(doc.get('test_name'))[:40]!r}")
    tk = doc.get("test_keys")
    if not isinstance(tk, dict):
        raise ValueError("test_keys must be an object")
    mid = canonical_uuid(tk.get("x_probe_uuid"), "test_keys.x_probe_uuid")
    run_uuid = canonical_uuid(tk.get("x_probe_run_uuid"), "test_keys.x_probe_run_uuid")
    asn_text = _text(doc, "probe_asn", 12)
    if not _ASN.fullmatch(asn_text) or int(asn_text[2:]) > 2**32 - 1:
        raise ValueError(f"probe_asn must be AS<number>, got {asn_text!r}")
    cc = _text(doc, "probe_cc", 2)
    if not _CC.fullmatch(cc):
        raise ValueError(f"probe_cc must be two upper-case letters, got {cc!r}")
    network = _text(doc, "probe_network_name", required=False)
    if doc.get("probe_ip", "127.0.0.1") != "127.0.0.1":
        raise ValueError("probe_ip must be absent or OONI's placeholder 127.0.0.1: the collector takes no "
                         "volunteer's IP address")
    url = _text(doc, "input", MAX_URL)
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"input must be an http:// or https:// URL, got {url[:60]!r}")
    started = _started(doc.get("measurement_start_time"), now)
    version = _text(doc, "software_version", 64, required=False) or "unknown"
    try:
        obs = import_measurement(doc)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(f"not a Web Connectivity measurement probe can read: {type(e).__name__}: "
                         f"{str(e)[:160]}") from None
    asn = int(asn_text[2:])
    return Item(uuid=mid, run_uuid=run_uuid, asn=asn or None, country=None if cc == "ZZ" else cc,
                network=network or None, started=started, software_version=version, observations=obs,
                network_view=NetworkView.from_dict(tk.get("x_probe_network")))


def parse_batch(body: bytes, max_items: int) -> list[Item]:
    """A request body as checked items, or `Invalid` (400 not JSON, 413 too many items, 422 wrong shape)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise Invalid(400, f"the body is not JSON: {str(e)[:120]}") from None
    if not isinstance(data, dict) or set(data) != {"format", "measurements"}:
        raise Invalid(422, 'the body must be {"format": "probe-upload/1", "measurements": [...]}')
    if data["format"] != FORMAT:
        raise Invalid(422, f"format must be {FORMAT!r}, got {str(data['format'])[:40]!r}")
    docs = data["measurements"]
    if not isinstance(docs, list) or not docs:
        raise Invalid(422, "measurements must be a non-empty list")
    if len(docs) > max_items:
        raise Invalid(413, f"{len(docs)} measurements in one request; at most {max_items}: send smaller batches")
    now = dt.datetime.now(dt.UTC)
    items = []
    for i, doc in enumerate(docs):
        try:
            items.append(check_document(doc, now))
        except ValueError as e:
            raise Invalid(422, f"measurements[{i}]: {e}") from None
    return items


def parse_known(body: bytes) -> str:
    """`{"run": RUN_UUID}`: the run whose stored measurement UUIDs the client asks for (to resume)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise Invalid(400, "the body is not JSON") from None
    if not isinstance(data, dict) or set(data) != {"run"}:
        raise Invalid(422, 'the body must be {"run": "<run uuid>"}')
    try:
        return canonical_uuid(data["run"], "run")
    except ValueError as e:
        raise Invalid(422, str(e)) from None
