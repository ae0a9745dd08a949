"""`probe lab`: the censorship lab in network namespaces (the work is lab/'s)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group("lab")
def lab_group() -> None:
    """The censorship lab: network namespaces where a censoring ISP does to probe what ISPs do (root, Linux)."""


def _lab(prefix: str, dns_delay: float = 0.0, http_delay: float = 0.0):
    from ..lab.topology import Lab

    return Lab(prefix=prefix, dns_delay=dns_delay, http_delay=http_delay)


_prefix_option = click.option("--prefix", default="pl", show_default=True, help="Namespace name prefix.")


@lab_group.command("up")
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


@lab_group.command("down")
@_prefix_option
def lab_down(prefix: str) -> None:
    """Remove the lab: processes, namespaces, veths, rules and state.

    Example:

        sudo probe lab down
    """
    _lab(prefix).down()
    click.echo(f"lab {prefix} is down")


@lab_group.command("status")
@_prefix_option
def lab_status(prefix: str) -> None:
    """Say whether the lab is up, and its processes.

    Example:

        sudo probe lab status
    """
    click.echo(json.dumps(_lab(prefix).status(), indent=1))


@lab_group.command("run")
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


COMMANDS = [lab_group]
