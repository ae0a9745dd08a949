"""`probe claims`: regulators' claims of blocking, recorded and compared with what was measured (parse, call,
print; the work is research/claims.py's)."""

from __future__ import annotations

import json
from typing import Any

import click

from .. import storage
from .support import (
    InputFile,
    database,
    db_option,
    list_urls,
    open_for_reading,
    open_for_writing,
    parse_since_option,
    research_error,
)


@click.group("claims")
def claims_group() -> None:
    """Regulators' claims of blocking, and how they compare with measurements."""


@claims_group.command("add")
@db_option
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
@db_option
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

    from ..research import claims, queries

    try:
        if items_for:
            if not file:
                raise click.ClickException("--items-for needs the CSV FILE")
            text = Path(file).read_text(encoding="utf-8-sig")
            path = database(db_path)
            if not path.exists():  # the claim must be there already: nothing to add items to
                raise click.ClickException(f"no database at {path}; {storage.NO_DATABASE_HINT}")
            db = open_for_writing(db_path)
            row = queries.find_claim(db, items_for)
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
@db_option
def claims_list(db_path: str) -> None:
    """List recorded claims.

    Example:

        probe claims list
    """
    from ..research import queries

    db = open_for_reading(db_path)
    for c in queries.claims(db):
        click.echo(f"{c['key']:32} {c['date']} {c['claimed_count']:>7} {c['authority']}: {c['covers']}")


@claims_group.command("compare")
@db_option
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

    parsed = parse_since_option(since)
    urls = None if list_file is None else frozenset(list_urls(list_file))
    scope = claims.Scope(urls=urls, list_name=list_file, category=category, run_id=run_id, since=parsed)
    db = open_for_reading(db_path)
    try:
        cmp = claims.compare(db, key, scope)
    except (claims.ClaimError, QueryError) as e:
        raise research_error(e) from None
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
    from ..research import queries

    briefs = queries.latest_methods(db, run_id, since)
    if len(briefs) > 1:
        click.echo(f"\nnote: these verdicts come from runs of {len(briefs)} methods, so the counts mix methods:")
        for b in briefs:
            click.echo(f"  {b}")
    elif briefs:
        click.echo(f"\nverdicts measured with: {briefs[0]}")


COMMANDS = [claims_group]
