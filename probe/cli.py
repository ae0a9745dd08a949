"""The `probe` command: parse options, call the library, print. No measuring logic lives here.

Exit codes: 0 done · 1 usage or input error · 2 stopped early (--max-runtime) · 3 vantage offline ·
130 SIGINT · 143 SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import click
import trio

from . import reanalysis, storage
from .runner import Progress, RunOptions, run_async
from .targets import TargetError, filter_categories, read_inputs

DEFAULT_LIST = Path(__file__).resolve().parent.parent / "lists" / "default.txt"
EXIT_USAGE, EXIT_PARTIAL, EXIT_OFFLINE = 1, 2, 3
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


class ProbeGroup(click.Group):
    """Usage errors exit 1 (click's default 2 is our 'stopped early')."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as e:
            e.show()
            sys.exit(EXIT_USAGE)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        sys.exit(rv or 0)


@click.group(cls=ProbeGroup)
@click.version_option(package_name="probe")
def cli() -> None:
    """Measure website blocking from this network: DNS, TCP, TLS and HTTP, compared with a control.

    Example:

        probe run lists/default.txt
    """


def _default_inputs() -> list[str]:
    return [str(DEFAULT_LIST)]


@cli.command()
@click.argument("inputs", nargs=-1)
@click.option("--db", "db_path", default="results/probe.db", show_default=True, help="SQLite database.")
@click.option("--resolver", "resolvers", multiple=True, metavar="HOST[:PORT]",
              help="Resolver to measure (repeatable). Default: the system resolver from /etc/resolv.conf.")
@click.option("--helper", metavar="URL", help="Control test helper (ours: `probe helper serve`, or OONI's).")
@click.option("--doh", multiple=True, metavar="URL", help="Control DNS-over-HTTPS resolver (repeatable).")
@click.option("--no-control", is_flag=True, help="No control: verdicts from local evidence only (never 'blocked'"
              " without a signature).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="Extra trust anchors (PEM).")
@click.option("--concurrency", type=click.IntRange(1, 4096), help="URLs in flight. Default: from the fd limit.")
@click.option("--timeout", type=click.FloatRange(0.1, 300), default=10.0, show_default=True,
              help="Seconds for each TCP, TLS and HTTP step.")
@click.option("--dns-timeout", type=click.FloatRange(0.1, 60), default=4.0, show_default=True)
@click.option("--late-window", type=click.FloatRange(0, 10), default=0.5, show_default=True,
              help="Seconds to keep listening for duplicate (injected) DNS replies.")
@click.option("--max-runtime", type=click.FloatRange(1), help="Stop after this many seconds (exit 2).")
@click.option("--category", "categories", multiple=True, metavar="CODE", help="Only URLs of this category.")
@click.option("--allow-net", multiple=True, metavar="CIDR",
              help="Treat this range as public (labs). Otherwise private/loopback answers are bogons.")
@click.option("--decoy-sni", default="example.com", show_default=True,
              help="Name used to re-try a failed TLS handshake, to tell SNI filtering from IP blocking.")
@click.option("--keep-bodies", type=click.Choice(["all", "suspect", "none"]), default="suspect",
              show_default=True, help="Which response bodies to store (suspect: every verdict but ok).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per URL on stdout.")
@click.option("--quiet", is_flag=True, help="Print nothing but errors (and --json lines).")
def run(inputs: tuple[str, ...], db_path: str, resolvers: tuple[str, ...], helper: str | None,
        doh: tuple[str, ...], no_control: bool, ca_file: str | None, concurrency: int | None, timeout: float,
        dns_timeout: float, late_window: float, max_runtime: float | None, categories: tuple[str, ...],
        allow_net: tuple[str, ...], decoy_sni: str, keep_bodies: str, as_json: bool, quiet: bool) -> int:
    """Measure every URL of INPUT (list files or URLs; none: the default list).

    A .csv INPUT is read as a Citizen Lab test list, any other file as one URL a line.

    Example:

        probe run lists/default.txt --json --helper https://helper.example.org/
    """
    try:
        targets, warnings = read_inputs(inputs or _default_inputs())
    except TargetError as e:
        raise click.ClickException(str(e)) from None
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    targets = filter_categories(targets, categories)
    if not targets:
        raise click.ClickException("no URL to measure")
    try:
        opts = RunOptions(
            db_path=db_path, resolvers=resolvers, helper=helper, doh=doh or None, no_control=no_control,
            ca_file=ca_file, concurrency=concurrency, timeout=timeout, dns_timeout=dns_timeout,
            late_window=late_window, max_runtime=max_runtime, allow_net=allow_net, decoy_sni=decoy_sni or None,
            keep_bodies=keep_bodies,
        )
        from .netpolicy import parse_networks
        from .steps.dns import Resolver

        parse_networks(allow_net)
        for r in resolvers:
            Resolver.parse(r)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    db = storage.open_db(db_path)
    emit = (lambda line: click.echo(line)) if as_json else None
    progress = Progress(len(targets), enabled=not quiet)
    summary = trio.run(lambda: run_async(db, targets, opts, emit=emit, progress=progress))
    if not quiet:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(summary.counts.items()))
        click.echo(f"run {summary.run_id}: {summary.status}; {summary.measured}/{summary.total} measured"
                   f" ({counts}) in {summary.wall_s:.1f}s -> {db_path}", err=True)
    if summary.status == "offline":
        click.echo("warning: nothing answered during the whole run: this network looks offline; verdicts are "
                   "marked error (vantage/offline)", err=True)
        return EXIT_OFFLINE
    if summary.signal is not None:
        return EXIT_SIGNAL.get(signal.Signals(summary.signal), 130)
    return EXIT_PARTIAL if summary.status == "partial" else 0


@cli.command()
@click.option("--db", "db_path", default="results/probe.db", show_default=True)
@click.option("--run", "run_id", type=int, help="Run id (default: the latest run).")
@click.option("--status", help="Only this status (ok, blocked, anomaly, down, error).")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines instead of a table.")
def results(db_path: str, run_id: int | None, status: str | None, as_json: bool) -> None:
    """List the verdicts of a run.

    Example:

        probe results --status blocked
    """
    db = storage.open_db(db_path)
    run_id = run_id if run_id is not None else storage.latest_run_id(db)
    if run_id is None:
        raise click.ClickException(f"no run in {db_path}")
    for m in storage.measurements(db, run_id):
        if status and m["status"] != status:
            continue
        if as_json:
            click.echo(json.dumps({k: m[k] for k in ("run_id", "url", "category", "status", "layer", "detail",
                                                      "fingerprint", "control", "runtime_s", "rule")}))
        else:
            click.echo(f"{m['status']:8} {m['detail']:32} {m['url']}")


@cli.command()
@click.option("--db", "db_path", default="results/probe.db", show_default=True)
@click.option("--run", "run_id", type=int, help="Only this run (default: every run).")
def reanalyze(db_path: str, run_id: int | None) -> None:
    """Recompute verdicts from stored observations with the current rules (and signatures).

    Example:

        probe reanalyze --run 3
    """
    db = storage.open_db(db_path)
    changed, total = reanalysis.reanalyze(db, run_id)
    click.echo(f"{total} measurements re-judged, {changed} verdicts changed")


@cli.group()
def helper() -> None:
    """The control helper (OONI Web Connectivity test-helper protocol)."""


@helper.command("serve")
@click.option("--listen", default="127.0.0.1:8780", show_default=True, metavar="HOST:PORT")
@click.option("--resolver", "resolvers", multiple=True, metavar="HOST[:PORT]",
              help="Resolver the helper uses (default: its system resolver).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="Extra trust anchors (PEM).")
@click.option("--allow-net", multiple=True, metavar="CIDR", help="Let the helper connect into this range (labs "
              "only: on the internet, the helper must never reach private addresses).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Serve HTTPS with this cert.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False))
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=10.0, show_default=True)
def helper_serve(listen: str, resolvers: tuple[str, ...], ca_file: str | None, allow_net: tuple[str, ...],
                 tls_cert: str | None, tls_key: str | None, timeout: float) -> None:
    """Answer control requests from probes; run it outside the censored network.

    Example:

        probe helper serve --listen 0.0.0.0:8780
    """
    from .control.helper_server import serve_forever

    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise click.ClickException(f"--listen wants HOST:PORT, got {listen!r}")
    try:
        trio.run(lambda: serve_forever(host.strip("[]") or "0.0.0.0", int(port), resolvers=resolvers,
                                       ca_file=ca_file, allow_net=allow_net, tls_cert=tls_cert, tls_key=tls_key,
                                       timeout=timeout))
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:
        pass
