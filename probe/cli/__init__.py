"""The `probe` command: parse options, call the library, print. No measuring logic lives here.

Exit codes: 0 done · 1 usage or input error (and risk not accepted) · 2 stopped early (--max-runtime, low
disk) · 3 vantage offline · 4 another run holds the database · 5 a captive portal · 6 the collector could not be
reached or refused an upload (probe upload, run --upload) · 130 SIGINT · 143 SIGTERM. Library errors
(probe.errors.ProbeError) carry their code; ProbeGroup maps them, in one place.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import click
import trio

from .. import __version__, signatures, storage
from ..control.transport import split_service_url
from ..errors import EXIT_CAPTIVE, EXIT_OFFLINE, EXIT_PARTIAL, EXIT_USAGE, ProbeError
from ..measure.netview import DEFAULT_PORTAL_CHECK
from ..measure.runner import Progress, RunOptions, RunSummary
from ..measure.session import Session
from ..measure.targets import filter_categories, read_inputs
from ..storage import reanalysis
from . import collect as cli_collect
from . import research as cli_research
from .support import (
    CONFIG_DB,
    InputFile,
    check_packs,
    database,
    db_option,
    echo_signature_warnings,
    keep_examples,
    signature_set,
)

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


class ProbeGroup(click.Group):
    """Errors become one line, `error: ...`, and an exit code, here and nowhere else. Usage errors exit 1
    (click's 2 is our 'stopped early'); a `ProbeError` exits with its own code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(EXIT_USAGE)
        except click.UsageError as e:  # click would print the usage and a hint over four lines
            where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
            click.echo(f"error: {e.format_message()}{where}", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(EXIT_USAGE)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except ProbeError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except sqlite3.DatabaseError as e:  # damage found after opening (quick_check does not see everything)
            click.echo(f"error: database: {e}; the database was left as it is", err=True)
            sys.exit(EXIT_USAGE)
        except OSError as e:  # an output file or directory we cannot write (-o, --html, --log ...)
            where = f" {e.filename}" if e.filename else ""
            click.echo(f"error: cannot write or read{where}: {e.strerror or e}", err=True)
            sys.exit(EXIT_USAGE)
        sys.exit(rv or 0)


@click.group(cls=ProbeGroup)
@click.version_option(__version__, prog_name="probe")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Options from a TOML file (default: ./probe.toml, then ~/.config/probe/probe.toml).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Measure website blocking from this network: DNS, TCP, TLS and HTTP, compared with a control.

    Example:

        probe run lists/default.txt
    """
    from ..volunteer import config

    path = config.find(config_path)
    if path is None:
        return
    if not path.is_file():
        raise click.ClickException(f"no config file at {path}")
    ctx.default_map = config.default_map(path, cli)
    ctx.meta[CONFIG_DB] = config.database(path)


def _default_inputs(data_dir: str | None = None, country: str | None = None) -> list[str]:
    """Cached Citizen Lab lists (global + country) when `probe lists update` fetched them, else our small list."""
    from ..volunteer.lists import default_inputs

    cached = default_inputs(Path(data_dir) if data_dir else None, country)
    if cached:
        return cached
    return [default_list()]


def default_list() -> str:
    """Our small list, shipped inside the package (never read from the working directory): a wheel has it too."""
    from importlib import resources

    return str(resources.files("probe").joinpath("data/default.txt"))


def _http_urls(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Control services are reached over http(s) only: say so before measuring anything."""
    for url in ([] if value is None else [value] if isinstance(value, str) else value):
        try:
            split_service_url(url)
        except ValueError as e:
            raise click.BadParameter(str(e), ctx=ctx, param=param) from None
    return value


@cli.command()
@click.argument("inputs", nargs=-1)
@db_option
@click.option("--resolver", "resolvers", multiple=True, metavar="HOST[:PORT]",
              help="A resolver to measure besides the system one (/etc/resolv.conf); repeatable.")
@click.option("--no-system-resolver", is_flag=True, help="Measure only the --resolver ones.")
@click.option("--helper", metavar="URL", callback=_http_urls,
              help="Control test helper (ours: `probe helper serve`, or OONI's).")
@click.option("--doh", multiple=True, metavar="URL", callback=_http_urls,
              help="Control DNS-over-HTTPS resolver (repeatable).")
@click.option("--no-control", is_flag=True, help="No control: verdicts from local evidence only (never 'blocked'"
              " without a signature).")
@click.option("--ca-file", type=InputFile("PEM file", 16), help="Extra trust anchors (PEM).")
@click.option("--concurrency", type=click.IntRange(1, 4096), help="URLs in flight. Default: from the fd limit.")
@click.option("--workers", type=click.IntRange(1, 64), help="Measuring processes sharing the URLs and the limits"
              " above. Default: one per two cores (at most 4), fewer for short lists.")
@click.option("--timeout", type=click.FloatRange(0.1, 300), default=10.0, show_default=True,
              help="Seconds for each TCP, TLS and HTTP step.")
@click.option("--dns-timeout", type=click.FloatRange(0.1, 60), default=4.0, show_default=True)
@click.option("--late-window", type=click.FloatRange(0, 10), default=0.5, show_default=True,
              help="Seconds to keep listening for duplicate (injected) DNS replies.")
@click.option("--max-runtime", type=click.FloatRange(1), help="Stop after this many seconds (exit 2).")
@click.option("--category", "categories", multiple=True, metavar="CODE", help="Only URLs of this category.")
@click.option("--country", metavar="CC", help="With no INPUT: add this country's cached Citizen Lab list.")
@click.option("--ip-service", envvar="PROBE_IP_SERVICE", default="https://api.ipify.org", show_default=True,
              metavar="URL", help="What-is-my-IP service for the network's ASN (the IP itself is never stored).")
@click.option("--no-vantage", is_flag=True, help="Do not look up this network's ASN.")
@click.option("--portal-check", envvar="PROBE_PORTAL_CHECK", default=DEFAULT_PORTAL_CHECK, show_default=True,
              metavar="URL", help="A page that answers 204 with no body, fetched once per run to tell a captive portal"
              " ('none': not fetched).")
@click.option("--allow-net", multiple=True, metavar="CIDR",
              help="Treat this range as public (labs). Otherwise private/loopback answers are bogons.")
@click.option("--decoy-sni", default="example.com", show_default=True,
              help="Name used to re-try a failed TLS handshake, to tell SNI filtering from IP blocking.")
@click.option("--keep-bodies", type=click.Choice(["all", "suspect", "none"]), default="suspect",
              show_default=True, help="Which response bodies to store (suspect: every verdict but ok).")
@click.option("--no-signatures", is_flag=True, help="Do not match blockpage/censor-IP signatures.")
@click.option("--signatures", "packs", multiple=True, type=InputFile("signature pack", 64),
              help="An extra signature pack (JSON, the format of probe/signatures/builtin.json); repeatable.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Where cached signature sets live (default: $PROBE_DATA_DIR or ~/.local/share/probe).")
@click.option("--resume", "resume", is_flag=False, flag_value="latest", default=None, metavar="[RUN]",
              help="Finish an interrupted run (the latest unfinished one, or RUN): each remaining URL once, with "
              "the run's own options.")
@click.option("--wait-lock", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Seconds to wait when another run holds the database (then exit 4).")
@click.option("--min-free-mb", type=click.IntRange(0), default=64, show_default=True,
              help="Stop cleanly when the disk under the database has less free space than this.")
@click.option("--log", "log_file", type=click.Path(dir_okay=False), help="Append progress and the summary here.")
@click.option("--accept-risk", is_flag=True, help="Accept the risks of measuring (for cron); see README.")
@click.option("--jitter", type=click.FloatRange(0), default=0.0, help="Sleep a random 0..SECONDS first (cron).")
@click.option("--inputs", "config_inputs", multiple=True, hidden=True)  # `inputs = [...]` in probe.toml
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per URL on stdout.")
@click.option("--quiet", is_flag=True, help="Print nothing but errors, the line that says how to resume a run"
              " that stopped early, and --json lines.")
@click.option("--upload", metavar="URL", callback=_http_urls, help="Then send the run to this collector without "
              "asking (`probe upload --yes`; for cron); exit 6 when it cannot.")
@click.option("--upload-token", envvar="PROBE_UPLOAD_TOKEN", metavar="TOKEN",
              help="For --upload ($PROBE_UPLOAD_TOKEN).")
def run(**params: Any) -> int:
    """Measure every URL of INPUT (list files or URLs; none: the default list).

    A .csv INPUT is read as a Citizen Lab test list, any other file as one URL a line.

    Example:

        probe run lists/default.txt --json --helper https://helper.example.org/
    """
    _consent(params["accept_risk"])
    if params["jitter"]:
        import random
        import time

        time.sleep(random.uniform(0, params["jitter"]))  # before the lock: many volunteers' runs spread out
    log_file = params["log_file"]
    log = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115  (closed below)
    try:
        return _run(params, log)
    except (ProbeError, click.ClickException) as e:
        if log:  # an unattended run's log says why it did nothing; stderr gets the same line from ProbeGroup
            log.write(f"{storage.now()} error: {e}\n")
        raise
    finally:
        if log:
            log.close()


def _consent(accept_risk: bool) -> None:
    from ..volunteer import consent

    if accept_risk or consent.accepted():
        return
    if not sys.stdin.isatty():
        raise click.ClickException("measuring censorship can carry risks: run `probe run` once interactively to "
                                   "read them, or pass --accept-risk (see README, Safety)")
    _ask_consent()


def _ask_consent() -> None:
    """The notice, and the question; a yes is kept for this user on this machine (consent.marker)."""
    from ..volunteer import consent

    click.echo(consent.NOTICE, err=True)
    if not click.confirm("Do you accept these risks and want to measure?", err=True):
        raise click.ClickException("not measuring: risks not accepted")
    consent.record()


def _say(log, quiet: bool, text: str) -> None:
    if not quiet:
        click.echo(text, err=True)
    if log:
        log.write(f"{storage.now()} {text}\n")
        log.flush()


# `probe run` parameters -> the RunOptions field each sets. Parameters not listed only shape this session
# (output, logging, waiting for the lock, consent) or a new run's list (INPUT, --category, --country).
PARAM_FIELDS = {
    "resolvers": "resolvers", "no_system_resolver": "system_resolver", "helper": "helper", "doh": "doh",
    "no_control": "no_control", "ca_file": "ca_file", "concurrency": "concurrency", "workers": "workers",
    "timeout": "timeout", "dns_timeout": "dns_timeout", "late_window": "late_window", "max_runtime": "max_runtime",
    "allow_net": "allow_net", "decoy_sni": "decoy_sni", "keep_bodies": "keep_bodies", "min_free_mb": "min_free_mb",
    "ip_service": "ip_service", "no_vantage": "ip_service", "no_signatures": "signatures",
    "packs": "signature_packs", "data_dir": "data_dir", "portal_check": "portal_check",
}
_GIVEN = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.DEFAULT_MAP)


def _absolute(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None


def _options(a: dict[str, Any]) -> RunOptions:
    """RunOptions from the command's parameters, checked: every bad value is named before anything is created."""
    from ..measure.netpolicy import parse_networks
    from ..measure.steps.dns import Resolver
    from ..measure.steps.tls import check_ca_file

    try:
        opts = RunOptions(
            resolvers=a["resolvers"], system_resolver=not a["no_system_resolver"],
            helper=a["helper"], doh=a["doh"] or None, no_control=a["no_control"], ca_file=_absolute(a["ca_file"]),
            concurrency=a["concurrency"], workers=a["workers"], timeout=a["timeout"], dns_timeout=a["dns_timeout"],
            late_window=a["late_window"], max_runtime=a["max_runtime"], allow_net=a["allow_net"],
            decoy_sni=a["decoy_sni"] or None, keep_bodies=a["keep_bodies"], min_free_mb=a["min_free_mb"],
            ip_service=None if a["no_vantage"] or a["ip_service"] in ("", "none") else a["ip_service"],
            signatures=not a["no_signatures"], signature_packs=tuple(str(Path(p).resolve()) for p in a["packs"]),
            data_dir=_absolute(a["data_dir"]),
            portal_check=None if a["portal_check"] in ("", "none") else a["portal_check"],
        )
        parse_networks(opts.allow_net)
        for r in opts.resolvers:
            Resolver.parse(r)
        if opts.ca_file:
            check_ca_file(opts.ca_file)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    return opts


def _run(a: dict[str, Any], log) -> int:
    """The body of `probe run`, once options are parsed (a: the command's parameters)."""
    ctx = click.get_current_context()
    quiet = a["quiet"]
    opts = _options(a)
    check_packs(a["packs"])
    db_path = database(a["db_path"]).absolute()
    given = {name for name in a if ctx.get_parameter_source(name) in _GIVEN}
    run_id: int | None = None
    if a["upload"] and not a["upload_token"]:  # said before measuring, not after
        raise click.ClickException("--upload needs a token: --upload-token TOKEN or $PROBE_UPLOAD_TOKEN")
    if a["resume"]:
        for name, flag in (("inputs", "INPUT"), ("categories", "--category"), ("country", "--country")):
            if a[name] and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
                raise click.ClickException(f"--resume takes the run's own list: give no {flag}")
        if a["resume"] != "latest":
            if not a["resume"].isdigit():
                raise click.ClickException(f"--resume wants a run id, got {a['resume']!r}")
            run_id = int(a["resume"])
    else:
        if a["no_system_resolver"] and not opts.resolvers:
            raise click.ClickException("--no-system-resolver needs at least one --resolver")
        inputs = a["inputs"] or a["config_inputs"] or tuple(_default_inputs(a["data_dir"], a["country"]))
        targets = _targets(inputs, a["categories"], log, quiet)  # before any database is created
    with Session(db_path, wait_lock=a["wait_lock"], create=not a["resume"]) as session:
        if a["resume"]:
            plan = session.resume(run_id, {PARAM_FIELDS[p]: getattr(opts, PARAM_FIELDS[p])
                                           for p in given if p in PARAM_FIELDS})
            _say(log, quiet, f"resuming run {plan.run_id}: {len(plan.targets)} of {plan.url_count} URLs left, "
                             "with the run's own options")
        else:
            if notice := _waiting_notice(session.db, db_path):
                _say(log, False, notice)
            plan = session.new_run(targets, opts)
        emit = (lambda line: click.echo(line)) if a["as_json"] else None
        progress = Progress(len(plan.targets), enabled=not quiet)
        summary = session.measure(plan, emit=emit, progress=progress, warn=echo_signature_warnings)
    code = _conclude(summary, db_path, log, quiet, plan.options.min_free_mb)
    if a["upload"] and code in (0, EXIT_PARTIAL):
        cli_collect.upload_runs(db_path, summary.run_id, a["upload"], a["upload_token"], yes=True,
                                ca_file=a["ca_file"], say=lambda text: _say(log, quiet, text))
    return code


def _waiting_notice(db, db_path: Path) -> str | None:
    """One line when earlier runs stopped before measuring their list: offline cron runs pile up unseen."""
    import shlex

    waiting = storage.waiting_runs(db)
    if not waiting:
        return None
    named = ", ".join(f"{r['id']} ({r['status']})" for r in waiting[-5:])
    more = f"{len(waiting) - 5} more and " if len(waiting) > 5 else ""
    return (f"note: {len(waiting)} earlier run{'s' if len(waiting) > 1 else ''} of this database wait to be resumed "
            f"({more}run {named}): `probe run --resume RUN --db {shlex.quote(str(db_path))}`")


def _conclude(summary: RunSummary, db_path: Path, log, quiet: bool, min_free_mb: int) -> int:
    """Print what the database now holds for the run, and the exit code it means."""
    import shlex

    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary.run_counts.items()))
    session = f"; {summary.measured} in this session" if summary.run_measured != summary.measured else ""
    _say(log, quiet, f"run {summary.run_id}: {summary.status}; {summary.run_measured}/{summary.run_total} measured"
                     f" ({counts}){session} in {summary.wall_s:.1f}s -> {db_path}")
    resume = f"resume with `probe run --resume --db {shlex.quote(str(db_path))}`"
    if summary.status == "captive" and summary.network is not None:
        _say(log, False, f"warning: this network looks like a captive portal ({summary.network.captive}): nothing "
                         f"was measured; log in to the network (open any web page in a browser), then {resume}")
        return EXIT_CAPTIVE
    if summary.network is not None and (summary.network.hijacking or summary.network.check):
        from ..measure.netview import describe

        _say(log, quiet, f"network: {describe(summary.network)}")
    line = summary.line
    if line.get("resent") or line.get("flaky"):
        _say(log, quiet, f"line: {line['resent_share']:.1%} of DNS queries sent again (lost or slow), "
                         f"{line['flaky']} URLs with a failure a second try did not repeat (never counted as "
                         "blocking): read anomalies with that in mind")
    if summary.status == "offline":
        _say(log, False, f"warning: nothing answered during this session: this network looks offline; nothing was "
                         f"stored for the {summary.unstored} URLs it tried, and the run stays open: {resume} "
                         "once online")
        return EXIT_OFFLINE
    if summary.status == "disk-full":
        _say(log, False, f"error: less than {min_free_mb} MB free under {db_path}: stopped; {resume} "
                         "when there is room")
        return EXIT_PARTIAL
    if summary.signal is not None:
        _say(log, False, f"run {summary.run_id} interrupted; {resume}")
        return EXIT_SIGNAL.get(signal.Signals(summary.signal), 130)
    if summary.status == "partial":
        _say(log, False, f"run {summary.run_id} stopped at --max-runtime; {resume}")  # --quiet too: cron mails it
        return EXIT_PARTIAL
    return 0


def _targets(inputs: tuple[str, ...], categories: tuple[str, ...], log, quiet: bool):
    targets, warnings = read_inputs(inputs)
    for w in warnings:
        _say(log, False, f"warning: {w}")
    targets = filter_categories(targets, categories)
    if not targets:
        raise click.ClickException("no URL to measure")
    return targets


@cli.command()
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


@cli.command()
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


@cli.group()
def helper() -> None:
    """The control helper (OONI Web Connectivity test-helper protocol)."""


@helper.command("serve")
@click.option("--listen", default="127.0.0.1:8780", show_default=True, metavar="HOST:PORT")
@click.option("--resolver", "resolvers", multiple=True, metavar="HOST[:PORT]",
              help="Resolver the helper uses (default: its system resolver).")
@click.option("--ca-file", type=InputFile("PEM file", 16), help="Extra trust anchors (PEM).")
@click.option("--allow-net", multiple=True, metavar="CIDR", help="Let the helper connect into this range (labs "
              "only: on the internet, the helper must never reach private addresses).")
@click.option("--tls-cert", type=InputFile("PEM file", 16), help="Serve HTTPS with this cert.")
@click.option("--tls-key", type=InputFile("PEM file", 16))
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=10.0, show_default=True)
def helper_serve(listen: str, resolvers: tuple[str, ...], ca_file: str | None, allow_net: tuple[str, ...],
                 tls_cert: str | None, tls_key: str | None, timeout: float) -> None:
    """Answer control requests from probes; run it outside the censored network.

    Example:

        probe helper serve --listen 0.0.0.0:8780
    """
    from ..control.helper_server import serve_until_signal

    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise click.ClickException(f"--listen wants HOST:PORT with a port from 0 (any free port) to 65535, got "
                                   f"{listen!r}")
    host = host.strip("[]") or "0.0.0.0"
    scheme = "https" if tls_cert else "http"

    def listening(bound: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"helper listening on {scheme}://{shown}:{bound}/ (Ctrl-C stops it)")

    try:
        trio.run(lambda: serve_until_signal(host, int(port), listening, resolvers=resolvers, ca_file=ca_file,
                                            allow_net=allow_net, tls_cert=tls_cert, tls_key=tls_key,
                                            timeout=timeout))
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"--listen {listen}: cannot listen there: {e.strerror or e}") from None
    click.echo("helper stopped", err=True)


