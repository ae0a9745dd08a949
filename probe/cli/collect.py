"""Commands that move results from volunteers to researchers: `probe upload` and `probe collector ...`.

Click only: each command parses, calls probe/volunteer/upload.py or probe/collector/, prints. Registered in
cli/__init__.py.
Exit codes besides the usual ones (cli/__init__.py): 6 the collector could not be reached or refused the upload.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from .. import storage
from ..errors import ProbeError
from .support import database, db_option, signature_set

_token_option = click.option("--token", envvar="PROBE_UPLOAD_TOKEN", metavar="TOKEN",
                             help="The token the researchers gave you (or $PROBE_UPLOAD_TOKEN).")
_collector_db = click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False),
                             help="The collector's database (a probe database with the collector's tables).")


def upload_runs(db_path: Path, run_id: int | None, url: str, token: str | None, *, yes: bool, ca_file: str | None,
                retries: int = 3, say: Callable[[str], None]) -> None:
    """Show what will be sent, ask once (unless `yes`), send; shared by `probe upload` and `probe run --upload`."""
    from ..volunteer.upload import check_destination, describe, runs_to_send, upload

    if not token:
        raise click.ClickException("no token: pass --token TOKEN or set PROBE_UPLOAD_TOKEN (the researchers "
                                   "who run the collector issue them)")
    check_destination(url, token)
    db = storage.open_existing(db_path)
    try:
        runs = runs_to_send(db, run_id)
        if not runs:
            say(f"nothing to send: no finished run with measurements in {db_path}")
            return
        say(describe(runs, url))
        if not yes:
            if not sys.stdin.isatty():
                raise click.ClickException("not sending without asking: pass --yes (for scripts and cron)")
            if not click.confirm("Send these measurements?", err=True):
                raise click.ClickException("nothing sent")
        sent = upload(db, runs, url, token, ca_file=ca_file, retries=retries, say=say)
    finally:
        storage.close(db)
    say(f"done: {sent.stored} measurements stored by the collector, {sent.already + sent.duplicates} it had "
        f"already, {sent.requests} requests")


@click.command("upload")
@click.option("--to", "url", required=True, metavar="URL", help="The collector (`probe collector serve`).")
@_token_option
@db_option
@click.option("--run", "run_id", type=int, help="Only this run (default: every finished run).")
@click.option("--yes", is_flag=True, help="Do not ask (scripts, cron): what is sent is still printed.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="Extra trust anchors (PEM) for an "
              "https:// collector with its own CA.")
@click.option("--retries", type=click.IntRange(0, 10), default=3, show_default=True,
              help="Attempts after a failure that may pass (unreachable, 429, 5xx).")
def upload_command(url: str, token: str | None, db_path: str | None, run_id: int | None, yes: bool,
                   ca_file: str | None, retries: int) -> None:
    """Send finished runs to the researchers' collector; sending again sends only what it does not have.

    Shows the runs, networks (ASN, name, country) and counts first, and asks once. Never sends an IP address
    of yours. Exit status 6 when the collector cannot be reached or refuses (run it again to resume).

    Example:

        probe upload --to https://collector.example.org/ --token TOKEN
    """
    upload_runs(database(db_path), run_id, url, token, yes=yes, ca_file=ca_file, retries=retries,
                say=lambda text: click.echo(text, err=True))


@click.group("collector")
def collector() -> None:
    """Receive volunteers' uploads (researchers): a server, its tokens, its status."""


@collector.command("serve")
@click.option("--listen", default="127.0.0.1:8790", show_default=True, metavar="HOST:PORT",
              help="Port 0 picks a free port (printed).")
@_collector_db
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Serve HTTPS with this cert (PEM).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False))
@click.option("--max-body-mb", type=click.FloatRange(0.001, 1024), default=16.0, show_default=True,
              help="Largest request body.")
