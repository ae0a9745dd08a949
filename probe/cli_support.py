"""What every command shares: where the database is, how it is opened, signature warnings. Click only.

`probe` (cli.py) and the research commands (cli_research.py) both import this module, never each other.
"""

from __future__ import annotations

from pathlib import Path

import click
import sqlite_utils

from . import signatures, storage
from .paths import database_path
from .signatures import SignatureSet

CONFIG_DB = "probe.config_db"  # ctx.meta key: the top-level `db` of probe.toml, set by the `probe` group

db_option = click.option(
    "--db", "db_path", metavar="PATH",
    help="SQLite database (default: $PROBE_DB, else `db` in probe.toml, else results/probe.db).")


def database(explicit: str | None) -> Path:
    """The one rule for where the database is (see paths.database_path), with this invocation's config."""
    ctx = click.get_current_context(silent=True)
    return database_path(explicit, ctx.meta.get(CONFIG_DB) if ctx else None)


def open_for_reading(explicit: str | None) -> sqlite_utils.Database:
    """A database that must exist; never created, never changed (read-only media work)."""
    return storage.open_existing(database(explicit))


def open_for_writing(explicit: str | None) -> sqlite_utils.Database:
    return storage.open_db(database(explicit))


def echo_signature_warnings(warnings: list[str]) -> None:
    for w in warnings[:20]:
        click.echo(f"warning: {w}", err=True)
    if len(warnings) > 20:
        click.echo(f"warning: ... and {len(warnings) - 20} more broken signature rows", err=True)


def signature_set(data_dir: str | None, use: bool = True, packs: tuple[str, ...] = ()) -> SignatureSet | None:
    """The signatures a re-analysis or an import uses; warnings about broken rows go to stderr."""
    if not use:
        return None
    cache = signatures.cache_dir(Path(data_dir)) if data_dir else None
    sigset, warnings = signatures.load(cache=cache, packs=tuple(Path(p) for p in packs))
    echo_signature_warnings(warnings)
    return sigset
