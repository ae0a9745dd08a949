"""Research commands: runs, results, diff, claims, report, export/import, datasette (thin: parse, call, print)."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

import click

from .. import storage
from .support import InputFile, database, db_option, open_for_reading, open_for_writing

# The research commands are made here and added to `probe` by the cli package's __init__ (never imported here).
cli = click.Group("research-commands")

RESULT_COLUMNS = ("run_id", "url", "category", "status", "layer", "detail", "fingerprint", "control", "runtime_s",
                  "rule", "rules_version")
_db_option = db_option


@cli.command()
@_db_option
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


def _research_error(e: ValueError) -> click.ClickException:
    """A bad filter or a failed look-up from the research library, as the one-line error users see."""
    return click.ClickException(str(e))


def _since(value: str | None) -> str | None:
    from ..research.queries import QueryError, parse_since

    if value is None:
        return None
    try:
        return parse_since(value)
    except QueryError as e:
        raise click.ClickException(f"--since: {e}") from None


def _runs(db: Any, run_id: int | None, since: str | None, db_path: str) -> list[dict[str, Any]]:
    """The runs a --run/--since pair names, checked: a run that does not exist or a date no run follows is an error.
    `since` is the user's text."""
    from ..research import queries

    try:
        runs = queries.runs(db, run_id=run_id, since=_since(since))
    except queries.QueryError as e:
        raise _research_error(e) from None
    if not runs:
        latest = queries.latest_run(db)
        raise click.ClickException(f"no run since {since} in {database(db_path)}" + (
            f" (the latest, run {latest['id']}, started {latest['started']})" if latest else " (it has no run yet)"))
    return runs


@cli.command()
@_db_option
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
            raise _research_error(e) from None
    _measured_something(db, run_id, database(db_path))
    if not (as_json or as_csv):  # which rules and method these verdicts rest on (stderr: stdout stays the list)
        from ..measure import method

        click.echo(f"run {run_id}: {method.brief(method.of_run(queries.run(db, run_id)))}", err=True)
    writer = csv.writer(sys.stdout) if as_csv else None
    if writer:
        writer.writerow(RESULT_COLUMNS)
    elif not as_json:
        click.echo(f"{'status':8} {'detail':40} url")
    for m in sorted(storage.measurements(db, run_id), key=lambda m: m["url"]):
        if (wanted and m["status"] != wanted) or (layer and m["layer"] != layer):
            continue
        row = {k: m[k] for k in RESULT_COLUMNS}
        if writer:
            writer.writerow(row.values())
        elif as_json:
            click.echo(json.dumps(row))
        else:
            click.echo(f"{m['status']:8} {m['detail']:40} {m['url']}")


def _measured_something(db: Any, run_id: int, path: Any) -> None:
    """A run with no stored verdict is an error that says why (exit 7): an empty list is not "nothing blocked"."""
    from ..errors import NothingMeasured
    from ..research import queries

    run = queries.run(db, run_id)
    if storage.run_counts(db, run_id):
        return
    why = {"offline": "the network looked offline (nothing answered), so nothing was stored",
           "running": "it is still running, or was killed before storing a result",
           "interrupted": "it was interrupted before storing a result",
           "partial": "it stopped at --max-runtime before storing a result",
           "disk-full": "the disk was full",
           "captive": "a captive portal held the connection (log in first)"}.get(run["status"],
                                                                                  f"it is {run['status']}")
    resume = (f"; `probe run --resume {run_id} --db {path}` measures its {run['url_count'] or 0} URLs"
              if run["status"] in storage.RESUMABLE else "")
    raise NothingMeasured(f"run {run_id} measured nothing: {why}{resume}")


@cli.command()
@_db_option
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
        parsed = _since(since)
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
        return
    if run_a is None or run_b is None:
        raise click.ClickException("give RUN_A and RUN_B, or --since DATE")
    try:
        d = compare_runs(db, run_a, run_b, across_networks=across_networks, across_methods=across_methods)
    except QueryError as e:
        raise _research_error(e) from None
    if as_json:
        click.echo(json.dumps(d.as_dict(), indent=1))
        return
    click.echo(f"run {run_a} ({d.network_a}) -> run {run_b} ({d.network_b}): {d.headline()}")
    click.echo(f"coverage: {d.coverage_line()}")
    click.echo(f"method: run {run_a}: {d.method_a}" + (f"; run {run_b}: {d.method_b}" if d.method_changes else
                                                          " (the same for both)"))
    for c in d.changes:
        click.echo(f"{c.kind:18} {c.url}\n{'':18}   {c.before} -> {c.after}")
    if d.changes:
        click.echo("\n" + "\n".join(f"{kind}: {CHANGES[kind]}" for kind in d.counts()))