@click.option("--max-items", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Most measurements in one request.")
@click.option("--rate", type=click.FloatRange(0.1), default=120.0, show_default=True,
              help="Requests per minute per token (429 beyond, with Retry-After).")
@click.option("--burst", type=click.IntRange(1), default=30, show_default=True, help="Requests at once per token.")
@click.option("--body-timeout", type=click.FloatRange(0.1, 3600), default=60.0, show_default=True,
              help="Seconds a request body may take to arrive (408 beyond).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where cached signature sets live.")
def collector_serve(listen: str, db_path: str, tls_cert: str | None, tls_key: str | None, max_body_mb: float,
                    max_items: int, rate: float, burst: int, body_timeout: float, data_dir: str | None) -> None:
    """Receive `probe upload`s into DB (probe's schema: merge, export and report work on it as on any run).

    Volunteers authenticate with tokens (`probe collector token add`); no client address is stored or logged.

    Example:

        probe collector serve --listen 0.0.0.0:8790 --db collected.db --tls-cert cert.pem --tls-key key.pem
    """
    import trio

    try:
        from ..collector.app import Limits, serve, stop_on_signal
    except ImportError as e:
        raise click.ClickException(f"the collector needs its extra ({e.name} is missing): "
                                   "pip install 'blockprobe[collector]'") from None
    from ..collector.store import Store

    host, _, port = listen.rpartition(":")
    if not port.isdigit() or not host:
        raise click.ClickException(f"--listen wants HOST:PORT, got {listen!r}")
    if bool(tls_cert) != bool(tls_key):
        raise click.ClickException("--tls-cert and --tls-key go together")
    limits = Limits(max_body=int(max_body_mb * 1024 * 1024), max_items=max_items, rate_per_minute=rate,
                    burst=burst, body_timeout=body_timeout)
    sigset = signature_set(data_dir)
    store = Store(db_path, sigset.hits if sigset is not None else None)

    def say(text: str) -> None:
        click.echo(f"collector: {text}", err=True)

    class Ready:  # hypercorn reports the bound URLs through trio's task-status protocol
        def started(self, urls: list[str]) -> None:
            say(f"listening on {', '.join(urls)}; database {Path(db_path).resolve()}")

    async def main() -> None:
        await serve(store, limits, host.strip("[]"), int(port), certfile=tls_cert, keyfile=tls_key, say=say,
                    shutdown_trigger=stop_on_signal, task_status=Ready())  # type: ignore[arg-type]

    try:
        trio.run(main)
        say("stopped")
    except BaseException as e:  # a port in use arrives inside trio's exception groups
        error = _first_os_error(e)
        if error is None:
            raise
        raise ProbeError(f"cannot listen on {listen}: {error.strerror or error}") from None
    finally:
        store.close()


def _first_os_error(e: BaseException) -> OSError | None:
    if isinstance(e, OSError):
        return e
    if isinstance(e, BaseExceptionGroup):
        for inner in e.exceptions:
            if found := _first_os_error(inner):
                return found
    return None


@collector.group("token")
def token_group() -> None:
    """Tokens for volunteers: issue one per volunteer (or group), revoke it when needed."""


@token_group.command("add")
@click.argument("name")
@_collector_db
def token_add(name: str, db_path: str) -> None:
    """Issue a token for NAME and print it (the last word); only its hash is kept: it cannot be shown again.

    Example:

        probe collector token add volunteer-lahore-1 --db collected.db
    """
    from ..collector.store import new_token

    db = storage.open_collector(db_path)
    try:
        token = new_token(db, name)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    finally:
        storage.close(db)
    click.echo(f"token for {name} (shown once; give it to the volunteer): {token}")


@token_group.command("revoke")
@click.argument("name")
@_collector_db
def token_revoke(name: str, db_path: str) -> None:
    """Revoke NAME's token: its next upload is refused (401); what it sent stays.

    Example:

        probe collector token revoke volunteer-lahore-1 --db collected.db
    """
    db = storage.open_collector(db_path)
    try:
        done = storage.revoke_token(db, name)
    finally:
        storage.close(db)
    if not done:
        raise click.ClickException(f"no live token named {name!r} in {db_path}")
    click.echo(f"revoked {name}")


@collector.command("status")
@_collector_db
@click.option("--json", "as_json", is_flag=True, help="One JSON object per token.")
def collector_status(db_path: str, as_json: bool) -> None:
    """Tokens, the networks their uploads came from, their last upload and what they stored.

    Example:

        probe collector status --db collected.db
    """
    if not Path(db_path).exists():
        raise click.ClickException(f"no database at {db_path}")
    db = storage.open_collector(db_path)
    try:
        rows = storage.collector_status(db)
    finally:
        storage.close(db)
    for r in rows:
        if as_json:
            click.echo(json.dumps(r))
            continue
        state = f"revoked {r['revoked']}" if r["revoked"] else "live"
        click.echo(f"{r['token']}: {state}; last upload {r['last_upload'] or 'never'}; {r['measurements']} "
                   f"measurements ({r['duplicates']} duplicates ignored)")
        for n in r["networks"]:
            click.echo(f"    AS{n['asn'] or 0} {n['network'] or ''} ({n['country'] or '??'}): {n['runs']} run(s)")
    if not rows and not as_json:
        click.echo("no token yet: `probe collector token add NAME --db ...`")


COMMANDS = (upload_command, collector)