@cli.group("signatures")
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
    from ..models import HttpHop

    sigset = signature_set(data_dir)
    assert sigset is not None
    pairs = []
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep:
            raise click.ClickException(f"--header wants NAME:VALUE, got {h!r}")
        pairs.append((name.strip().lower(), value.strip()))
    hop = HttpHop(url=f"file://{Path(file).resolve()}", headers=tuple(pairs), body=Path(file).read_bytes())
    matches = sigset.match_hop(hop, 1)
    for ip in addresses:
        matches.extend(signatures.Match(s, "dns") for s in sigset.match_dns(ip))
    censor = [m for m in matches if not m.signature.false_positive]
    for m in sorted(matches, key=lambda m: not m.signature.false_positive):
        kind = "FALSE POSITIVE (server-side page)" if m.signature.false_positive else (
            "weak (vague words)" if m.signature.weak else "censor")
        click.echo(f"{m.signature.id}: {kind}, {m.where}: {m.signature.kind} {m.signature.pattern[:80]!r}")
        click.echo(f"    {m.signature.name or m.signature.source} [{m.signature.origin}]")
    if not matches:
        click.echo(f"no signature matches ({len(sigset)} checked)")
    fp_first = any(m.signature.false_positive for m in matches)
    if fp_first:
        click.echo("a false-positive signature matches: probe reports this page as server-side, not as a blockpage")
    raise SystemExit(0 if censor and not fp_first else 1)


