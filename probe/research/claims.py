"""Regulators' claims ("we blocked 1,372 sites") against what was measured.

A claim mixes kinds of item; only some can be tested by a network probe. Websites can; an app only through
domains that are not listed; an account, channel or group on a platform is withheld by the platform itself at
the authority's request (the network cannot single it out over HTTPS), so a network probe cannot see it.
`compare` states the gap in words, per network and per category, and item by item when a list exists.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from typing import Any

import sqlite_utils

from ..targets import TargetError, normalise
from .diff import INTERFERENCE, network_of

TESTABILITY = {
    "website": "testable",
    "page": "testable",
    "app": "partly: only through the app's domains, which claims do not list",
    "facebook_account": "no: withheld by the platform, not by the network",
    "tiktok_account": "no: withheld by the platform, not by the network",
    "youtube_channel": "no: withheld by the platform, not by the network",
    "telegram_channel": "no: withheld by the platform, not by the network",
    "whatsapp_group": "no: private to the platform",
    "social_media_account": "no: withheld by the platform, not by the network",
}


class ClaimError(ValueError):
    pass


def add(db: sqlite_utils.Database, claim: dict[str, Any]) -> int:
    for field in ("key", "authority", "date", "claimed_count"):
        if claim.get(field) in (None, ""):
            raise ClaimError(f"a claim needs {field!r}")
    breakdown = claim.get("breakdown")
    if breakdown is not None and (not isinstance(breakdown, dict)
                                  or not all(isinstance(v, int) and v >= 0 for v in breakdown.values())):
        raise ClaimError("breakdown must map kinds to counts")
    row = {k: claim.get(k) for k in ("key", "authority", "date", "claimed_count", "covers", "source", "source_url",
                                      "notes")}
    row["breakdown"] = json.dumps(breakdown) if breakdown is not None else None
    with db.atomic():  # replace by key, keeping the id stable
        existing = list(db.table("claims").rows_where("key = ?", [row["key"]]))
        if existing:
            db.table("claims").update(existing[0]["id"], row)
            return int(existing[0]["id"])
        db.table("claims").insert(row)
        return int(db.execute("select last_insert_rowid()").fetchone()[0])


def builtin_claims() -> list[dict[str, Any]]:
    return json.loads(resources.files(__package__).joinpath("claims.json").read_text(encoding="utf-8"))["claims"]


def import_items(db: sqlite_utils.Database, claim_id: int, text: str, origin: str) -> tuple[int, list[str]]:
    """An itemised list, CSV in the style of Citizen Lab's official lists: url,date_published,authority[,kind]."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "url" not in [f.strip() for f in reader.fieldnames]:
        raise ClaimError(f"{origin}: needs a header with at least 'url' (url,date_published,authority,kind)")
    rows, warnings = [], []
    for row in reader:
        url = (row.get("url") or "").strip()
        if not url:
            continue
        kind = (row.get("kind") or "").strip() or "website"
        if kind == "website":
            try:
                url = normalise(url).url
            except TargetError as e:
                warnings.append(f"{origin}:{reader.line_num}: {e}")
                continue
        rows.append({"claim_id": claim_id, "url": url, "kind": kind,
                     "date_published": (row.get("date_published") or "").strip(),
                     "authority": (row.get("authority") or "").strip()})
    with db.atomic():
        db.table("claim_items").insert_all(rows)
    return len(rows), warnings


@dataclass(frozen=True, slots=True)
class Comparison:
    claim: dict[str, Any]
    testable: dict[str, Any]
    networks: dict[str, dict[str, int]]
    categories: dict[str, dict[str, int]]
    items: list[dict[str, Any]]
    summary: str

    def as_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "testable": self.testable, "networks": self.networks,
                "categories": self.categories, "items": self.items, "summary": self.summary}


