"""Looking after a database as a whole: `probe reanalyze` (storage/reanalysis.py) and `probe check`."""

from __future__ import annotations

import json

import click

from .. import storage
from ..measure.session import Session
from ..storage import reanalysis
from .support import InputFile, database, db_option


@click.command()
@db_option
@click.option("--run", "run_id", type=int, help="Only this run (default: every run).")
@click.option("--dry-run", is_flag=True, help="List what would change; write nothing.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Signature cache to use instead of each run's own.")
@click.option("--signatures", "packs", multiple=True, type=InputFile("signature pack", 64),
              help="Signature pack(s) to use instead of each run's own (JSON); repeatable.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: counts, runs and every change.")
def reanalyze(db_path: str | None, run_id: int | None, dry_run: bool, data_dir: str | None,
              packs: tuple[str, ...], as_json: bool) -> None:
    """Recompute verdicts from stored observations with the current rules and each run's own signature options
    (a run measured with --no-signatures stays without; --signatures/--data-dir replace a run's packs or cache).

    Every changed verdict is printed (URL, network, before -> after, rule); the verdicts replaced are kept in the
    verdict_history table, and the run then counts as the new rules version.

    Example:

        probe reanalyze --run 3 --dry-run
    """
    path = database(db_path)
    if not path.exists():
        raise click.ClickException(f"no database at {path}; {storage.NO_DATABASE_HINT}")
    db = storage.open_existing(path) if dry_run else storage.open_db(path)
    try:
        if run_id is not None and storage.run_row(db, run_id) is None:
            raise click.ClickException(f"no run {run_id} in {path}; `probe runs --db {path}` lists them")
        result = reanalysis.rejudge(db, run_id, dry_run=dry_run, packs=packs or None, data_dir=data_dir)
    finally:
        if dry_run:
            db.close()
        else:
            storage.close(db)
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=1))
        return
    for c in result.changes:
        click.echo(f"run {c.run_id} {c.network}: {c.url}\n    {c.before} ({c.rule_before}, rules "
                   f"{c.rules_before or '?'}) -> {c.after} ({c.rule_after})")
    done = ("would change (dry run: nothing written)" if dry_run else
            "changed (earlier verdicts kept in verdict_history)")
    click.echo(f"{result.total} measurements re-judged with rules {result.rules_version}, {len(result.changes)} "
               f"verdicts {done}")


@click.command()
@db_option
def check(db_path: str | None) -> None:
    """Check the database's integrity now (`PRAGMA quick_check`, which reads the whole file). `probe run` does it
    once a day by itself; a file that fails to open is reported whatever the day. Exit 1 when damaged.

    Example:

        probe check --db /var/lib/probe/probe.db
    """
    path = database(db_path)
    if not path.exists():
        raise click.ClickException(f"no database at {path}; {storage.NO_DATABASE_HINT}")
    storage.check_database(path, full=True)
    with Session(path, create=False) as session:  # the lock: a running probe's writes are not interleaved
        storage.record_check(session.db)
    click.echo(f"{path}: quick_check ok")


COMMANDS = [reanalyze, check]
