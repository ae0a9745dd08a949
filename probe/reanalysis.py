"""Re-judging stored runs: rebuild observations from the database, run the current analysis, store the result.

Each verdict records the RULES_VERSION that produced it, so a report can say which rules it rests on.
"""

from __future__ import annotations

import sqlite_utils

from . import storage
from .analysis import RULES_VERSION, Matcher, analyse
from .models import NetworkView


def reanalyze(db: sqlite_utils.Database, run_id: int | None = None,
              matcher: Matcher | None = None) -> tuple[int, int]:
    """Return (verdicts changed, measurements seen)."""
    changed = total = 0
    views: dict[int, NetworkView | None] = {}  # each run is judged with its own network survey
    with db.atomic():
        for m in list(storage.measurements(db, run_id)):
            total += 1
            if m["run_id"] not in views:
                views[m["run_id"]] = storage.network_view(db, m["run_id"])
            verdict = analyse(storage.load_observations(db, m), matcher, views[m["run_id"]])
            if (verdict.status, verdict.detail) != (m["status"], m["detail"]):
                changed += 1
            storage.update_verdict(db, m["id"], verdict, RULES_VERSION)
    return changed, total
