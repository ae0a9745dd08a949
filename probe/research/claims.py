"""Regulators' claims ("we blocked 1,372 sites") against what was measured.

A claim mixes kinds of item; only some can be tested by a network probe. Websites can; an app only through
domains that are not listed; an account, channel or group on a platform is withheld by the platform itself at
the authority's request (the network cannot single it out over HTTPS), so a network probe cannot see it.
`compare` states the gap in words, per network and per category, and item by item when a list exists.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from importlib import resources
from typing import Any

import sqlite_utils

from ..measure.targets import TargetError, normalise
from ..storage import claims as storage_claims
from ..verdicts import MEANING, SHORT, STATUSES, said
from . import queries

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


def parse_claims(text: str, origin: str) -> list[dict[str, Any]]:
    """The claims of a JSON file shaped like claims.json ({"claims": [{...}, ...]}), checked."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ClaimError(f"{origin}: not JSON ({e})") from None
    found = doc.get("claims") if isinstance(doc, dict) else None
    if not isinstance(found, list) or not all(isinstance(c, dict) for c in found):
        raise ClaimError(f'{origin}: expected {{"claims": [{{"key": ..., "authority": ..., "date": ..., '
                         '"claimed_count": ...}, ...]} (see probe/research/claims.json)')
    return found


def add(db: sqlite_utils.Database, claim: dict[str, Any], *, replace: bool = True) -> int:
    """Record a claim; one with the same key is replaced (its id kept) when `replace`, else refused."""
    for field in ("key", "authority", "date", "claimed_count"):
        if claim.get(field) in (None, ""):
            raise ClaimError(f"a claim needs {field!r}")
    if not isinstance(claim["claimed_count"], int) or claim["claimed_count"] < 0:
        raise ClaimError(f"claimed_count must be a whole number, not {claim['claimed_count']!r}")
    try:
        dt.date.fromisoformat(str(claim["date"]))
    except ValueError:
        raise ClaimError(f"date must be YYYY-MM-DD, not {claim['date']!r}") from None
    breakdown = claim.get("breakdown")
    if breakdown is not None and (not isinstance(breakdown, dict)
                                  or not all(isinstance(v, int) and v >= 0 for v in breakdown.values())):
        raise ClaimError("breakdown must map kinds to counts")
    row = {k: claim.get(k) for k in ("key", "authority", "date", "claimed_count", "covers", "source", "source_url",
                                      "notes")}
    row["breakdown"] = json.dumps(breakdown) if breakdown is not None else None
    claim_id, kept = storage_claims.put_claim(db, row, replace=replace)
    if kept is not None:
        raise ClaimError(f"a claim {row['key']!r} is already recorded ({kept['authority']}, {kept['date']}, "
                         f"{kept['claimed_count']}): pass --replace to replace it")
    return claim_id


def builtin_claims() -> list[dict[str, Any]]:
    return json.loads(resources.files(__package__).joinpath("claims.json").read_text(encoding="utf-8"))["claims"]


