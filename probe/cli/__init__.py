"""The `probe` command: parse options, call the library, print. No measuring logic lives here.

Exit codes: 0 done · 1 usage or input error (and risk not accepted) · 2 stopped early (--max-runtime, low
disk) · 3 vantage offline · 4 another run holds the database · 5 a captive portal · 6 the collector could not be
reached or refused an upload (probe upload, run --upload) · 130 SIGINT · 143 SIGTERM. Library errors
(probe.errors.ProbeError) carry their code; ProbeGroup maps them, in one place.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import click

from .. import __version__, storage
from ..control.transport import split_service_url
from ..errors import EXIT_PARTIAL, EXIT_USAGE, ProbeError
from ..measure.netview import DEFAULT_PORTAL_CHECK
from ..measure.runner import Progress, RunOptions
from ..measure.session import Session
from . import claims, exchange, helper, lab, maintain, research, signatures, volunteer
from . import collect as cli_collect
from .running import conclude, read_targets, require_consent, say, waiting_notice
from .support import CONFIG_DB, InputFile, check_packs, database, db_option, echo_signature_warnings, keep_examples


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
@click.option("--no-quic", is_flag=True, help="No QUIC (HTTP/3) handshakes beside TCP/TLS for https URLs.")
@click.option("--locate/--no-locate", default=True, show_default=True,
              help="After a TLS reset or timeout that reproduces, find the hop it comes from (TTL-limited "
              "ClientHellos, as OONI's tlsmiddlebox).")
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
    require_consent(params["accept_risk"])
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


# `probe run` parameters -> the RunOptions field each sets. Parameters not listed only shape this session
# (output, logging, waiting for the lock, consent) or a new run's list (INPUT, --category, --country).
PARAM_FIELDS = {
    "resolvers": "resolvers", "no_system_resolver": "system_resolver", "helper": "helper", "doh": "doh",
    "no_control": "no_control", "ca_file": "ca_file", "concurrency": "concurrency", "workers": "workers",
    "timeout": "timeout", "dns_timeout": "dns_timeout", "late_window": "late_window", "max_runtime": "max_runtime",
    "allow_net": "allow_net", "decoy_sni": "decoy_sni", "keep_bodies": "keep_bodies", "min_free_mb": "min_free_mb",
    "ip_service": "ip_service", "no_vantage": "ip_service", "no_signatures": "signatures",
    "packs": "signature_packs", "data_dir": "data_dir", "portal_check": "portal_check", "no_quic": "quic",
    "locate": "locate",
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
            quic=not a["no_quic"],
            locate=a["locate"],
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


def _run_inputs(data_dir: str | None, country: str | None) -> list[str]:
    from ..volunteer.lists import run_inputs

    return run_inputs(Path(data_dir) if data_dir else None, country)


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
        inputs = a["inputs"] or a["config_inputs"] or tuple(_run_inputs(a["data_dir"], a["country"]))
        targets = read_targets(inputs, a["categories"], log, quiet)  # before any database is created
    with Session(db_path, wait_lock=a["wait_lock"], create=not a["resume"]) as session:
        if a["resume"]:
            plan = session.resume(run_id, {PARAM_FIELDS[p]: getattr(opts, PARAM_FIELDS[p])
                                           for p in given if p in PARAM_FIELDS})
            say(log, quiet, f"resuming run {plan.run_id}: {len(plan.targets)} of {plan.url_count} URLs left, "
                            "with the run's own options")
        else:
            if notice := waiting_notice(session.db, db_path):
                say(log, False, notice)
            plan = session.new_run(targets, opts)
        emit = (lambda line: click.echo(line)) if a["as_json"] else None
        progress = Progress(len(plan.targets), enabled=not quiet)
        summary = session.measure(plan, emit=emit, progress=progress, warn=echo_signature_warnings)
    code = conclude(summary, db_path, log, quiet, plan.options.min_free_mb)
    if a["upload"] and code in (0, EXIT_PARTIAL):
        cli_collect.upload_runs(db_path, summary.run_id, a["upload"], a["upload_token"], yes=True,
                                ca_file=a["ca_file"], say=lambda text: say(log, quiet, text))
    return code


# Each family of commands lives in its own module of this package, which never imports this one.
for _family in (maintain, helper, signatures, lab, volunteer, research, claims, exchange, cli_collect):
    for _command in _family.COMMANDS:
        cli.add_command(_command)
keep_examples(cli)