@cli.group("claims")
def claims_group() -> None:
    """Regulators' claims of blocking, and how they compare with measurements."""


@claims_group.command("add")
@_db_option
@click.option("--key", required=True, help="A short stable name, e.g. pta-2025-09-personal-data.")
@click.option("--authority", required=True)
@click.option("--date", "date_", required=True, metavar="YYYY-MM-DD")
@click.option("--count", "claimed_count", type=click.IntRange(0), required=True)
@click.option("--covers", default="", help="What the count covers, in the authority's words.")
@click.option("--breakdown", multiple=True, metavar="KIND=N", help="website=17, app=18, facebook_account=75 ...")
@click.option("--source", default="", help="Who reported it, when.")
@click.option("--source-url", default=None)
@click.option("--replace", is_flag=True, help="Replace a claim already recorded under KEY (default: refuse).")
def claims_add(db_path: str, key: str, authority: str, date_: str, claimed_count: int, covers: str,
               breakdown: tuple[str, ...], source: str, source_url: str | None, replace: bool) -> None:
    """Record a claim. A KEY already recorded is refused (exit 1) unless --replace.

    Example:

        probe claims add --key pta-2025-10 --authority PTA --date 2025-10-31 --count 139 --breakdown website=17
    """
    from ..research import claims

    parts: dict[str, int] | None = None
    if breakdown:
        parts = {}
        for item in breakdown:
            kind, sep, n = item.partition("=")
            if not sep or not n.isdigit():
                raise click.ClickException(f"--breakdown wants KIND=N, got {item!r}")
            parts[kind.strip()] = int(n)
    try:
        claims.add(open_for_writing(db_path), {"key": key, "authority": authority, "date": date_,
                                              "claimed_count": claimed_count, "covers": covers, "breakdown": parts,
                                              "source": source, "source_url": source_url}, replace=replace)
    except claims.ClaimError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"claim {key} recorded")


@claims_group.command("import")
@_db_option
@click.argument("file", required=False, type=InputFile("claims or items file", 64))
@click.option("--builtin", is_flag=True, help="The announcements probe ships (Pakistan's PTA, 2025).")
@click.option("--items-for", metavar="KEY", help="FILE is a CSV list of the claim's items (url,date_published,"
              "authority[,kind]).")
