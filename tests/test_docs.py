"""The README stays true: every command and every rule is documented; the public API is what __all__ says."""

from __future__ import annotations

from pathlib import Path

import click

import probe
from probe.analysis import RULES
from probe.cli import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands(group: click.Group, prefix: str = "probe") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix} {name}"
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, full))
        else:
            out.append((full, cmd))
    return out


def test_every_command_is_in_the_readme_and_has_an_example():
    for name, cmd in _commands(cli):
        assert f"`{name}" in README, f"{name} is not documented in README.md"
        assert "Example:" in (cmd.help or ""), f"{name} --help has no example"


def test_readme_tables_are_generated_from_the_code():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "probe.readme_tables", "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_rule_is_in_the_readme():
    for rule in RULES:
        assert f"`{rule.id}`" in README, rule.id


def test_public_api_is_sorted_and_importable():
    assert probe.__all__ == sorted(probe.__all__)
    for name in probe.__all__:
        assert hasattr(probe, name), name


def test_readme_opens_with_the_two_setup_commands():
    block = README.split("```sh", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2
    assert "probe run" in block[0] and "pytest" in block[1]
