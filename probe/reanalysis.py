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
    # Each measurement is judged with the network survey of its own session (older rows: their run's).
    views: dict[tuple[str, int], NetworkView | None] = {}
    with db.atomic():
        for m in list(storage.measurements(db, run_id)):
            total += 1
            key = ("survey", m["survey_id"]) if m.get("survey_id") else ("run", m["run_id"])
            if key not in views:
                views[key] = (storage.survey(db, key[1]) if key[0] == "survey"
                              else storage.network_view(db, key[1]))
            verdict = analyse(storage.load_observations(db, m), matcher, views[key])
            if (verdict.status, verdict.detail) != (m["status"], m["detail"]):
                changed += 1
            storage.update_verdict(db, m["id"], verdict, RULES_VERSION)
    return changed, total
