"""`probe report --html`: one self-contained page (no external assets, no script) with inline SVG charts.

Counts are of URLs, not of measurements: each URL's latest verdict on each network in the runs asked for. The page
shows verdicts by network and category, the blocking methods, what changed since each network's previous run,
blocked URLs over time, the regulator's claims next to what was measured (side-by-side bars on one scale), and
the table of blocked and anomalous URLs with their run, time and evidence. Words and colours come from
`probe.verdicts`, so "blocked" always means strong evidence. Every text that comes from measurements is escaped,
and labels too long for their place are shortened with the full text in a tooltip.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections import Counter, defaultdict
from typing import Any

import sqlite_utils

from ..measure import method
from ..verdicts import CHANGES, COLORS, INTERFERENCE, MEANING, SHORT, STATUSES, said
from . import claims as claims_mod
from . import queries
from .diff import compare_runs

BAR_COLORS = {"claimed": "#34495e", "testable": "#2980b9", "measured": "#16a085", "confirmed": COLORS["blocked"]}
NETWORK_COLORS = ("#1f77b4", "#9467bd", "#17becf", "#bcbd22", "#8c564b", "#e377c2", "#2ca02c", "#7f7f7f")
FONT = "font-family='DejaVu Sans, Verdana, sans-serif'"
e = html.escape


def _width(text: str, size: float) -> float:
    """A generous estimate of the rendered width (DejaVu Sans, the widest common sans, is ~0.6 em a character)."""
    return len(text) * size * 0.64


def _fit(text: str, max_px: float, size: float) -> str:
    """The text, shortened in the middle with an ellipsis if it would not fit in max_px."""
    if _width(text, size) <= max_px:
        return text
    keep = max(int(max_px / (size * 0.64)) - 1, 2)
    head = (keep + 1) // 2
    return text[:head] + "…" + text[len(text) - (keep - head):]


def _text(x: float, y: float, text: str, *, size: float = 12, max_px: float | None = None, anchor: str = "start",
          extra: str = "") -> str:
    """An SVG text, shortened to max_px when needed, with the full text as its tooltip then."""
    shown = _fit(text, max_px, size) if max_px else text
    tip = f"<title>{e(text)}</title>" if shown != text else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" {extra}>{tip}{e(shown)}'
            "</text>")


def _svg(title: str, width: int, height: int, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} '
            f'{height}" role="img" aria-label="{e(title)}" {FONT}>' + "".join(body) + "</svg>")


def _empty(title: str, why: str = "nothing to show") -> str:
    return f"<h3>{e(title)}</h3><p class='empty'>{e(why)}</p>"


def _legend(entries: list[tuple[str, str]], x0: float, y: float, width: int) -> tuple[list[str], float]:
    """Colour swatches with their words, wrapping to the next line when the row is full; returns the last y."""
    out, x = [], x0
    for label, color in entries:
        w = 14 + _width(label, 11) + 16
        if x + w > width - 4 and x > x0:
            x, y = x0, y + 16
        out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="10" height="10" fill="{color}"/>')
        out.append(_text(x + 14, y + 9, label, size=11))
        x += w
    return out, y


def stacked_bars(title: str, rows: list[tuple[str, dict[str, int]]], keys: tuple[str, ...] = STATUSES,
                 width: int = 900, unit: str = "URLs") -> str:
    """Horizontal bars, one per row, stacked from parts that do not overlap (a URL has one verdict per network)."""
    if not rows:
        return _empty(title)
    label_w, bar_h, gap = 280, 18, 6
    total_max = max(sum(c.get(k, 0) for k in keys) for _, c in rows) or 1
    scale = (width - label_w - 60) / total_max
    body = []
    for i, (label, counts) in enumerate(rows):
        y = i * (bar_h + gap)
        body.append(_text(4, y + 13, label, max_px=label_w - 12))
        x = float(label_w)
        for k in keys:
            n = counts.get(k, 0)
            if n:
                w = n * scale
                body.append(f'<rect x="{x:.1f}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" '
                            f'fill="{COLORS.get(k, "#999")}"><title>{e(label)}: {n} {e(SHORT.get(k, k))}</title>'
                            "</rect>")
                x += max(w, 1)
        body.append(_text(x + 4, y + 13, str(sum(counts.get(k, 0) for k in keys)), size=11))
    legend, last_y = _legend([(f"{SHORT.get(k, k)}", COLORS.get(k, "#999")) for k in keys], label_w,
                             len(rows) * (bar_h + gap) + 6, width)
    body += legend
    return f"<h3>{e(title)}</h3><p class='note'>{e(unit)}; hover a bar for its count.</p>" + _svg(
        title, width, int(last_y + 16), body)


def _ticks(top: int) -> list[int]:
    """Round y-axis ticks from 0 to at least `top` (5 or so)."""
    top = max(top, 1)
    raw = top / 5
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return list(range(0, top + step, step)) if top % step else list(range(0, top + 1, step))


def _when(iso: str) -> tuple[str, str]:
    """('YYYY-MM-DD', 'HH:MM UTC') of a stored start time."""
    try:
        t = dt.datetime.fromisoformat(iso).astimezone(dt.UTC)
    except ValueError:
        return iso[:10], ""
    return t.strftime("%Y-%m-%d"), t.strftime("%H:%M UTC")


def line_chart(title: str, runs: list[dict[str, Any]], series: dict[str, dict[int, dict[str, int] | None]],
               width: int = 900, height: int = 300, *, notes: dict[int, str] | None = None,
               method_marks: dict[int, str] | None = None) -> str:
    """Blocked (solid) and anomalous (dashed) URLs per run, one colour per network, runs in time order.

    A run that measured nothing (None in `series`) is a gap: a grey band, and the network's lines break there,
    never a zero. `notes` adds to a run's tooltips (a partial run); `method_marks` draws a dashed violet line just
    before each run whose method differs from its network's previous run, with what changed as its tooltip."""
    if not runs:
        return _empty(title)
    notes, method_marks = notes or {}, method_marks or {}
    left, right, top_pad, bottom = 56, 20, 16, height - 84
    inner = 60  # room for half a time label on either side of the first and last run
    values = [c.get(k, 0) for per_run in series.values() for c in per_run.values() if c for k in INTERFERENCE]
    ticks = _ticks(max(values, default=0))
    y_top = ticks[-1] or 1
    def y_of(n: int) -> float:
        return bottom - n / y_top * (bottom - top_pad)
    if len(runs) == 1:
        xs = {runs[0]["id"]: (left + width - right) / 2}
    else:
        step = (width - left - right - 2 * inner) / (len(runs) - 1)
        xs = {r["id"]: left + inner + i * step for i, r in enumerate(runs)}
    body = [f'<line x1="{left}" y1="{bottom}" x2="{width - right}" y2="{bottom}" stroke="#999"/>',
            f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{bottom}" stroke="#999"/>',
            _text(14, (top_pad + bottom) / 2, "URLs", size=11, anchor="middle",
                  extra=f'transform="rotate(-90 14 {(top_pad + bottom) / 2:.1f})"')]
    for t in ticks:
        body.append(f'<line x1="{left - 4}" y1="{y_of(t):.1f}" x2="{width - right}" y2="{y_of(t):.1f}" '
                    f'stroke="#eee"/>')
        body.append(_text(left - 7, y_of(t) + 4, str(t), size=10, anchor="end"))
    # Date and time under each run; when runs are dense, only every k-th label so that none overlaps.
    label_w = max(_width(f"{_when(r['started'])[1]} · run {r['id']}", 10) for r in runs) + 16
    every = max(1, math.ceil(label_w / ((width - left - right - 2 * inner) / max(len(runs) - 1, 1))))
    for i, r in enumerate(runs):
        x = xs[r["id"]]
        body.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#999"/>')
        if i % every == 0:
            day, clock = _when(r["started"])
            body.append(_text(x, bottom + 16, day, size=10, anchor="middle"))
            body.append(_text(x, bottom + 29, f"{clock} · run {r['id']}", size=10, anchor="middle"))
    gap_w = 10.0
    gaps = {rid: network for network, per_run in series.items() for rid, c in per_run.items() if c is None}
    for rid, network in gaps.items():
        x = xs[rid]
        body.append(f'<rect x="{x - gap_w / 2:.1f}" y="{top_pad}" width="{gap_w}" height="{bottom - top_pad}" '
                    f'fill="#bbb" fill-opacity="0.45" class="gap"><title>{e(network)}, run {rid}: measured nothing '
                    f"{e(notes.get(rid, ''))}: a gap, not a zero</title></rect>")
    step_x = (xs[runs[1]["id"]] - xs[runs[0]["id"]]) if len(runs) > 1 else 0.0
    for rid, what in method_marks.items():
        x = xs[rid] - step_x / 2 if step_x else xs[rid]
        body.append(f'<line x1="{x:.1f}" y1="{top_pad}" x2="{x:.1f}" y2="{bottom}" stroke="#8e44ad" '
                    f'stroke-width="2" stroke-dasharray="2,3" class="method-change"><title>{e(what)}</title></line>')
    legend_entries = []
    for n, (network, per_run) in enumerate(series.items()):
        color = NETWORK_COLORS[n % len(NETWORK_COLORS)]
        legend_entries.append((network, color))
        for status, dash in (("blocked", ""), ("anomaly", ' stroke-dasharray="5,4"')):
            pts = [(xs[rid], y_of(c.get(status, 0)), c.get(status, 0), rid) for rid, c in per_run.items() if c]
            # One path per stretch of runs that measured: a gap breaks the line.
            stretches: list[list[tuple[float, float, int, int]]] = [[]]
            for rid, c in per_run.items():
                if c is None:
                    stretches.append([])
                else:
                    stretches[-1].append((xs[rid], y_of(c.get(status, 0)), c.get(status, 0), rid))
            for stretch in stretches:
                if len(stretch) > 1:
                    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y, _, _) in
                                    enumerate(stretch))
                    body.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
            for x, y, value, rid in pts:
                shape = (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}">' if status == "blocked" else
                         f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="white" stroke="{color}" stroke-width="2">')
                note = f" ({notes[rid]})" if rid in notes else ""
                body.append(f"{shape}<title>{e(network)}, run {rid}: {value} {SHORT[status]}{e(note)}</title>"
                            "</circle>")
                if len(runs) == 1:  # a lone run: say the numbers (blocked right, anomalous left: never on top)
                    left_side = status != "blocked"
                    body.append(_text(x - 10 if left_side else x + 10, y + 4, f"{value} {SHORT[status]}", size=11,
                                      anchor="end" if left_side else "start"))
    if gaps:
        legend_entries.append(("grey band: a run that measured nothing (a gap, not a zero)", "#bbb"))
    if method_marks:
        legend_entries.append(("violet dotted line: the method changed (hover it for what)", "#8e44ad"))
    legend, last_y = _legend(legend_entries, left, bottom + 40, width)
    body += legend
    body.append(_text(left, last_y + 26, "solid line, filled dot: blocked (strong evidence); dashed line, open dot: "
                      "anomalous", size=10, extra='fill="#555"'))
    note = ("<p class='note'>Only one run so far: no trend yet.</p>" if len(runs) == 1 else "")
    return f"<h3>{e(title)}</h3>" + _svg(title, width, int(last_y + 34), body) + note


