"""Research commands: runs, results, diff, report, timeline (thin: parse, call, print). Claims are in claims.py,
data in and out (export, merge, import-ooni, datasette) in exchange.py."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

import click

from .. import storage
from .support import database, db_option, list_urls, open_for_reading, parse_since_option, research_error

RESULT_COLUMNS = ("run_id", "url", "category", "status", "layer", "detail", "fingerprint", "control", "runtime_s",
                  "rule", "rules_version")


@click.command()
@db_option
@click.option("--json", "as_json", is_flag=True)
def runs(db_path: str, as_json: bool) -> None:
    """List runs: when, where (ASN, network), how many URLs per verdict, how long, and how each measured (rules
    version, signatures, control, resolvers, timeouts; runs with another [key] measured differently).

    Example:

        probe runs
    """
    from ..research.queries import run_summaries
    from ..verdicts import STATUSES

    rows = run_summaries(open_for_reading(db_path))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    click.echo(f"{'run':>4}  {'started':25} {'duration':>9}  {'status':11} {'network':40} {'urls':>6}  "
               + " ".join(f"{s:>7}" for s in STATUSES) + f" {'flaky':>7}" + "  method")
    for row in rows:
        took = "-" if row["duration_s"] is None else _duration(row["duration_s"])
        click.echo(f"{row['id']:>4}  {row['started']:25} {took:>9}  {row['status']:11} {row['network'][:40]:40} "
                   f"{row['urls'] or 0:>6}  " + " ".join(f"{row['counts'].get(s, 0):>7}" for s in STATUSES)
                   + f" {row['flaky']:>7}" + f"  {row['method_key']}")
    methods = {row["method_key"]: row["method"] for row in rows}
    if methods:
        click.echo("methods (runs with different keys measured differently; `probe diff` does not compare them as if"
                   " they had not):")
        for how in methods.values():
            click.echo(f"  {how}")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _runs(db: Any, run_id: int | None, since: str | None, db_path: str) -> list[dict[str, Any]]:
    """The runs a --run/--since pair names, checked: a run that does not exist or a date no run follows is an error.
    `since` is the user's text."""
    from ..research import queries

    try:
        runs = queries.runs(db, run_id=run_id, since=parse_since_option(since))
    except queries.QueryError as e:
        raise research_error(e) from None
    if not runs:
        latest = queries.latest_run(db)
        raise click.ClickException(f"no run since {since} in {database(db_path)}" + (
            f" (the latest, run {latest['id']}, started {latest['started']})" if latest else " (it has no run yet)"))
    return runs


@click.command()
@db_option
@click.option("--run", "run_id", type=int, help="Run id (default: the latest run).")
@click.option("--status", help="Only this status (blocked, anomaly, down, ok, error).")
@click.option("--layer", help="Only this layer (dns, tcp, tls, http).")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header.")
def results(db_path: str, run_id: int | None, status: str | None, layer: str | None, as_json: bool,
            as_csv: bool) -> None:
    """List the verdicts of a run: blocked (strong evidence), anomaly (not attributable), down, ok, error.

    URLs are listed in alphabetical order (the order they finished in changes from run to run).

    A run that stored no verdict (offline, interrupted before its first) is not an empty list: the reason is
    printed and the exit status is 7.

    Example:

        probe results --status blocked --csv > blocked.csv
    """
    from typing import get_args

    from ..models import Layer
    from ..research import queries
    from ..verdicts import VerdictError, parse_status

    try:
        wanted = parse_status(status) if status is not None else None
    except VerdictError as e:
        raise click.ClickException(f"--status: {e}") from None
    if layer is not None and layer not in get_args(Layer):
        raise click.ClickException(f"--layer: unknown layer {layer!r}: use one of {', '.join(get_args(Layer))}")
    db = open_for_reading(db_path)
    if run_id is None:
        run_id = storage.latest_run_id(db)
        if run_id is None:
            raise click.ClickException(f"no run in {database(db_path)}")
    else:
        try:
            queries.run(db, run_id)
        except queries.QueryError as e:
            raise research_error(e) from None
    queries.require_measured(db, run_id, database(db_path))
    if not (as_json or as_csv):  # which rules and method these verdicts rest on (stderr: stdout stays the list)
        from ..measure import method

        click.echo(f"run {run_id}: {method.brief(method.of_run(queries.run(db, run_id)))}", err=True)
    writer = csv.writer(sys.stdout) if as_csv else None
    if writer:
        writer.writerow(RESULT_COLUMNS)
    elif not as_json:
        click.echo(f"{'status':8} {'detail':40} url")
    quic: dict[str, int] = {}
    for m in sorted(storage.measurements(db, run_id), key=lambda m: m["url"]):
        if (wanted and m["status"] != wanted) or (layer and m["layer"] != layer):
            continue
        row = {k: m.get(k) for k in RESULT_COLUMNS}
        if m.get("quic"):
            quic[m["quic"]] = quic.get(m["quic"], 0) + 1
        if writer:
            writer.writerow(row.values())
        elif as_json:
            click.echo(json.dumps(row))
        else:
            click.echo(f"{m['status']:8} {m['detail']:40} {m['url']}"
                       + (f"  quic {m['quic']}" if m.get("quic") else ""))
    if quic and not (as_json or as_csv):  # beside the statuses, never added to them (analysis/quic.py)
        click.echo("quic: " + ", ".join(f"{n} {value}" for value, n in sorted(quic.items())), err=True)


