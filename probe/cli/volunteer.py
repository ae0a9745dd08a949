"""What a volunteer sets up once: `probe schedule` (cron or systemd; the work is volunteer/crontab.py) and the
cached URL lists (`probe lists update`; volunteer/lists.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .running import ask_consent
from .support import InputFile, db_option


@click.command()
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
        ask_consent()
    if any(a == "--db" or a.startswith("--db=") for a in run_args):
        raise click.ClickException("give --db to `probe schedule` itself, before `--`: it is written as an "
                                   "absolute path")
    ctx = click.get_current_context()
    root = ctx.find_root().command  # `probe` itself: this module never imports the package's __init__
    assert isinstance(root, click.Group)
    found = Path(config_file) if config_file else config.find(ctx.find_root().params.get("config_path"))
    if found is not None and not found.is_file():
        found = None
    if found is not None:
        config.default_map(found, root)  # a config the scheduled runs would refuse is refused now
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


@click.group("lists")
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


COMMANDS = [schedule, lists_group]