def side_by_side_bars(title: str, groups: list[tuple[str, list[tuple[str, int | None, str, str]]]],
                      width: int = 900) -> str:
    """Groups of horizontal bars, one scale within a group, one bar per line (label, value or None, colour, and a
    note: said instead of the bar when there is no value, after the number otherwise): for numbers that are
    subsets of one another, which must never be stacked."""
    if not groups:
        return _empty(title)
    label_w, bar_h, gap, head_h = 330, 16, 5, 22
    body, y = [], 0.0
    for heading, bars in groups:
        top = max((v for _, v, _, _ in bars if v is not None), default=0) or 1
        scale = (width - label_w - 90) / top
        body.append(_text(4, y + 15, heading, size=12, max_px=width - 8, extra='font-weight="bold"'))
        y += head_h
        for label, value, color, note in bars:
            body.append(_text(16, y + 12, label, size=11, max_px=label_w - 24))
            if value is None:
                body.append(_text(label_w, y + 12, note, size=11, max_px=width - label_w - 4,
                                  extra='fill="#777" font-style="italic"'))
            else:
                w = max(value * scale, 1 if value else 0)
                body.append(f'<rect x="{label_w}" y="{y:.1f}" width="{w:.1f}" height="{bar_h}" fill="{color}">'
                            f"<title>{e(label)}: {value:,}</title></rect>")
                body.append(_text(label_w + w + 5, y + 12, f"{value:,}" + (f" ({note})" if note else ""), size=11,
                                  max_px=width - label_w - w - 10))
            y += bar_h + gap
        y += 8
    return (f"<h3>{e(title)}</h3><p class='note'>Within each claim, one scale for every bar; each number is part of "
            "the one above it, so they are drawn side by side, never added.</p>" + _svg(title, width, int(y), body))