@click.command()
@db_option
@click.argument("run_a", type=int, required=False)
@click.argument("run_b", type=int, required=False)
@click.option("--since", metavar="DATE", help="Every run since DATE (YYYY-MM-DD), per network, with flapping URLs.")
@click.option("--across-networks", is_flag=True, help="Compare runs from different ASNs anyway.")
@click.option("--across-methods", is_flag=True, help="Classify changes between runs that measured differently "
              "(rules, signatures, control, resolvers, timeouts) as if they had not (default: our-method-changed).")
@click.option("--json", "as_json", is_flag=True)
def diff(db_path: str, run_a: int | None, run_b: int | None, since: str | None, across_networks: bool,
         across_methods: bool, as_json: bool) -> None:
    """What changed between two runs (or over time, per network, with --since): newly blocked and unblocked
    (strong evidence) apart from newly anomalous and anomaly cleared, method and blockpage changes, flapping URLs.

    Each pair of runs says what it covered (a run that measured nothing is "not compared", never "no change") and
    which method each run used: between runs that measured differently, a changed verdict is our-method-changed.

    Example:

        probe diff 12 15
    """
    from ..research.diff import compare_runs, history
    from ..research.queries import QueryError
    from ..verdicts import CHANGES

    db = open_for_reading(db_path)
    if since is not None:
        parsed = parse_since_option(since)
        if run_a is not None or run_b is not None:
            raise click.ClickException("give RUN_A and RUN_B, or --since DATE, not both")
        _runs(db, None, since, db_path)
        out: dict[str, Any] = history(db, parsed, across_methods=across_methods)
        if not out:
            raise click.ClickException(f"no finished run since {since} in {database(db_path)} (only runs still going)")
        if as_json:
            click.echo(json.dumps(out, indent=1))
            return
        for network, h in out.items():
            flapping = "; ".join(f"{kind}: {', '.join(urls)}" for kind, urls in h["flapping"].items() if urls)
            click.echo(f"{network}: runs {h['runs']}; flapping: {flapping or 'none'}")
            for d in h["diffs"]:
                click.echo(f"  {d['run_a']} -> {d['run_b']}: {d['headline']}\n    coverage: {d['coverage']}")
                for c in d["speeds"]:
                    click.echo(f"    speed {c['url']}: {c['before']} -> {c['after']} KiB/s")
        return
    if run_a is None or run_b is None:
        raise click.ClickException("give RUN_A and RUN_B, or --since DATE")
    try:
        d = compare_runs(db, run_a, run_b, across_networks=across_networks, across_methods=across_methods)
    except QueryError as e:
        raise research_error(e) from None
    if as_json:
        click.echo(json.dumps(d.as_dict(), indent=1))
        return
    click.echo(f"run {run_a} ({d.network_a}) -> run {run_b} ({d.network_b}): {d.headline()}")
    click.echo(f"coverage: {d.coverage_line()}")
    click.echo(f"method: run {run_a}: {d.method_a}" + (f"; run {run_b}: {d.method_b}" if d.method_changes else
                                                          " (the same for both)"))
    for c in d.changes:
        click.echo(f"{c.kind:18} {c.url}\n{'':18}   {c.before} -> {c.after}")
    for line in d.speed_lines():
        click.echo(line)
    if d.changes:
        click.echo("\n" + "\n".join(f"{kind}: {CHANGES[kind]}" for kind in d.counts()))


@click.command()
@db_option
@click.option("--run", "run_id", type=int, help="One run.")
@click.option("--since", metavar="DATE", help="Every run since DATE (YYYY-MM-DD).")
@click.option("--html", "html_file", required=True, type=click.Path(dir_okay=False), help="Where to write the page.")
@click.option("--all", "every_row", is_flag=True, help="Every row of the long tables (default: the first 500 of each,"
              " with their count).")
def report(db_path: str, run_id: int | None, since: str | None, html_file: str, every_row: bool) -> None:
    """Write a self-contained HTML report (inline SVG charts, no external assets): the latest verdict of each URL
    on each network, what changed since the previous run, blocked URLs over time, claims next to measurements.

    Example:

        probe report --since 2025-09-01 --html report.html
    """
    from pathlib import Path

    from ..research.report import TABLE_ROWS, render

    parse_since_option(since)  # a bad date is an error before anything else
    if run_id is not None and since is not None:
        raise click.ClickException("give --run or --since, not both")
    db = open_for_reading(db_path)
    runs = _runs(db, run_id, since, db_path)
    scope = f"run {run_id}" if run_id is not None else f"runs since {since}" if since else "all runs"
    Path(html_file).write_text(render(db, runs, scope, limit=None if every_row else TABLE_ROWS), encoding="utf-8")
    click.echo(f"wrote {html_file}")


