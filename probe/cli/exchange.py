"""Data in and out: `probe export`, `probe merge`, `probe import-ooni`, `probe datasette` (parse, call, print;
the work is research/'s: parquet.py, exchange.py, merge.py, ooni.py, datasette.py)."""

from __future__ import annotations

import json
import sys

import click

from .. import storage
from .support import InputFile, database, db_option, open_for_reading, open_for_writing, research_error


@click.command()
@db_option
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
        raise research_error(e) from None
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


@click.command()
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


@click.command("import-ooni")
@db_option
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


@click.command()
@db_option
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


COMMANDS = [export, merge, import_ooni, datasette]