def _claim_groups(db: sqlite_utils.Database, runs: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    groups = []
    for c in queries.claims(db):
        cmp = claims_mod.compare(db, c["key"], runs=runs)
        testable = cmp.testable["testable"]
        bars: list[tuple[str, int | None, str, str]] = [
            ("claimed", c["claimed_count"], BAR_COLORS["claimed"], ""),
            ("testable by a network probe", testable, BAR_COLORS["testable"],
             "unknown: no breakdown or list published" if testable is None else ""),
        ]
        if cmp.basis == "none":
            bars.append(("measured", None, BAR_COLORS["measured"],
                         "not comparable: no list published, so no measured URL stands for this claim"))
        for net, counts in cmp.networks.items() if cmp.basis != "none" else ():
            bars.append((f"measured on {net}", counts["measured"], BAR_COLORS["measured"], ""))
            bars.append((f"confirmed blocked on {net}", counts["blocked"], BAR_COLORS["confirmed"],
                         f"{counts['anomaly']} more anomalous" if counts["anomaly"] else ""))
        groups.append((f"{c['key']} — {c['authority']}, {c['date']}", bars))
    return groups


def _changes(db: sqlite_utils.Database, runs: list[dict[str, Any]], limit: int | None = None) -> str:
    """Per network: its latest run here against the run of that network before it (in the whole database)."""
    everything = queries.runs(db, finished_only=True)
    latest: dict[str, dict[str, Any]] = {}
    for r in runs:
        latest[queries.network_of(r)] = r
    parts = ["<h3>What changed since the previous run</h3>"]
    for network, run in sorted(latest.items()):
        before = [r for r in everything if queries.network_of(r) == network and r["id"] < run["id"]]
        day, clock = _when(run["started"])
        if not before:
            parts.append(f"<p><b>{e(network)}</b>: only one run so far (run {run['id']}, {day} {clock}); nothing to "
                         "compare with.</p>")
            continue
        # The previous run that measured something: a run that measured nothing in between is named, not compared.
        measured = queries.measured_counts(db, [r["id"] for r in before])
        empty = [r["id"] for r in before if not measured.get(r["id"])]
        prev = next((r for r in reversed(before) if measured.get(r["id"])), before[-1])
        skipped = [i for i in empty if i > prev["id"]]
        d = compare_runs(db, prev["id"], run["id"])
        pday, pclock = _when(prev["started"])
        parts.append(f"<p><b>{e(network)}</b>: run {prev['id']} ({pday} {pclock}) → run {run['id']} ({day} {clock}): "
                     f"{e(d.headline())}.</p><p class='note'>coverage: {e(d.coverage_line())}"
                     + (f"; in between, run{'s' if len(skipped) > 1 else ''} {', '.join(map(str, skipped))} measured "
                        "nothing" if skipped else "") + "</p>")
        if d.changes:
            order = list(CHANGES)  # strong evidence first, then anomalies, then what says nothing about blocking
            every = sorted(d.changes, key=lambda c: (order.index(c.kind), c.url))
            ranked = every[:limit]
            rows = "".join(f"<tr><td class='nowrap' title='{e(CHANGES[c.kind])}'>{e(c.kind)}</td>"
                           f"<td>{e(c.url)}</td><td>{e(c.before)}</td><td>{e(c.after)}</td></tr>" for c in ranked)
            parts.append("<table class='changes'><thead><tr><th>change</th><th>URL</th><th>before</th><th>now</th>"
                         f"</tr></thead><tbody>{rows}</tbody></table>" + _more(len(ranked), len(every)))
        parts.append(_speeds(d, limit))
    return "".join(parts)


def _speeds(d: Any, limit: int | None) -> str:
    """Page speeds that changed 3x or more between the two runs, and the line's speed in each (issue 20)."""
    if d.line_a is None and d.line_b is None and not d.speeds:
        return ""
    line = (f"<p class='note'>line speed (our helper's bytes): {d.line_a if d.line_a is not None else '?'} → "
            f"{d.line_b if d.line_b is not None else '?'} KiB/s</p>")
    if not d.speeds:
        return line
    shown = sorted(d.speeds, key=lambda c: c.factor)[:limit]  # the largest drops first
    rows = "".join(f"<tr><td>{e(c.url)}</td><td>{c.before}</td><td>{c.after}</td><td>{c.factor:.2f}×</td></tr>"
                   for c in shown)
    return (line + "<table class='speeds'><thead><tr><th>URL</th><th>KiB/s before</th><th>KiB/s now</th>"
            f"<th>change</th></tr></thead><tbody>{rows}</tbody></table>" + _more(len(shown), len(d.speeds)))


def _timelines(db: sqlite_utils.Database, runs: list[dict[str, Any]], interfering: list[dict[str, Any]],
               limit: int | None) -> str:
    """The blocked and anomalous URLs' timelines (research/timeline.py) over these runs: since when, how often in
    and out, and how often the change was only ours (a change of method)."""
    from .timeline import timelines

    title = "Timelines of the blocked and anomalous URLs"
    if not interfering:
        return _empty(title, "no blocked or anomalous URL")
    pairs = {(m["network"], m["url"]) for m in interfering[:limit]}
    urls = sorted({url for _, url in pairs})
    lines = [t for t in timelines(db, urls=urls, since=runs[0]["started"]) if (t.network, t.url) in pairs
             and t.latest_run in {r["id"] for r in runs}]
    lines.sort(key=lambda t: (not t.latest.startswith("blocked"), t.network, t.url))

    def day(iso: str | None) -> str:
        return " ".join(_when(iso)) if iso else "–"

    rows = "".join(
        f"<tr><td class='url'>{e(t.url)}</td><td>{e(t.network)}</td><td>{e(t.latest)}</td>"
        f"<td class='nowrap'>{day(t.blocked_since)}</td><td class='nowrap'>{day(t.first_seen_blocked)}</td>"
        f"<td class='nowrap'>{day(t.last_seen_reachable)}</td><td>{t.runs}</td>"
        f"<td>{t.flaps}{' (flapping)' if t.flapping else ''}</td><td>{t.method_flips}</td>"
        f"<td>{e(', '.join(map(str, t.method_changes)) or '–')}</td></tr>" for t in lines)
    return (f"<h3>{e(title)}</h3><p class='note'>Over these runs, per network. In and out counts changes between "
            "runs of one method; changes across a change of method are counted apart (not evidence). Down and not "
            "measured verdicts neither start nor end a streak. Per URL: <code>probe timeline URL</code>.</p>"
            "<table class='timelines'><thead><tr><th>URL</th><th>network</th><th>latest</th><th>blocked since</th>"
            "<th>first seen blocked</th><th>last seen reachable</th><th>runs</th><th>in and out</th>"
            "<th>across methods</th><th>method changed at run</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>" + _more(len(lines), len(interfering)))


def gather(db: sqlite_utils.Database, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The numbers the page shows, from the latest verdict of each URL on each network in these runs."""
    latest = queries.latest_per_url(db, runs)
    by_cat: dict[str, Counter[str]] = defaultdict(Counter)
    by_net: dict[str, Counter[str]] = defaultdict(Counter)
    methods: dict[str, Counter[str]] = defaultdict(Counter)
    for m in latest:
        by_cat[m["category"] or "uncategorised"][m["status"]] += 1
        by_net[m["network"]][m["status"]] += 1
        if m["status"] in INTERFERENCE:
            methods[m["detail"].split(":")[0]][m["status"]] += 1
    measured = queries.measured_counts(db, [r["id"] for r in runs])
    per_run: dict[str, dict[int, dict[str, int] | None]] = defaultdict(dict)
    notes: dict[int, str] = {}
    for r in runs:
        n, listed = measured.get(r["id"], 0), r["url_count"] or 0
        per_run[queries.network_of(r)][r["id"]] = dict.fromkeys(INTERFERENCE, 0) if n else None
        if not n:
            notes[r["id"]] = f"({r['status']})"
        elif n < listed:
            notes[r["id"]] = f"partial: {n} of {listed} URLs measured, {r['status']}"
    per_status = queries.interference_per_run(db, [r["id"] for r in runs])
    for r in runs:
        counts = per_run[queries.network_of(r)][r["id"]]
        if counts is not None:
            counts.update(per_status.get(r["id"], {}))
    return {"latest": latest, "by_category": by_cat, "by_network": by_net, "methods": methods,
            "over_time": dict(sorted(per_run.items())), "counts": Counter(m["status"] for m in latest),
            "urls": len({m["url"] for m in latest}), "notes": notes, "method_marks": method_marks(runs)}


def method_marks(runs: list[dict[str, Any]]) -> dict[int, str]:
    """Run id -> what changed in its network's method since that network's previous run (in these runs)."""
    previous: dict[str, tuple[int, dict[str, Any]]] = {}
    marks: dict[int, list[str]] = defaultdict(list)
    for r in runs:
        network, how = queries.network_of(r), method.of_run(r)
        before = previous.get(network)
        if before is not None and method.key(before[1]) != method.key(how):
            marks[r["id"]].append(f"{network}: the method changed between run {before[0]} and run {r['id']} "
                                  f"({', '.join(method.differences(before[1], how))}); run {r['id']}: "
                                  f"{method.brief(how)}")
        previous[network] = (r["id"], how)
    return {rid: "; ".join(what) for rid, what in marks.items()}


# The page stays small whatever the database (a year of runs): its long tables show the first rows, and say how
# many there are and where the full lists are. `probe report --all` shows every row.
TABLE_ROWS = 500
FULL_LISTS = ("the full list: `probe report --all`, `probe results --status blocked --csv` (or anomaly), "
              "`probe diff`, or `probe datasette`")


def _more(shown: int, total: int) -> str:
    return (f"<p class='note'>Showing the first {shown:,} of {total:,} rows; {e(FULL_LISTS)}.</p>"
            if shown < total else "")


def _ranges(ids: list[int]) -> str:
    """1, 2, 3, 5 -> '1–3, 5'."""
    out: list[list[int]] = []
    for i in sorted(ids):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return ", ".join(f"{a}–{b}" if b > a + 1 else f"{a}, {b}" if b == a + 1 else str(a) for a, b in out)


def render(db: sqlite_utils.Database, runs: list[dict[str, Any]], scope: str, *,
           limit: int | None = TABLE_ROWS) -> str:
    """The page for these runs (from queries.runs: checked, oldest first); `scope` says which in words. Long
    tables show `limit` rows (None: all)."""
    d = gather(db, runs)
    networks = sorted({queries.network_of(r) for r in runs})
    every = [m for m in d["latest"] if m["status"] in INTERFERENCE]
    every.sort(key=lambda m: (STATUSES.index(m["status"]), m["network"], m["url"]))
    shown = every[:limit]
    rows = "".join(
        f"<tr><td class='url'>{e(m['url'])}</td><td>{e(m['network'])}</td><td>{m['run_id']}</td>"
        f"<td class='nowrap'>{' '.join(_when(m['run_started']))}</td><td>{e(m['category'] or '')}</td>"
        f"<td class='{e(m['status'])} nowrap'>{e(SHORT[m['status']])}</td><td class='detail'>{e(m['detail'])}</td>"
        f"<td>{e(m['fingerprint'] or '')}</td><td class='ev'>{e(m['evidence'] or '')}</td></tr>" for m in shown)
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        stacked_bars("Verdicts by network", sorted((k, dict(v)) for k, v in d["by_network"].items())),
        stacked_bars("Verdicts by category", sorted((k, dict(v)) for k, v in d["by_category"].items())),
        stacked_bars("Blocking methods (layer/reason)",
                     sorted(((k, dict(v)) for k, v in d["methods"].items()), key=lambda kv: -sum(kv[1].values())),
                     keys=INTERFERENCE),
        _changes(db, runs, limit),
        line_chart("Blocked and anomalous URLs per run, per network", runs, d["over_time"], notes=d["notes"],
                   method_marks=d["method_marks"]),
    ]
    sections.append(_timelines(db, runs, every, limit))
    groups = _claim_groups(db, runs)
    if groups:
        sections.append(side_by_side_bars("Measured vs claimed", groups))
    summary = "".join(f"<span class='{s}'><b>{d['counts'].get(s, 0)}</b> {SHORT[s]}</span>" for s in said(d["counts"]))
    meanings = "".join(f"<dt class='{s}'>{e(SHORT[s])}</dt><dd>{e(MEANING[s])}</dd>" for s in STATUSES)
    how: dict[str, tuple[str, list[int]]] = {}
    for r in runs:
        m = method.of_run(r)
        how.setdefault(method.key(m), (method.brief(m), []))[1].append(r["id"])
    methods = "".join(f"<li>{e(brief)}: run{'s' if len(ids) > 1 else ''} {_ranges(ids)}</li>"
                      for brief, ids in how.values())
    first, last = _when(runs[0]["started"]), _when(runs[-1]["started"])
    when = (f"Run {runs[0]['id']} on {e(networks[0])}, started {first[0]} {first[1]}" if len(runs) == 1 else
            f"{len(runs)} runs on {len(networks)} network{'s' if len(networks) > 1 else ''}, from {first[0]} "
            f"{first[1]} to {last[0]} {last[1]}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>probe report: {e(scope)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: 'DejaVu Sans', Verdana, sans-serif; margin: 2em auto; max-width: 1100px; color: #222;
       padding: 0 1em; }}
h1 {{ font-size: 1.6em; }} h3 {{ margin-top: 2em; }}
table {{ border-collapse: collapse; width: 100%; font-size: 12px; }}
td, th {{ border: 1px solid #ddd; padding: 4px 6px; vertical-align: top; text-align: left; }}
th {{ background: #f4f4f4; }} td.ev {{ color: #555; max-width: 380px; }} td.nowrap {{ white-space: nowrap; }}
td {{ overflow-wrap: anywhere; }} td.url {{ min-width: 14em; }} td.detail {{ min-width: 12em; }}
.blocked {{ color: {COLORS['blocked']}; font-weight: bold; }} .anomaly {{ color: {COLORS['anomaly']}; }}
.down {{ color: {COLORS['down']}; }} .ok {{ color: {COLORS['ok']}; }} .error {{ color: {COLORS['error']}; }}
.summary span {{ display: inline-block; margin-right: 1.5em; font-size: 1.1em; }}
.empty, .note {{ color: #777; font-size: 0.9em; }} dl {{ font-size: 0.9em; }}
dt {{ float: left; clear: left; width: 8em; }} dd {{ margin-left: 9em; }}
</style></head><body>
<h1>probe report: {e(scope)}</h1>
<p>{when}; {d['urls']} distinct URLs. Generated {generated}.</p>
<p>How these runs measured (rules version, signatures, control, resolvers, timeouts; a verdict that changed between
runs of different methods is not counted as a change in censorship):</p><ul class="methods">{methods}</ul>
<p>Latest verdict of each URL on each network ({len(d['latest'])} URL–network pairs):</p>
<p class="summary">{summary}</p>
<dl>{meanings}</dl>
{''.join(sections)}
<h3>Blocked and anomalous URLs (latest verdict on each network)</h3>
<table><thead><tr><th>URL</th><th>network</th><th>run</th><th>time</th><th>category</th><th>status</th><th>detail</th>
<th>fingerprint</th><th>evidence</th></tr></thead>
<tbody>{rows or '<tr><td colspan="9">none</td></tr>'}</tbody></table>
{_more(len(shown), len(every))}
</body></html>
"""