@click.command()
@db_option
@click.argument("url", required=False)
@click.option("--category", metavar="CODE", help="Every URL of this category.")
@click.option("--list", "list_file", type=click.Path(dir_okay=False), help="Every URL of this list (.txt or .csv).")
@click.option("--claim", "claim_key", metavar="KEY", help="The items of this claim, on the claim's date (--on).")
@click.option("--on", "on_day", metavar="DATE", help="The verdict in force on DATE (YYYY-MM-DD) on each network.")
@click.option("--since", metavar="DATE", help="Only runs since DATE.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, each run's verdict included.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header.")
def timeline(db_path: str, url: str | None, category: str | None, list_file: str | None, claim_key: str | None,
             on_day: str | None, since: str | None, as_json: bool, as_csv: bool) -> None:
    """Per URL and network: first seen blocked, last seen reachable, blocked since, flapping, method and
    blockpage changes. With --on DATE (or --claim KEY, on the claim's date): which items were blocked on that
    date on each network.

    Flaps count in-and-out changes between runs of one method; changes across a method change are counted
    apart (method_flips), and down or not measured verdicts neither start nor end a streak.

    Example:

    \b
        probe timeline http://example.com/
        probe timeline --list pta-sites.txt --on 2025-09-09
        probe timeline --claim pta-2025-10 --csv > claim.csv
    """
    from ..measure.targets import TargetError, normalise
    from ..research import queries
    from ..research import timeline as tl

    chosen = [name for name, v in (("URL", url), ("--category", category), ("--list", list_file),
                                   ("--claim", claim_key)) if v is not None]
    if len(chosen) != 1:
        raise click.ClickException("give one of URL, --category, --list or --claim" +
                                   (f" (not {' and '.join(chosen)})" if chosen else ""))
    db = open_for_reading(db_path)
    urls: list[str] | None = None
    try:
        if url is not None:
            try:
                urls = [normalise(url).url]
            except TargetError as e:
                raise click.ClickException(f"URL: {e}") from None
        elif list_file is not None:
            urls = list_urls(list_file)
            if not urls:
                raise click.ClickException(f"--list: {list_file} names no URL")
        elif claim_key is not None:
            c = queries.claim(db, claim_key)
            urls = list(dict.fromkeys(i["url"] for i in queries.claim_items(db, c["id"])))
            if not urls:
                raise click.ClickException(f"claim {claim_key!r} has no item list (`probe claims import "
                                           "--items-for KEY FILE`), so nothing names what to look up")
            on_day = on_day or c["date"]
        if on_day is not None:
            if urls is None:  # a category: its URLs as measured
                urls = sorted({m["url"] for m in queries.url_history(db, urls=None, category=category, since=None)})
            rows = tl.on_date(db, urls, on_day)
            columns = ("date", "network", "url", "status", "detail", "run_id", "measured")
            _table_out(rows, columns, as_json, as_csv, lambda r: (
                f"{r['network'][:28]:28} {r['url'][:48]:48} "
                + (f"{r['status']:8} {r['detail']} (run {r['run_id']}, {r['measured'][:16]})" if r["status"] else
                   f"not measured by {r['date']}")),
                header=f"verdict in force on {on_day} (the latest measured up to the end of that day, UTC):")
            return
        lines = tl.timelines(db, urls=urls, category=category, since=parse_since_option(since))
    except queries.QueryError as e:
        raise research_error(e) from None
    if as_json:
        for t in lines:
            click.echo(json.dumps(t.as_dict()))
        return
    rows = [{k: v for k, v in t.as_dict(with_verdicts=False).items()} for t in lines]
    _table_out(rows, tl.COLUMNS, False, as_csv, lambda r: (
        f"{r['network'][:28]:28} {r['url'][:40]:40} {r['latest'][:36]:36} {r['runs']:>4}  "
        f"{_day(r['first_seen_blocked']):16} {_day(r['last_seen_reachable']):16} {_day(r['blocked_since']):16} "
        f"{r['flaps']:>3}{'*' if r['flapping'] else ' '} {r['method_flips']:>3}  "
        f"{','.join(map(str, r['method_changes'])) or '-':10} {'; '.join(r['blockpage_changes']) or '-'}"),
        header=f"{'network':28} {'url':40} {'latest':36} {'runs':>4}  {'first blocked':16} {'last reachable':16} "
               f"{'blocked since':16} {'flaps':>4} {'m.fl':>4}  {'method chg':10} blockpage changes")


def _day(iso: str | None) -> str:
    return iso[:16].replace("T", " ") if iso else "-"


def _table_out(rows: list[dict[str, Any]], columns: tuple[str, ...], as_json: bool, as_csv: bool,
               line: Any, header: str) -> None:
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))
        return
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([";".join(map(str, r[c])) if isinstance(r[c], list) else r[c] for c in columns])
        return
    click.echo(header)
    for r in rows:
        click.echo(line(r))


# Added to `probe` by the cli package (__init__.py), which this module never imports.
COMMANDS = [runs, results, diff, report, timeline]