def _latest_per_url(db: sqlite_utils.Database, since: str | None) -> list[dict[str, Any]]:
    """Each URL's latest verdict on each network."""
    rows = db.query(
        "select m.url, m.hostname, m.category, m.status, m.detail, m.run_id, r.vantage_asn, r.vantage_network "
        "from measurements m join runs r on r.id = m.run_id where r.started >= ? order by m.run_id",
        [since or ""])
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        latest[(network_of(r), r["url"])] = r
    return list(latest.values())


def compare(db: sqlite_utils.Database, key: str, since: str | None = None) -> Comparison:
    claims = list(db.table("claims").rows_where("key = ?", [key]))
    if not claims:
        raise ClaimError(f"no claim {key!r} (see `probe claims list`)")
    claim = dict(claims[0])
    breakdown = json.loads(claim["breakdown"]) if claim["breakdown"] else None
    if breakdown:
        testable_n = sum(n for k, n in breakdown.items() if TESTABILITY.get(k, "").startswith("testable"))
        partly = sum(n for k, n in breakdown.items() if TESTABILITY.get(k, "").startswith("partly"))
        testable = {"by_kind": {k: {"count": n, "testable": TESTABILITY.get(k, "unknown kind")}
                                for k, n in breakdown.items()}, "testable": testable_n, "partly": partly}
    else:
        testable = {"by_kind": None, "testable": None, "partly": None}
    measured = _latest_per_url(db, since)
    networks: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    categories: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for m in measured:
        for bucket in (networks[network_of(m)], categories[m["category"] or "uncategorised"]):
            bucket["measured"] += 1
            bucket[m["status"]] += 1
    items = _items(db, claim["id"], measured)
    summary = _words(claim, testable, networks, items)
    return Comparison(claim, testable, {k: dict(v) for k, v in networks.items()},
                      {k: dict(v) for k, v in categories.items()}, items, summary)


def _items(db: sqlite_utils.Database, claim_id: int, measured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_url: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in measured:
        by_url[m["url"]].append(m)
    out = []
    for item in db.table("claim_items").rows_where("claim_id = ?", [claim_id]):
        seen = by_url.get(item["url"], [])
        blocked = sorted({network_of(m) for m in seen if m["status"] in INTERFERENCE})
        open_ = sorted({network_of(m) for m in seen if m["status"] == "ok"})
        out.append({"url": item["url"], "kind": item["kind"], "testable": TESTABILITY.get(item["kind"], "unknown"),
                    "blocked_on": blocked, "reachable_on": open_, "tested": bool(seen)})
    return out


def _words(claim: dict[str, Any], testable: dict[str, Any], networks: dict[str, dict[str, int]],
           items: list[dict[str, Any]]) -> str:
    parts = [f"{claim['authority']} claims {claim['claimed_count']:,} items blocked ({claim['covers'] or 'unspecified'}"
             f", {claim['date']})."]
    if testable["testable"] is None:
        parts.append("No breakdown by kind was published, so how many of them a network probe can test is unknown.")
    else:
        parts.append(f"Of these, {testable['testable']} are websites a network probe can test"
                     + (f", {testable['partly']} are apps testable only through their (unlisted) domains" if
                        testable["partly"] else "")
                     + f", and {claim['claimed_count'] - testable['testable'] - testable['partly']} are accounts, "
                     "channels or groups that platforms withhold and no network probe can see.")
    for net, c in sorted(networks.items()):
        confirmed, anomalies = c.get("blocked", 0), c.get("anomaly", 0)
        parts.append(f"On {net}, probe measured {c['measured']} URLs: {confirmed} blocked with strong evidence, "
                     f"{anomalies} anomalies.")
    if not networks:
        parts.append("probe has measured nothing yet.")
    if items:
        tested = sum(i["tested"] for i in items)
        blocked = sum(bool(i["blocked_on"]) for i in items)
        parts.append(f"Of the {len(items)} listed items, {tested} were measured and {blocked} found blocked on at "
                     "least one network.")
    else:
        parts.append("Without a published list, the claim cannot be checked item by item: the measured blocking "
                     "above is the upper bound of what can be confirmed.")
    return " ".join(parts)
