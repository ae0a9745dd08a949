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


def test_cli_modules_import_one_way_and_write_no_sql():
    """cli -> cli_research -> cli_support, never back; SQL that writes lives in storage.py alone."""
    import ast

    root = Path(probe.__file__).parent
    imports = {}
    for name in ("cli", "cli_research", "cli_support", "cli_collect", "session", "runner", "reanalysis"):
        tree = ast.parse((root / f"{name}.py").read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found.add(node.module or "")
                found.update(a.name for a in node.names if node.module is None)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                writes = any(a.lstrip().lower().startswith(("insert", "update", "delete", "create", "drop", "alter"))
                             for a in args)
                assert not (node.func.attr in ("execute", "executescript") and writes), f"{name}.py writes SQL"
                table_write = node.func.attr in ("insert_all", "upsert", "upsert_all", "delete_where") or (
                    node.func.attr in ("insert", "update") and isinstance(node.func.value, ast.Call))  # db.table(t).x
                assert not table_write, f"{name}.py writes through sqlite-utils: use storage.py"
        imports[name] = found
    assert "cli" not in imports["cli_research"] and "cli" not in imports["cli_support"]
    assert "cli" not in imports["cli_collect"] and "cli_collect" not in imports["cli_support"]
    assert "cli_research" not in imports["cli_support"]
    assert not {"cli", "cli_research", "cli_support"} & (imports["session"] | imports["runner"])


def test_domain_errors_share_one_base_with_exit_codes():
    from probe.config import ConfigError
    from probe.errors import DatabaseBusy, DatabaseError, OptionConflict, ProbeError
    from probe.lock import LockBusy

    for cls in (probe.TargetError, ConfigError, DatabaseError, OptionConflict):
        assert issubclass(cls, ProbeError) and cls.exit_code == 1
    assert issubclass(LockBusy, ProbeError) and LockBusy.exit_code == DatabaseBusy.exit_code == 4
