"""`probe signatures`: blockpage and censor-address signatures, updated, listed, shown and tried on a saved page
(the work is signatures/')."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .support import InputFile, signature_set


@click.group("signatures")
def signatures_group() -> None:
    """Blockpage and censor-address signatures: ours, OONI's and Censored Planet's."""


@signatures_group.command("update")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Default: $PROBE_DATA_DIR or ~/.local/share/probe")
@click.option("--ooni-base", metavar="URL", help="Where fingerprints_http.csv and fingerprints_dns.csv live.")
@click.option("--cp-base", metavar="URL", help="Where Censored Planet's *_signatures.json live.")
@click.option("--ca-file", type=InputFile("PEM file", 16), help="Trust anchors for the download.")
def signatures_update(data_dir: str | None, ooni_base: str | None, cp_base: str | None, ca_file: str | None) -> None:
    """Download the public signature sets into the cache (validated first; a bad download keeps the old copy).

    Example:

        probe signatures update
    """
    from ..signatures import cache_dir
    from ..signatures.update import update

    dest = cache_dir(Path(data_dir) if data_dir else None)
    failed = 0
    for r in update(dest, ooni_base=ooni_base, cp_base=cp_base, verify=ca_file or True):
        for w in r.warnings:
            click.echo(f"warning: {w}", err=True)
        if r.error:
            failed += 1
            click.echo(f"{r.name}: FAILED ({r.error}) from {r.url}", err=True)
        else:
            click.echo(f"{r.name}: {r.loaded} signatures ({len(r.warnings)} rows skipped) -> {dest / r.name}")
    if failed:
        raise click.ClickException(f"{failed} of 4 sets could not be updated")


@signatures_group.command("list")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option("--country", help="Only signatures expected in this country (e.g. PK).")
@click.option("--scope", help="Only this scope (nat, isp, prod, inst, vbw, fp).")
@click.option("--json", "as_json", is_flag=True)
def signatures_list(data_dir: str | None, country: str | None, scope: str | None, as_json: bool) -> None:
    """List loaded signatures: id, scope, where, pattern.

    Example:

        probe signatures list --country PK
    """
    sigset = signature_set(data_dir)
    assert sigset is not None
    for s in sigset.signatures:
        if country and country.upper() not in s.countries:
            continue
        if scope and s.scope != scope:
            continue
        if as_json:
            click.echo(json.dumps(_signature_dict(s)))
        else:
            click.echo(f"{s.id:45} {s.scope or '-':5} {s.where:18} {s.kind:8} {s.pattern[:70]}")


def _signature_dict(s) -> dict[str, Any]:
    return {"id": s.id, "scope": s.scope, "where": s.where, "kind": s.kind, "pattern": s.pattern,
            "false_positive": s.false_positive, "countries": list(s.countries), "confidence": s.confidence,
            "source": s.source, "name": s.name, "other_names": list(s.other_names), "origin": s.origin}


@signatures_group.command("show")
@click.argument("signature_id")
@click.option("--data-dir", type=click.Path(file_okay=False))
def signatures_show(signature_id: str, data_dir: str | None) -> None:
    """Show one signature in full.

    Example:

        probe signatures show probe.pk.surf-safely
    """
    sigset = signature_set(data_dir)
    assert sigset is not None
    s = sigset.by_id.get(signature_id)
    if s is None:
        raise click.ClickException(f"no signature {signature_id!r} (see `probe signatures list`)")
    click.echo(json.dumps(_signature_dict(s), indent=1, ensure_ascii=False))


@signatures_group.command("test")
@click.argument("file", type=InputFile("saved page", 64))
@click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="A response header to check too.")
@click.option("--dns", "addresses", multiple=True, metavar="IP", help="A DNS answer to check too.")
@click.option("--data-dir", type=click.Path(file_okay=False))
def signatures_test(file: str, headers: tuple[str, ...], addresses: tuple[str, ...], data_dir: str | None) -> None:
    """Check a saved page (and headers, DNS answers) against every signature; show why it matches.

    Exit status 0 when a censor signature matches, 1 when none does.

    Example:

        probe signatures test saved-page.html --header "Location: http://119.73.65.87:8080/redirect.html"
    """
    sigset = signature_set(data_dir)
    assert sigset is not None
    pairs = []
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep:
            raise click.ClickException(f"--header wants NAME:VALUE, got {h!r}")
        pairs.append((name.strip(), value.strip()))
    matches, blockpage = sigset.check_page(Path(file).read_bytes(), pairs, addresses, f"file://{Path(file).resolve()}")
    for m in matches:
        kind = "FALSE POSITIVE (server-side page)" if m.signature.false_positive else (
            "weak (vague words)" if m.signature.weak else "censor")
        click.echo(f"{m.signature.id}: {kind}, {m.where}: {m.signature.kind} {m.signature.pattern[:80]!r}")
        click.echo(f"    {m.signature.name or m.signature.source} [{m.signature.origin}]")
    if not matches:
        click.echo(f"no signature matches ({len(sigset)} checked)")
    if any(m.signature.false_positive for m in matches):
        click.echo("a false-positive signature matches: probe reports this page as server-side, not as a blockpage")
    raise SystemExit(0 if blockpage else 1)

COMMANDS = [signatures_group]
