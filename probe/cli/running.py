"""What `probe run` does once its options are parsed (__init__.py): consent, the list, the summary and its exit
code; the measuring itself is measure/session.py's."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from .. import storage
from ..errors import EXIT_CAPTIVE, EXIT_OFFLINE, EXIT_PARTIAL
from ..measure.runner import RunSummary
from ..measure.targets import filter_categories, read_inputs

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


def require_consent(accept_risk: bool) -> None:
    from ..volunteer import consent

    if accept_risk or consent.accepted():
        return
    if not sys.stdin.isatty():
        raise click.ClickException("measuring censorship can carry risks: run `probe run` once interactively to "
                                   "read them, or pass --accept-risk (see README, Safety)")
    ask_consent()


def ask_consent() -> None:
    """The notice, and the question; a yes is kept for this user on this machine (consent.marker)."""
    from ..volunteer import consent

    click.echo(consent.NOTICE, err=True)
    if not click.confirm("Do you accept these risks and want to measure?", err=True):
        raise click.ClickException("not measuring: risks not accepted")
    consent.record()


def say(log, quiet: bool, text: str) -> None:
    if not quiet:
        click.echo(text, err=True)
    if log:
        log.write(f"{storage.now()} {text}\n")
        log.flush()


def waiting_notice(db, db_path: Path) -> str | None:
    """One line when earlier runs stopped before measuring their list: offline cron runs pile up unseen."""
    import shlex

    waiting = storage.waiting_runs(db)
    if not waiting:
        return None
    named = ", ".join(f"{r['id']} ({r['status']})" for r in waiting[-5:])
    more = f"{len(waiting) - 5} more and " if len(waiting) > 5 else ""
    return (f"note: {len(waiting)} earlier run{'s' if len(waiting) > 1 else ''} of this database wait to be resumed "
            f"({more}run {named}): `probe run --resume RUN --db {shlex.quote(str(db_path))}`")


def conclude(summary: RunSummary, db_path: Path, log, quiet: bool, min_free_mb: int) -> int:
    """Print what the database now holds for the run, and the exit code it means."""
    import shlex

    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary.run_counts.items()))
    session = f"; {summary.measured} in this session" if summary.run_measured != summary.measured else ""
    say(log, quiet, f"run {summary.run_id}: {summary.status}; {summary.run_measured}/{summary.run_total} measured"
                    f" ({counts}){session} in {summary.wall_s:.1f}s -> {db_path}")
    resume = f"resume with `probe run --resume --db {shlex.quote(str(db_path))}`"
    if summary.status == "captive" and summary.network is not None:
        say(log, False, f"warning: this network looks like a captive portal ({summary.network.captive}): nothing "
                        f"was measured; log in to the network (open any web page in a browser), then {resume}")
        return EXIT_CAPTIVE
    if summary.network is not None and (summary.network.hijacking or summary.network.check):
        from ..measure.netview import describe

        say(log, quiet, f"network: {describe(summary.network)}")
    line = summary.line
    if line.get("resent") or line.get("flaky"):
        say(log, quiet, f"line: {line['resent_share']:.1%} of DNS queries sent again (lost or slow), "
                        f"{line['flaky']} URLs with a failure a second try did not repeat (never counted as "
                        "blocking): read anomalies with that in mind")
    if summary.status == "offline":
        say(log, False, f"warning: nothing answered during this session: this network looks offline; nothing was "
                        f"stored for the {summary.unstored} URLs it tried, and the run stays open: {resume} "
                        "once online")
        return EXIT_OFFLINE
    if summary.status == "disk-full":
        say(log, False, f"error: less than {min_free_mb} MB free under {db_path}: stopped; {resume} "
                        "when there is room")
        return EXIT_PARTIAL
    if summary.signal is not None:
        say(log, False, f"run {summary.run_id} interrupted; {resume}")
        return EXIT_SIGNAL.get(signal.Signals(summary.signal), 130)
    if summary.status == "partial":
        say(log, False, f"run {summary.run_id} stopped at --max-runtime; {resume}")  # --quiet too: cron mails it
        return EXIT_PARTIAL
    return 0


def read_targets(inputs: tuple[str, ...], categories: tuple[str, ...], log, quiet: bool):
    targets, warnings = read_inputs(inputs)
    for w in warnings:
        say(log, False, f"warning: {w}")
    targets = filter_categories(targets, categories)
    if not targets:
        raise click.ClickException("no URL to measure")
    return targets
