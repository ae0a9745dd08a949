"""`probe report --html`: one self-contained page (no external assets, no script) with inline SVG charts.

Verdicts by category and by network, blocking methods, blocked over time, measured vs claimed, and the table of
blocked URLs with their evidence and fingerprints. Every text that comes from measurements is escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections import Counter, defaultdict
from typing import Any

import sqlite_utils

from .claims import TESTABILITY
from .diff import INTERFERENCE, network_of

COLORS = {"blocked": "#c0392b", "anomaly": "#e67e22", "ok": "#27ae60", "down": "#7f8c8d", "error": "#8e44ad",
          "claimed": "#34495e", "testable": "#2980b9", "measured": "#16a085"}
STATUSES = ("blocked", "anomaly", "ok", "down", "error")
e = html.escape


def stacked_bars(title: str, rows: list[tuple[str, dict[str, int]]], keys: tuple[str, ...] = STATUSES,
                 width: int = 760) -> str:
    """Horizontal stacked bars, one per row, with a legend."""
    if not rows:
        return f"<h3>{e(title)}</h3><p class='empty'>nothing to show</p>"
    label_w, bar_h, gap = 220, 18, 6
    total_max = max(sum(c.get(k, 0) for k in keys) for _, c in rows) or 1
    scale = (width - label_w - 60) / total_max
    height = len(rows) * (bar_h + gap) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{e(title)}">']
    for i, (label, counts) in enumerate(rows):
        y = i * (bar_h + gap)
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" font-size="12">{e(label[:34])}</text>')
        x = float(label_w)
        for k in keys:
            n = counts.get(k, 0)
            if n:
                w = n * scale
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" '
                             f'fill="{COLORS.get(k, "#999")}"><title>{e(k)}: {n}</title></rect>')
                x += w
        parts.append(f'<text x="{x + 4:.1f}" y="{y + 13}" font-size="11">{sum(counts.get(k, 0) for k in keys)}</text>')
    ly = len(rows) * (bar_h + gap) + 12
    for j, k in enumerate(keys):
        parts.append(f'<rect x="{label_w + j * 95}" y="{ly}" width="10" height="10" fill="{COLORS.get(k, "#999")}"/>'
                     f'<text x="{label_w + j * 95 + 14}" y="{ly + 9}" font-size="11">{e(k)}</text>')
    parts.append("</svg>")
    return f"<h3>{e(title)}</h3>" + "".join(parts)


def line_chart(title: str, points: list[tuple[str, int]], width: int = 760, height: int = 220) -> str:
    if not points:
        return f"<h3>{e(title)}</h3><p class='empty'>nothing to show</p>"
    top = max(n for _, n in points) or 1
    left, bottom = 50, height - 40
    step = (width - left - 20) / max(len(points) - 1, 1)
    xy = [(left + i * step, bottom - n / top * (bottom - 20)) for i, (_, n) in enumerate(points)]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(xy))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{e(title)}"><line x1="{left}" y1="{bottom}" x2="{width - 10}" y2="{bottom}" stroke="#999"/>',
             f'<path d="{path}" fill="none" stroke="{COLORS["blocked"]}" stroke-width="2"/>']
    for (label, n), (x, y) in zip(points, xy, strict=True):
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLORS["blocked"]}"><title>{e(label)}: {n}'
                     f'</title></circle><text x="{x:.1f}" y="{bottom + 14}" font-size="10" text-anchor="middle">'
                     f'{e(label[:10])}</text><text x="{x:.1f}" y="{y - 6:.1f}" font-size="10" '
                     f'text-anchor="middle">{n}</text>')
    parts.append("</svg>")
    return f"<h3>{e(title)}</h3>" + "".join(parts)


def gather(db: sqlite_utils.Database, run_id: int | None, since: str | None) -> dict[str, Any]:
    if run_id is not None:
        runs = list(db.query("select * from runs where id = ?", [run_id]))
    else:
        runs = list(db.query("select * from runs where started >= ? order by id", [since or ""]))
    ids = [r["id"] for r in runs]
    marks = ",".join("?" * len(ids)) or "null"
    ms = list(db.query(f"select * from measurements where run_id in ({marks}) order by id", ids))
    net_of_run = {r["id"]: network_of(r) for r in runs}
    by_cat: dict[str, Counter[str]] = defaultdict(Counter)
    by_net: dict[str, Counter[str]] = defaultdict(Counter)
    methods: Counter[str] = Counter()
    for m in ms:
        by_cat[m["category"] or "uncategorised"][m["status"]] += 1
        by_net[net_of_run[m["run_id"]]][m["status"]] += 1
        if m["status"] in INTERFERENCE:
            methods[m["detail"].split(":")[0]] += 1
    over_time = [(r["started"][:10] + f" #{r['id']}", sum(1 for m in ms if m["run_id"] == r["id"]
                                                         and m["status"] == "blocked")) for r in runs]
    blocked_urls = {m["url"] for m in ms if m["status"] in INTERFERENCE}
    claims = []
    if db.table("claims").exists():
        for c in db.query("select * from claims order by date"):
            breakdown = json.loads(c["breakdown"]) if c["breakdown"] else None
            testable = (sum(n for k, n in breakdown.items() if TESTABILITY.get(k, "").startswith("testable"))
                        if breakdown else None)
            claims.append((f"{c['key']}", {"claimed": c["claimed_count"], "testable": testable or 0,
                                           "measured": len({m["url"] for m in ms}), "blocked": len(blocked_urls)}))
    return {"runs": runs, "measurements": ms, "by_category": by_cat, "by_network": by_net, "methods": methods,
            "over_time": over_time, "claims": claims, "network_of_run": net_of_run}


def render(db: sqlite_utils.Database, run_id: int | None = None, since: str | None = None) -> str:
    d = gather(db, run_id, since)
    ms = d["measurements"]
    counts = Counter(m["status"] for m in ms)
    rows = "".join(
        f"<tr><td>{e(m['url'])}</td><td>{e(d['network_of_run'][m['run_id']])}</td><td>{e(m['category'] or '')}</td>"
        f"<td class='{e(m['status'])}'>{e(m['status'])}</td><td>{e(m['detail'])}</td>"
        f"<td>{e(m['fingerprint'] or '')}</td><td class='ev'>{e(m['evidence'] or '')}</td></tr>"
        for m in ms if m["status"] in INTERFERENCE)
    scope = f"run {run_id}" if run_id is not None else f"runs since {since}" if since else "all runs"
    generated = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    sections = [
        stacked_bars("Verdicts by network", sorted((k, dict(v)) for k, v in d["by_network"].items())),
        stacked_bars("Verdicts by category", sorted((k, dict(v)) for k, v in d["by_category"].items())),
        stacked_bars("Blocking methods", [(k, {"blocked": v}) for k, v in d["methods"].most_common()],
                     keys=("blocked",)),
        line_chart("Blocked URLs over time (per run)", d["over_time"]),
        stacked_bars("Measured vs claimed", d["claims"], keys=("claimed", "testable", "measured", "blocked"))
        if d["claims"] else "",
    ]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>probe report: {e(scope)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
h1 {{ font-size: 1.6em; }} h3 {{ margin-top: 2em; }}
table {{ border-collapse: collapse; width: 100%; font-size: 12px; }}
td, th {{ border: 1px solid #ddd; padding: 4px 6px; vertical-align: top; text-align: left; }}
th {{ background: #f4f4f4; }} td.ev {{ color: #555; max-width: 380px; }}
td.blocked {{ color: {COLORS['blocked']}; font-weight: bold; }} td.anomaly {{ color: {COLORS['anomaly']}; }}
.summary span {{ display: inline-block; margin-right: 1.5em; font-size: 1.1em; }} .empty {{ color: #888; }}
</style></head><body>
<h1>probe report: {e(scope)}</h1>
<p>{len(d['runs'])} run(s), {len(ms)} measurements; generated {e(generated)}.</p>
<p class="summary">{''.join(f"<span><b>{counts.get(s, 0)}</b> {s}</span>" for s in STATUSES)}</p>
{''.join(sections)}
<h3>Blocked and anomalous URLs</h3>
<table><thead><tr><th>URL</th><th>network</th><th>category</th><th>status</th><th>detail</th><th>fingerprint</th>
<th>evidence</th></tr></thead><tbody>{rows or '<tr><td colspan="7">none</td></tr>'}</tbody></table>
</body></html>
"""
