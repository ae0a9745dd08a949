"""The collector's database work: tokens, and storing a checked batch (through storage, in probe's schema).

One connection, one writer: the server calls these from a worker thread, one call at a time (app.py holds a
CapacityLimiter of 1), so SQLite sees a single writer and a batch is one transaction, committed to disk
(storage.open_collector: synchronous FULL) before the server answers.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from .. import storage
from ..analysis import RULES_VERSION, Matcher, analyse
from .wire import Invalid, Item

TOKEN_BYTES = 32


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def new_token(db: sqlite_utils.Database, name: str) -> str:
    """Issue a token for `name`; only its digest is kept, so this is the one time it can be shown."""
    if not name or len(name) > 64 or not name.isprintable():
        raise ValueError(f"a token name is 1 to 64 printable characters, got {name!r}")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    storage.add_token(db, name, digest(token))
    return token


@dataclass(frozen=True, slots=True)
class Stored:
    stored: int
    duplicates: int


class Store:
    """The collector's database and the signatures its analysis uses."""

    def __init__(self, path: str | Path, matcher: Matcher | None) -> None:
        self.db = storage.open_collector(path)
        self.matcher = matcher

    def close(self) -> None:
        storage.close(self.db)

    def token_name(self, token: str) -> str | None:
        return storage.token_name(self.db, digest(token))

    def known(self, run_uuid: str) -> list[str]:
        return storage.run_measurement_uuids(self.db, run_uuid)

    def store(self, token_name: str, items: Iterable[Item]) -> Stored:
        """Write every item whose UUID is new, in one transaction; re-judged with the collector's rules. An item
        that cannot be judged raises `Invalid` and nothing of the batch is kept."""
        stored = duplicates = 0
        per_run: dict[str, list[int]] = {}
        with self.db.atomic():
            seen: set[str] = set()
            for index, item in enumerate(items):
                counts = per_run.setdefault(item.run_uuid, [0, 0])
                if item.uuid in seen or storage.has_measurement(self.db, item.uuid):
                    duplicates += 1
                    counts[1] += 1
                    continue
                seen.add(item.uuid)
                run_id = storage.collected_run(self.db, run_uuid=item.run_uuid, started=item.started,
                                               software_version=item.software_version, rules_version=RULES_VERSION,
                                               asn=item.asn, network=item.network, country=item.country)
                # Judged with the survey it was measured under (a resumed run may have surveyed two networks).
                view = item.network_view
                survey_id = storage.same_survey(self.db, run_id, view) if view is not None else None
                try:
                    verdict = analyse(item.observations, self.matcher, view)
                except Exception as e:  # analysis is pure: a document it cannot judge is refused, the batch with it
                    raise Invalid(422, f"measurements[{index}]: cannot be judged: {type(e).__name__}: "
                                       f"{str(e)[:120]}") from None
                storage.write_measurement(self.db, run_id, item.observations, verdict, RULES_VERSION,
                                          keep_body=verdict.status != "ok", measurement_uuid=item.uuid,
                                          survey_id=survey_id)
                storage.grow_collected_run(self.db, run_id, item.started)
                stored += 1
                counts[0] += 1
            for run_uuid, (n, dup) in per_run.items():
                storage.record_upload(self.db, token_name, run_uuid, n, dup)
        return Stored(stored, duplicates)