def claims_import(db_path: str, file: str | None, builtin: bool, items_for: str | None) -> None:
    """Import claims (JSON like probe/research/claims.json, or --builtin), or a claim's item list (CSV).

    Example:

        probe claims import --builtin
    """
    from pathlib import Path

    from ..research import claims

    try:
        if items_for:
            if not file:
                raise click.ClickException("--items-for needs the CSV FILE")
            text = Path(file).read_text(encoding="utf-8-sig")
            path = database(db_path)
            if not path.exists():  # the claim must be there already: nothing to add items to
                raise click.ClickException(f"no database at {path}; {storage.NO_DATABASE_HINT}")
            db = open_for_writing(db_path)
            row = next(db.table("claims").rows_where("key = ?", [items_for]), None)
            if row is None:
                raise click.ClickException(f"no claim {items_for!r}")
            n, warnings = claims.import_items(db, row["id"], text, file)
            for w in warnings:
                click.echo(f"warning: {w}", err=True)
            click.echo(f"{n} items added to {items_for}")
            return
        docs = claims.builtin_claims() if builtin else []
        if file:
            docs += claims.parse_claims(Path(file).read_text(encoding="utf-8"), file)
        if not docs:
            raise click.ClickException("give FILE or --builtin")
        scratch = storage.open_db(":memory:")  # every claim checked first: a bad one creates or changes nothing
        for i, doc in enumerate(docs, 1):
            try:
                claims.add(scratch, doc)
            except claims.ClaimError as e:
                raise click.ClickException(f"{file or 'the built-in claims'}: claim {i}: {e}") from None
        db = open_for_writing(db_path)
        for doc in docs:
            claims.add(db, doc)
            click.echo(f"claim {doc['key']}: {doc['claimed_count']} ({doc['authority']}, {doc['date']})")
    except UnicodeDecodeError:
        raise click.ClickException(f"{file}: not a text file (UTF-8)") from None
    except (claims.ClaimError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    except KeyError as e:
        raise click.ClickException(f"{file or 'the built-in claims'}: a claim has no {e.args[0]!r}") from None


@claims_group.command("list")
@_db_option
def claims_list(db_path: str) -> None:
    """List recorded claims.

    Example:

        probe claims list
    """
    db = open_for_reading(db_path)
    for c in db.query("select * from claims order by date"):
        click.echo(f"{c['key']:32} {c['date']} {c['claimed_count']:>7} {c['authority']}: {c['covers']}")


@claims_group.command("compare")
@_db_option
@click.argument("key")
@click.option("--since", metavar="DATE", help="Only runs since DATE (YYYY-MM-DD).")
@click.option("--list", "list_file", type=click.Path(dir_okay=False),
              help="For a claim without a published list: the URLs (a .txt or .csv list) that stand for it.")
@click.option("--category", metavar="CODE", help="For a claim without a published list: the URLs of this category.")
@click.option("--run", "run_id", type=int, help="Only this run (for a claim without a list, its URLs stand for it).")
@click.option("--json", "as_json", is_flag=True)
def claims_compare(db_path: str, key: str, since: str | None, list_file: str | None, category: str | None,
                   run_id: int | None, as_json: bool) -> None:
    """Claimed vs testable vs measured vs blocked, anomalous, down and ok, per network, with the gap in words.

    A claim is measured against its published items (`claims import --items-for`); where the authority published
    no list, against the URLs you name with --list, --category or --run. With neither, nothing is compared.

    Example:

        probe claims compare pta-2025-09-personal-data --list pta-sites.txt
    """
    from ..research import claims
    from ..research.queries import QueryError
    from ..verdicts import SHORT

    parsed = _since(since)
    urls = None if list_file is None else frozenset(_list_urls(list_file))
    scope = claims.Scope(urls=urls, list_name=list_file, category=category, run_id=run_id, since=parsed)
    db = open_for_reading(db_path)
    try:
        cmp = claims.compare(db, key, scope)
    except (claims.ClaimError, QueryError) as e:
        raise _research_error(e) from None
    if as_json:
        click.echo(json.dumps(cmp.as_dict(), indent=1))
        return
    click.echo(cmp.summary)
    _methods_note(db, run_id, parsed)
    if cmp.testable["by_kind"]:
        click.echo("\nby kind:")
        for kind, v in cmp.testable["by_kind"].items():
            click.echo(f"  {kind:20} {v['count']:>5}  testable: {v['testable']}")
    if cmp.networks and cmp.basis != "none":
        for net, c in cmp.networks.items():
            click.echo(f"\n{net}:")
            for column, meaning in claims.COLUMNS.items():
                value = c[column]
                click.echo(f"  {column:9} {'unknown' if value is None else f'{value:,}':>7}  {meaning}")
    if cmp.items:
        click.echo("\nitems:")
        for i in cmp.items:
            where = "; ".join(f"{SHORT[status]} on {', '.join(i[key])}" for status, key in claims.ITEM_KEYS.items()
                              if i[key])
            click.echo(f"  {i['url']}: {where or 'not tested'}")


def _methods_note(db: Any, run_id: int | None, since: str | None) -> None:
    """Which methods the latest verdicts come from: counts that mix methods say so (probe/measure/method.py)."""
    from ..measure import method
    from ..research import queries

    runs = {r["id"]: r for r in queries.runs(db, run_id=run_id, since=since)}
    used = {m["run_id"] for m in queries.latest_per_url(db, runs.values())}
    briefs = sorted({method.brief(method.of_run(runs[i])) for i in used})
    if len(briefs) > 1:
        click.echo(f"\nnote: these verdicts come from runs of {len(briefs)} methods, so the counts mix methods:")
        for b in briefs:
            click.echo(f"  {b}")
    elif briefs:
        click.echo(f"\nverdicts measured with: {briefs[0]}")


@cli.command()
@_db_option
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

    _since(since)  # a bad date is an error before anything else
    if run_id is not None and since is not None:
        raise click.ClickException("give --run or --since, not both")
    db = open_for_reading(db_path)
    runs = _runs(db, run_id, since, db_path)
    scope = f"run {run_id}" if run_id is not None else f"runs since {since}" if since else "all runs"
    Path(html_file).write_text(render(db, runs, scope, limit=None if every_row else TABLE_ROWS), encoding="utf-8")
    click.echo(f"wrote {html_file}")


@cli.command()
@_db_option
@click.option("--run", "run_id", type=int, help="Run id (default: the latest run).")
@click.option("--since", metavar="DATE", help="parquet: every run started on or after DATE (YYYY-MM-DD).")
@click.option("--all", "everything", is_flag=True, help="parquet: every run.")
@click.option("--format", "fmt", type=click.Choice(["ooni", "jsonl", "csv", "parquet", "clickhouse-schema"]),
              default="jsonl", show_default=True)
@click.option("--output", "-o", type=click.Path(), help="File (default: stdout); for parquet, a directory.")
def export(db_path: str, run_id: int | None, since: str | None, everything: bool, fmt: str,
           output: str | None) -> None:
    """Export runs: OONI Web Connectivity measurements (JSONL), our observations (JSONL), verdicts (CSV), typed
    Parquet files (one per table, for ClickHouse, DuckDB, pandas), or the ClickHouse tables that load them.

    In the OONI format, `blocking` and `accessible` use OONI's words (blocked and anomalous: "dns", "tcp_ip",
    "http-failure" or "http-diff"; down: false/false; ok: false/true; error: null/null), and our status is kept
    in `x_probe_status`.

    Example:

    \b
        probe export --format ooni --run 3 -o run3.jsonl
        probe export --format parquet --all -o parquet/
        probe export --format clickhouse-schema | clickhouse-client --multiquery
    """
    from pathlib import Path

    if fmt == "clickhouse-schema":
        from ..research.clickhouse import schema

        if output:
            Path(output).write_text(schema(), encoding="utf-8")
        else:
            click.echo(schema(), nl=False)
        return
    if fmt == "parquet":
        _export_parquet(db_path, run_id, since, everything, output)
        return
    if since or everything:
        raise click.ClickException(f"--since and --all apply to --format parquet, not {fmt} (give --run)")
    from ..research.exchange import export as do_export
    from ..research.queries import QueryError, run

    db = open_for_reading(db_path)
    if run_id is None:
        run_id = storage.latest_run_id(db)
        if run_id is None:
            raise click.ClickException(f"no run in {database(db_path)}")
    try:
        run(db, run_id)  # before the output file is opened: a wrong --run leaves no empty file behind
    except QueryError as e:
        raise _research_error(e) from None
    if output and Path(output).is_dir():
        raise click.ClickException(f"{output} is a directory; --format {fmt} writes one file")
    out = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout  # noqa: SIM115
    try:
        n = do_export(db, run_id, fmt, out)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    finally:
        if output:
            out.close()
    click.echo(f"{n} measurements exported", err=True)


def _export_parquet(db_path: str, run_id: int | None, since: str | None, everything: bool,
                    output: str | None) -> None:
    from ..research.parquet import ExportError, export_parquet, require_pyarrow, selection

    if not output:
        raise click.ClickException("--format parquet needs -o DIR")
    try:
        require_pyarrow()
        sel = selection(run_id, since, everything)
        db = open_for_reading(db_path)  # never created nor changed: read-only media export too
        if sel.run_id is None and sel.since is None and not everything:
            latest = storage.latest_run_id(db)
            if latest is None:
                raise click.ClickException(f"no run in {database(db_path)}")
            sel = selection(latest, None, False)
        counts = export_parquet(db, sel, output)
    except ExportError as e:
        raise click.ClickException(str(e)) from None
    click.echo(", ".join(f"{t} {n}" for t, n in counts.items()) + f" rows written to {output}", err=True)


@cli.command()
@click.argument("sources", nargs=-1, required=True, metavar="SRC.db...")
@click.option("--into", "dest_path", required=True, type=click.Path(dir_okay=False),
              help="The database to merge into (created if missing).")
def merge(sources: tuple[str, ...], dest_path: str) -> None:
    """Copy runs, measurements, observations, bodies and claims from volunteers' databases into one.

    Sources are only read. Rows already in the destination (same UUID, body or claim key) are skipped, so
    merging a file twice adds nothing; a source that cannot be merged is named and the others go on.

    Example:

        probe merge volunteer-*.db --into all.db
    """
    from pathlib import Path

    from ..research.merge import merge as do_merge

    failed = 0
    added: dict[str, int] = {}
    existed = Path(dest_path).exists()
    db = storage.open_db(dest_path)
    last = ""
    try:
        for r in do_merge(db, sources):
            failed += r.error is not None
            last = r.summary()
            if len(sources) > 1:  # one source: its report is the one line said below
                click.echo(last, err=r.error is not None)
            for table, n in r.added.items():
                added[table] = added.get(table, 0) + n
    finally:
        storage.close(db)
    if failed == len(sources):
        if not existed:  # a destination made for nothing: gone again
            for leftover in (Path(dest_path), Path(f"{dest_path}-wal"), Path(f"{dest_path}-shm")):
                leftover.unlink(missing_ok=True)
        raise click.ClickException(last if len(sources) == 1 else f"none of the {len(sources)} sources merged")
    if len(sources) == 1:
        click.echo(last)
    click.echo(f"{dest_path}: added {added.get('runs', 0)} runs, {added.get('measurements', 0)} measurements "
               f"from {len(sources) - failed} of {len(sources)} source(s)")
    if failed:
        raise click.ClickException(f"{failed} of {len(sources)} source(s) not merged")


@cli.command("import-ooni")
@_db_option
@click.argument("files", nargs=-1, required=True, type=InputFile("file of OONI measurements", 1024))
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where cached signature sets live.")
@click.option("--signatures", "packs", multiple=True, type=InputFile("signature pack", 64),
              help="An extra signature pack (JSON); repeatable.")
def import_ooni(db_path: str, files: tuple[str, ...], data_dir: str | None, packs: tuple[str, ...]) -> None:
    """Load OONI Web Connectivity measurements (JSON or JSONL) as runs and judge them with probe's analysis.

    Each record is read in its role: getaddrinfo lookups are the system resolver's, DNS-over-UDP lookups
    resolvers under test, DoH lookups and the test helper's answers the control; a redirect hop's records are
    that hop's evidence.

    Example:

        probe import-ooni measurement.json
    """
    from pathlib import Path

    from ..research.exchange import import_ooni as do_import
    from .support import signature_set

    sigset = signature_set(data_dir, packs=packs)
    path = database(db_path)
    existed = path.exists()
    db = open_for_writing(db_path)
    try:
        run_ids, n, warnings = do_import(db, [Path(f) for f in files], sigset.hits if sigset is not None else None)
    finally:
        storage.close(db)
    if n == 0:
        if not existed:  # a database made for nothing: gone again (no run was written to it)
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
        first = f": {warnings[0]}" + (f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else "") \
            if warnings else ""
        raise click.ClickException(f"nothing imported from {', '.join(files)}: no Web Connectivity measurement"
                                   f" found{first}")
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"{n} measurements imported into run(s) {', '.join(map(str, run_ids)) or '-'}")


