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

    proc = subprocess.run([sys.executable, "-m", "probe.lab.readme_tables", "--check"], capture_output=True, text=True)
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


def test_cli_modules_import_one_way():
    """The cli package's __init__ adds every family of commands (one module each); no family imports it back, and
    cli.support imports no other cli module. (SQL that writes: tests/test_storage_owns_sql.py.)"""
    import ast

    root = Path(probe.__file__).parent
    files = {f"probe.cli.{p.stem}" if p.stem != "__init__" else "probe.cli": p for p in (root / "cli").glob("*.py")}
    files |= {"probe.measure.session": root / "measure/session.py", "probe.measure.runner": root / "measure/runner.py"}
    imports = {}
    for name, file in files.items():
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
                found.add(module)
                found.update(f"{module}.{a.name}" for a in node.names if node.module is None)
        imports[name] = found
    cli, support = "probe.cli", "probe.cli.support"
    families = {n for n in files if n.startswith("probe.cli.")} - {support, "probe.cli.running"}
    assert {"probe.cli.research", "probe.cli.collect", "probe.cli.claims", "probe.cli.lab"} <= families
    assert imports[cli] >= families  # the test sees the imports it guards
    for name in families | {support, "probe.cli.running"}:
        assert cli not in imports[name], f"{name} imports the cli package's __init__"
        assert not (imports[name] & families) - {name}, f"{name} imports another family of commands"
    assert not {n for n in imports[support] if n.startswith("probe.cli.")}
    assert not {n for n in imports["probe.measure.session"] | imports["probe.measure.runner"] if n.startswith(cli)}


def test_cli_modules_stay_thin():
    """Option parsing and printing only: a cli module past ~400 lines holds logic that belongs in the library."""
    for path in (Path(probe.__file__).parent / "cli").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name


def test_domain_errors_share_one_base_with_exit_codes():
    from probe.errors import DatabaseBusy, DatabaseError, OptionConflict, ProbeError
    from probe.measure.lock import LockBusy
    from probe.volunteer.config import ConfigError

    for cls in (probe.TargetError, ConfigError, DatabaseError, OptionConflict):
        assert issubclass(cls, ProbeError) and cls.exit_code == 1
    assert issubclass(LockBusy, ProbeError) and LockBusy.exit_code == DatabaseBusy.exit_code == 4
