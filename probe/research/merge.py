"""Many vantage points in one database: `probe merge` copies volunteers' databases into one.

Rows are matched by their UUIDs (runs, measurements) or natural keys (bodies by sha256, claims by key), so
merging a file twice adds nothing; a source is never written to. Each source is merged in one transaction: a
bad one is reported by name and leaves the destination as it was, and the next source goes on. The database
work (checking, attaching, copying rows) is storage's (storage/merge.py); this drives it and reports.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from ..storage.merge import STEP_TABLES, SourceError, copy_rows, file_of, readable


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceReport:
    """What one source brought: rows added and skipped (already there) per table, or why it was refused."""

    path: str
    added: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    migrated: tuple[str, ...] = ()  # schema steps applied to a temporary copy
    error: str | None = None

    def summary(self) -> str:
        if self.error:
            return f"{self.path}: not merged: {self.error}"
        parts = [f"{t} +{self.added.get(t, 0)}" + (f" (skipped {self.skipped[t]})" if self.skipped.get(t) else "")
                 for t in ("runs", "measurements", "bodies", "claims")]
        obs = sum(self.added.get(t, 0) for t in STEP_TABLES)
        note = f"; migrated a copy ({', '.join(self.migrated)})" if self.migrated else ""
        return f"{self.path}: {', '.join(parts)}, observations +{obs}{note}"


def merge(dest: sqlite_utils.Database, sources: Iterable[str | Path]) -> Iterator[SourceReport]:
    """Merge each source into `dest` (opened with storage.open_db), yielding one report per source."""
    dest_file = file_of(dest)
    for src in sources:
        path = Path(src)
        try:
            if dest_file is not None and path.exists() and path.resolve() == dest_file:
                raise SourceError("it is the destination")
            with readable(path) as (uri, migrated):
                added, skipped = copy_rows(dest, uri)
            yield SourceReport(path=str(src), added=added, skipped=skipped, migrated=migrated)
        except SourceError as e:
            yield SourceReport(path=str(src), error=str(e))
        except sqlite3.Error as e:
            yield SourceReport(path=str(src), error=f"{type(e).__name__}: {e}")
