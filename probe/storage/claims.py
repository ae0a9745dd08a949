"""Regulators' claims and their published lists, written (research/claims.py checks them and compares)."""

from __future__ import annotations

from typing import Any

import sqlite_utils


def put_claim(db: sqlite_utils.Database, row: dict[str, Any], *, replace: bool) -> tuple[int, dict[str, Any] | None]:
    """Record a checked claim row by its key: a new one is inserted; one already recorded is updated in place (its
    id kept, items hang off it) when `replace`, else left alone and returned as the second value."""
    with db.atomic():
        existing = list(db.table("claims").rows_where("key = ?", [row["key"]]))
        if existing and not replace:
            return int(existing[0]["id"]), existing[0]
        if existing:
            db.table("claims").update(existing[0]["id"], row)
            return int(existing[0]["id"]), None
        db.table("claims").insert(row)
        return int(db.execute("select last_insert_rowid()").fetchone()[0]), None


def add_claim_items(db: sqlite_utils.Database, rows: list[dict[str, Any]]) -> None:
    """Add checked items (claim_id, url, kind, date_published, authority) to claims' lists, in one transaction."""
    with db.atomic():
        db.table("claim_items").insert_all(rows)