@cli.command()
@_db_option
@click.option("--metadata", "metadata_file", default="probe-metadata.json", show_default=True,
              type=click.Path(dir_okay=False), help="Where to write Datasette's metadata (canned queries).")
def datasette(db_path: str, metadata_file: str) -> None:
    """Write Datasette metadata with canned research queries and print the command that opens the database.

    Example:

        probe datasette && datasette results/probe.db --metadata probe-metadata.json
    """
    from pathlib import Path

    from ..research.datasette import metadata

    open_for_reading(db_path).close()  # it must exist: Datasette would create an empty one
    db_path = str(database(db_path))
    name = Path(db_path).stem
    Path(metadata_file).write_text(json.dumps(metadata(name), indent=1))
    click.echo(f"datasette {db_path} --metadata {metadata_file}")


@cli.command()
@_db_option
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
            urls = _list_urls(list_file)
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
        lines = tl.timelines(db, urls=urls, category=category, since=_since(since))
    except queries.QueryError as e:
        raise _research_error(e) from None
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


def _list_urls(list_file: str) -> list[str]:
    """The URLs of a `--list` file, in its order, once each; its bad lines said as warnings."""
    from ..measure.targets import TargetError, read_inputs

    try:
        targets, warnings = read_inputs([list_file])
    except TargetError as e:
        raise click.ClickException(f"--list: {e}") from None
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    return list(dict.fromkeys(t.url for t in targets))