def import_items(db: sqlite_utils.Database, claim_id: int, text: str, origin: str) -> tuple[int, list[str]]:
    """An itemised list, CSV in the style of Citizen Lab's official lists: url,date_published,authority[,kind]."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "url" not in [f.strip() for f in reader.fieldnames]:
        raise ClaimError(f"{origin}: needs a header with at least 'url' (url,date_published,authority,kind)")
    rows, warnings = [], []
    listed = {r["url"] for r in queries.claim_items(db, claim_id)}
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
        if url in listed:  # an item listed twice would be counted twice
            warnings.append(f"{origin}:{reader.line_num}: {url} is already on this claim's list; skipped")
            continue
        listed.add(url)
        rows.append({"claim_id": claim_id, "url": url, "kind": kind,
                     "date_published": (row.get("date_published") or "").strip(),
                     "authority": (row.get("authority") or "").strip()})
    storage_claims.add_claim_items(db, rows)
    return len(rows), warnings


# The numbers `compare` gives per network, each with its meaning (printed next to it and kept in the JSON).
COLUMNS: dict[str, str] = {
    "claimed": "items the authority says it blocked (every kind)",
    "testable": "of those, websites a network probe can test (unknown when the claim gives no breakdown or list)",
    "measured": "URLs in the comparison with a verdict on this network (latest of each; not those that could not"
                " be measured, counted under error)",
    **{s: MEANING[s] for s in STATUSES},
}


# Per listed item, the networks where its latest verdict is each status.
ITEM_KEYS: dict[str, str] = {"blocked": "blocked_on", "anomaly": "anomalous_on", "filtered": "filtered_on",
                             "down": "down_on",
                             "ok": "reachable_on", "error": "not_measured_on"}
assert list(ITEM_KEYS) == list(STATUSES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """What a claim is measured against when the authority published no list: the URLs the user names."""

    urls: frozenset[str] | None = None  # from --list FILE
    list_name: str | None = None
    category: str | None = None
    run_id: int | None = None
    since: str | None = None  # parsed (queries.parse_since)

    def names_urls(self) -> bool:
        return self.urls is not None or self.category is not None or self.run_id is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    claim: dict[str, Any]
    basis: str  # "items" (the published list), "user" (--list/--category/--run) or "none"
    testable: dict[str, Any]
    networks: dict[str, dict[str, int | None]]
    categories: dict[str, dict[str, int]]
    items: list[dict[str, Any]] = dataclass_field(default_factory=list)
    summary: str

    def as_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "basis": self.basis, "columns": COLUMNS, "testable": self.testable,
                "networks": self.networks, "categories": self.categories, "items": self.items,
                "summary": self.summary}


def testability(claim: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """How many of the claimed items a network probe can test: from the published list, else the breakdown."""
    if items:
        kinds: dict[str, int] = defaultdict(int)
        for i in items:
            kinds[i["kind"]] += 1
        breakdown: dict[str, int] | None = dict(kinds)
    else:
        breakdown = json.loads(claim["breakdown"]) if claim["breakdown"] else None
    if not breakdown:
        return {"source": None, "total": None, "by_kind": None, "testable": None, "partly": None}
    return {"source": "list" if items else "breakdown", "total": len(items) if items else claim["claimed_count"],
            "by_kind": {k: {"count": n, "testable": TESTABILITY.get(k, "unknown kind")} for k, n in breakdown.items()},
            "testable": sum(n for k, n in breakdown.items() if TESTABILITY.get(k, "").startswith("testable")),
            "partly": sum(n for k, n in breakdown.items() if TESTABILITY.get(k, "").startswith("partly"))}


def compare(db: sqlite_utils.Database, key: str, scope: Scope | None = None, *,
            runs: list[dict[str, Any]] | None = None) -> Comparison:
    """A claim next to the latest verdict of each URL it covers, per network: against the claim's published items,
    or else against the URLs the user names; with neither, nothing measured is counted as evidence on it.
    `runs` (the report's) says which runs to look at without naming URLs; by default the scope's run or since."""
    scope = scope or Scope()
    try:
        claim = queries.claim(db, key)
    except queries.QueryError as e:
        raise ClaimError(str(e)) from None
    items = queries.claim_items(db, claim["id"])
    if items and (scope.urls is not None or scope.category is not None):
        raise ClaimError(f"claim {key!r} has a published list of {len(items)} items, which is what it is compared "
                         "against: --list and --category are for claims without one")
    if scope.category is not None and scope.category not in queries.categories(db):
        known = ", ".join(sorted(c for c in queries.categories(db) if c)) or "none"
        raise ClaimError(f"no measurement has category {scope.category!r} (measured categories: {known})")
    if runs is None:
        runs = queries.runs(db, run_id=scope.run_id, since=scope.since)
    latest = queries.latest_per_url(db, runs)
    basis = "items" if items else "user" if scope.names_urls() else "none"
    if basis == "items":
        listed = {i["url"] for i in items}
        in_scope = [m for m in latest if m["url"] in listed]
    elif basis == "user":
        in_scope = [m for m in latest if (scope.urls is None or m["url"] in scope.urls)
                    and (scope.category is None or (m["category"] or "") == scope.category)]
    else:
        in_scope = []
    testable = testability(claim, items)
    networks: dict[str, dict[str, int | None]] = {}
    for net in sorted({queries.network_of(r) for r in runs}):
        mine = [m for m in in_scope if m["network"] == net]
        measured = sum(m["status"] != "error" for m in mine)
        networks[net] = {"claimed": claim["claimed_count"], "testable": testable["testable"], "measured": measured,
                         **{s: sum(m["status"] == s for m in mine) for s in STATUSES}}
    def empty() -> dict[str, int]:
        return {"measured": 0} | dict.fromkeys(STATUSES, 0)

    categories: dict[str, dict[str, int]] = defaultdict(empty)
    for m in in_scope:
        bucket = categories[m["category"] or "uncategorised"]
        bucket["measured"] += m["status"] != "error"
        bucket[m["status"]] += 1
    item_rows = _items(items, in_scope)
    summary = _words(claim, basis, scope, testable, networks, item_rows)
    return Comparison(claim=claim, basis=basis, testable=testable, networks=networks,
                      categories=dict(sorted(categories.items())), items=item_rows, summary=summary)


def _items(items: list[dict[str, Any]], measured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_url: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in measured:
        by_url[m["url"]].append(m)
    out = []
    for item in items:
        seen = by_url.get(item["url"], [])
        row: dict[str, Any] = {"url": item["url"], "kind": item["kind"],
                               "testable": TESTABILITY.get(item["kind"], "unknown"),
                               "tested": any(m["status"] != "error" for m in seen),
                               "verdicts": {m["network"]: m["status"] for m in seen}}
        for status, key in ITEM_KEYS.items():
            row[key] = sorted(m["network"] for m in seen if m["status"] == status)
        out.append(row)
    return out


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else many or one + 's'}"


def _words(claim: dict[str, Any], basis: str, scope: Scope, testable: dict[str, Any],
           networks: dict[str, dict[str, int | None]], items: list[dict[str, Any]]) -> str:
    claimed = claim["claimed_count"]
    parts = [f"{claim['authority']} claims {claimed:,} items blocked ({claim['covers'] or 'unspecified'}, "
             f"{claim['date']})."]
    if testable["testable"] is None:
        parts.append("No breakdown by kind was published, so how many of them a network probe can test is unknown.")
    else:
        others = testable["total"] - testable["testable"] - testable["partly"]
        parts.append(("Of these" if testable["source"] == "breakdown" else
                      f"The published list has {_n(testable['total'], 'item')}; of these")
                     + f", {testable['testable']:,} are websites a network probe can test"
                     + (f", {testable['partly']:,} are apps testable only through their (unlisted) domains"
                        if testable["partly"] else "")
                     + (f", and {others:,} " + ("is an account, channel or group that platforms withhold"
                                                  if others == 1 else
                                                  "are accounts, channels or groups that platforms withhold")
                        + " and no network probe can see." if others > 0 else "."))
    if basis == "none":
        parts.append("No list of the blocked items was published and no --list, --category or --run names what to "
                     "compare it with, so nothing measured can be compared with this claim: unrelated URLs are not "
                     "evidence for or against it.")
        return " ".join(parts)
    if basis == "items":
        parts.append(f"Compared with the {_n(len(items), 'item')} of the published list.")
    else:
        named = [f"the URLs of {scope.list_name} ({_n(len(scope.urls or ()), 'URL')})" if scope.urls is not None
                 else "", f"category {scope.category}" if scope.category is not None else "",
                 f"run {scope.run_id}" if scope.run_id is not None else ""]
        parts.append(f"Compared with what you named: {', '.join(p for p in named if p)} (the authority published "
                     "no list, so these URLs stand for the claim only as far as you chose them).")
    for net, c in networks.items():
        parts.append(f"On {net}, {_n(c['measured'] or 0, 'URL was', 'URLs were')} measured: "
                     + ", ".join(f"{c[s]} {SHORT[s]}" for s in said(c) if s != "error") + "."
                     + (f" {c['error']} more could not be measured." if c["error"] else ""))
    if not networks:
        parts.append("No run matches, so nothing was measured.")
    if items:
        tested = sum(i["tested"] for i in items)
        blocked = sum(bool(i["blocked_on"]) for i in items)
        anomalous = sum(bool(i["anomalous_on"]) and not i["blocked_on"] for i in items)
        parts.append(f"Of the {_n(len(items), 'listed item')}, {tested} were measured: {blocked} found blocked with "
                     f"strong evidence on at least one network, {anomalous} only anomalous.")
    return " ".join(parts)