@cli.group()
def lab() -> None:
    """The censorship lab: network namespaces where a censoring ISP does to probe what ISPs do (root, Linux)."""


def _lab(prefix: str, dns_delay: float = 0.0, http_delay: float = 0.0):
    from ..lab.topology import Lab

    return Lab(prefix=prefix, dns_delay=dns_delay, http_delay=http_delay)


_prefix_option = click.option("--prefix", default="pl", show_default=True, help="Namespace name prefix.")


@lab.command("up")
@_prefix_option
@click.option("--dns-delay", type=click.FloatRange(0, 10), default=0.0, help="Seconds before each DNS answer.")
@click.option("--http-delay", type=click.FloatRange(0, 10), default=0.0, help="Seconds before each HTTP response.")
def lab_up(prefix: str, dns_delay: float, http_delay: float) -> None:
    """Build the lab (after removing whatever a crash left).

    Example:

        sudo probe lab up --http-delay 0.05
    """
    from ..lab.topology import LabError

    try:
        _lab(prefix, dns_delay, http_delay).up()
    except LabError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"lab {prefix} is up; CA: /run/probe-lab/{prefix}/ca.pem")


@lab.command("down")
@_prefix_option
def lab_down(prefix: str) -> None:
    """Remove the lab: processes, namespaces, veths, rules and state.

    Example:

        sudo probe lab down
    """
    _lab(prefix).down()
    click.echo(f"lab {prefix} is down")


