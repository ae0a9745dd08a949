"""What every command shares: where the database is, how it is opened, signature warnings. Click only.

`probe` (cli/__init__.py) and the research commands (cli/research.py) both import this module, never each other.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import sqlite_utils

from .. import signatures, storage
from ..paths import database_path
from ..signatures import SignatureSet

CONFIG_DB = "probe.config_db"
MB = 1 << 20  # ctx.meta key: the top-level `db` of probe.toml, set by the `probe` group

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


def check_packs(packs: tuple[str, ...]) -> None:
    """A pack named with --signatures must hold signatures: refused before anything is created or read (a broken
    row in a good pack stays a warning)."""
    from ..signatures.loaders import load_pack

    for p in packs:
        try:
            text = Path(p).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise click.ClickException(f"--signatures {p}: not a signature pack (not UTF-8 text)") from None
        sigs, warnings = load_pack(text, p)
        if not sigs:
            raise click.ClickException(f"--signatures {warnings[0] if warnings else f'{p}: no signature in it'}")


def signature_set(data_dir: str | None, use: bool = True, packs: tuple[str, ...] = ()) -> SignatureSet | None:
    """The signatures a re-analysis or an import uses; warnings about broken rows go to stderr."""
    if not use:
        return None
    check_packs(packs)
    cache = signatures.cache_dir(Path(data_dir)) if data_dir else None
    sigset, warnings = signatures.load(cache=cache, packs=tuple(Path(p) for p in packs))
    echo_signature_warnings(warnings)
    return sigset


class _HelpFormatter(click.HelpFormatter):
    """click's, wrapping prose between words only: never inside `--max-runtime` or `YYYY-MM-DD`."""

    @staticmethod
    @contextlib.contextmanager
    def _whole_words() -> Iterator[None]:
        from click import _textwrap  # click's wrap_text builds a _textwrap.TextWrapper for each paragraph

        plain = _textwrap.TextWrapper

        class WholeWords(plain):  # type: ignore[misc,valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.break_on_hyphens = self.break_long_words = False

        _textwrap.TextWrapper = WholeWords  # type: ignore[misc]
        try:
            yield
        finally:
            _textwrap.TextWrapper = plain  # type: ignore[misc]

    def write_text(self, text: str) -> None:
        with self._whole_words():
            super().write_text(text)

    def write_dl(self, rows: Any, col_max: int = 30, col_spacing: int = 2) -> None:
        with self._whole_words():
            super().write_dl(rows, col_max, col_spacing)


class _Context(click.Context):
    formatter_class = _HelpFormatter


def keep_examples(command: click.Command) -> None:
    """Help that never cuts a word or a command line: every indented block after `Example:` is printed as
    written (click rewraps paragraphs to the terminal's width, even inside a quoted argument), and prose wraps
    between words. For `command` and its subcommands."""
    command.context_class = _Context
    if command.help:
        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        in_example = False
        for i, par in enumerate(paragraphs):
            if in_example and par.startswith(" ") and not par.startswith("\b"):
                paragraphs[i] = "\b\n" + par
            in_example = in_example or par.rstrip().endswith("Example:")
        command.help = "\n\n".join(paragraphs)
    for sub in getattr(command, "commands", {}).values():
        keep_examples(sub)


class InputFile(click.Path):
    """An existing file that can be read, of at most `limit_mb`: a wrong one is one line naming it, before the
    command does anything (a 3 GB file given by mistake is never read into memory)."""

    def __init__(self, what: str, limit_mb: int) -> None:
        super().__init__(exists=True, dir_okay=False)
        self.what, self.limit_mb = what, limit_mb

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        try:
            with open(path, "rb") as f:  # not os.access: root may pass it and still not read a FUSE or NFS file
                size = os.fstat(f.fileno()).st_size
        except OSError as e:
            self.fail(f"cannot read {value}: {e.strerror or e}", param, ctx)
        if size > self.limit_mb * MB:
            self.fail(f"{value} is {size / MB:,.0f} MB: more than a {self.what} should be ({self.limit_mb:,} MB at "
                      "most)", param, ctx)
        return path


def research_error(e: ValueError) -> click.ClickException:
    """A bad filter or a failed look-up from the research library, as the one-line error users see."""
    return click.ClickException(str(e))


def parse_since_option(value: str | None) -> str | None:
    from ..research.queries import QueryError, parse_since

    if value is None:
        return None
    try:
        return parse_since(value)
    except QueryError as e:
        raise click.ClickException(f"--since: {e}") from None


def list_urls(list_file: str) -> list[str]:
    """The URLs of a `--list` file, in its order, once each; its bad lines said as warnings."""
    from ..measure.targets import TargetError, read_inputs

    try:
        targets, warnings = read_inputs([list_file])
    except TargetError as e:
        raise click.ClickException(f"--list: {e}") from None
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    return list(dict.fromkeys(t.url for t in targets))