@lab.command("status")
@_prefix_option
def lab_status(prefix: str) -> None:
    """Say whether the lab is up, and its processes.

    Example:

        sudo probe lab status
    """
    click.echo(json.dumps(_lab(prefix).status(), indent=1))


@lab.command("run")
@_prefix_option
@click.option("--scenario", "names", multiple=True, help="Only this scenario (repeatable).")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="Keep the lab run in this database.")
@click.option("--down", "then_down", is_flag=True, help="Tear the lab down afterwards.")
def lab_run(prefix: str, names: tuple[str, ...], db_path: str | None, then_down: bool) -> int:
    """Build the lab if needed, run `probe run` in the client against every scenario, print the score.

    Exit status 0 when every scenario gives its expected verdict.

    Example:

        sudo probe lab run --scenario snirst --scenario dns-nxdomain
    """
    from ..lab.run import report, run_scenarios
    from ..lab.scenarios import SCENARIOS, by_name
    from ..lab.topology import LabError

    the_lab = _lab(prefix)
    try:
        scenarios = by_name(names) if names else SCENARIOS
        outcomes = run_scenarios(the_lab, scenarios, Path(db_path).resolve() if db_path else None)
    except (LabError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    finally:
        if then_down:
            the_lab.down()
    click.echo(report(outcomes))
    return 0 if all(o.correct for o in outcomes) else 1


@cli.command()
@click.option("--every", default="6h", show_default=True, help="Interval: 30m, 6h, 1d ...")
@click.option("--jitter", default="30m", show_default=True, help="Random delay added to each run (0: none).")
@click.option("--config", "config_file", type=InputFile("probe.toml", 1),
              help="The probe.toml the scheduled runs use (default: the one `probe` finds here).")
@db_option
@click.option("--systemd", is_flag=True, help="A systemd service and timer instead of a crontab line.")
@click.option("--install", is_flag=True, help="Install it (crontab, or the unit files into --unit-dir).")
@click.option("--unit-dir", type=click.Path(file_okay=False), help="Where --systemd --install writes the units "
              "(default /etc/systemd/system as root, else ~/.config/systemd/user).")
@click.option("--accept-risk", is_flag=True, help="Accept the risks of measuring for the scheduled runs (needed "
              "unless you accepted them once in an interactive `probe run` on this machine); see README, Safety.")
@click.argument("run_args", nargs=-1, type=click.UNPROCESSED)
def schedule(every: str, jitter: str, config_file: str | None, db_path: str | None, systemd: bool, install: bool,
             unit_dir: str | None, accept_risk: bool, run_args: tuple[str, ...]) -> None:
    """Print (or install) a crontab line or systemd units that run `probe run` unattended.

    Options after `--` are passed to `probe run`. The program, --config and --db (found by the usual rule, here
    and now) are written as absolute paths, and the systemd service runs in the current directory. The runs are
    given --accept-risk only if you accepted the risks yourself: here, with --accept-risk, or once in an
    interactive `probe run` on this machine.

    Example:

        probe schedule --every 6h --config /etc/probe/probe.toml -- --log /var/log/probe.log
    """
    from ..paths import database_path
    from ..volunteer import config, consent
    from ..volunteer.crontab import Schedule, install_cron, install_units, parse_duration

    if not accept_risk and not consent.marker().exists():  # $PROBE_ACCEPT_RISK is not a person saying yes
        if not sys.stdin.isatty():
            raise click.ClickException("scheduled runs measure unattended: accept the risks first, once in an "
                                       "interactive `probe run` on this machine, or with `probe schedule "
                                       "--accept-risk` (see README, Safety)")
        _ask_consent()
    if any(a == "--db" or a.startswith("--db=") for a in run_args):
        raise click.ClickException("give --db to `probe schedule` itself, before `--`: it is written as an "
                                   "absolute path")
    ctx = click.get_current_context()
    found = Path(config_file) if config_file else config.find(ctx.find_root().params.get("config_path"))
    if found is not None and not found.is_file():
        found = None
    if found is not None:
        config.default_map(found, cli)  # a config the scheduled runs would refuse is refused now
    from_config = config.database(found) if found is not None else None
    db = database_path(db_path, from_config).resolve()
    try:
        plan = Schedule(parse_duration(every), parse_duration(jitter, zero_ok=True), run_args,
                        str(found.resolve()) if found else None, db=str(db), workdir=str(Path.cwd()))
        if not systemd:
            line = plan.cron_line()
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if systemd:
        units = plan.systemd_units()
        if not install:
            for name, text in units.items():
                click.echo(f"# {name}\n{text}")
            return
        target, enable = install_units(units, unit_dir)
        click.echo(f"wrote {', '.join(units)} to {target}; enable with: {enable}")
        return
    if not install:
        click.echo(line)
        return
    install_cron(line)
    click.echo(f"installed: {line}")


@cli.group("lists")
def lists_group() -> None:
    """URL lists: Citizen Lab's test lists, cached locally."""


@lists_group.command("update")
@click.option("--country", "countries", multiple=True, metavar="CC", help="A country list too (repeatable).")
@click.option("--base", metavar="URL", help="Where global.csv and <cc>.csv live (default: Citizen Lab's repo).")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option("--ca-file", type=InputFile("PEM file", 16))
def lists_update(countries: tuple[str, ...], base: str | None, data_dir: str | None, ca_file: str | None) -> None:
    """Download Citizen Lab's global list (and country lists) into the cache; report what changed.

    Example:

        probe lists update --country pk
    """
    from ..volunteer.lists import lists_dir, update

    dest = lists_dir(Path(data_dir) if data_dir else None)
    failed = 0
    for r in update(dest, countries, base=base, verify=ca_file or True):
        if r.error:
            failed += 1
            click.echo(f"{r.name}: FAILED ({r.error})", err=True)
            continue
        click.echo(f"{r.name}: {r.count} URLs (+{len(r.added)} -{len(r.removed)}) -> {dest / (r.name + '.csv')}")
        for u in r.added[:20]:
            click.echo(f"  + {u}")
        for u in r.removed[:20]:
            click.echo(f"  - {u}")
    if failed:
        raise click.ClickException(f"{failed} list(s) could not be updated")


for _command in cli_research.cli.commands.values():
    cli.add_command(_command)
for _command in cli_collect.COMMANDS:
    cli.add_command(_command)
keep_examples(cli)
