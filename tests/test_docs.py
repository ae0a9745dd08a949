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


def test_cli_modules_import_one_way_and_write_no_sql():
    """cli -> cli.research -> cli.support, never back; SQL that writes lives in storage alone."""
    import ast

    root = Path(probe.__file__).parent
    files = {"probe.cli": "cli/__init__.py", "probe.cli.research": "cli/research.py",
             "probe.cli.support": "cli/support.py", "probe.cli.collect": "cli/collect.py",
             "probe.measure.session": "measure/session.py", "probe.measure.runner": "measure/runner.py",
             "probe.storage.reanalysis": "storage/reanalysis.py"}
    imports = {}
    for name, file in files.items():
        tree = ast.parse((root / file).read_text())
        package = name if file.endswith("__init__.py") else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
                found.add(module)
                found.update(f"{module}.{a.name}" for a in node.names if node.module is None)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                writes = any(a.lstrip().lower().startswith(("insert", "update", "delete", "create", "drop", "alter"))
                             for a in args)
                assert not (node.func.attr in ("execute", "executescript") and writes), f"{file} writes SQL"
                table_write = node.func.attr in ("insert_all", "upsert", "upsert_all", "delete_where") or (
                    node.func.attr in ("insert", "update") and isinstance(node.func.value, ast.Call))  # db.table(t).x
                assert not table_write, f"{file} writes through sqlite-utils: use storage"
        imports[name] = found
    cli, research, support, collect = "probe.cli", "probe.cli.research", "probe.cli.support", "probe.cli.collect"
    assert cli not in imports[research] and cli not in imports[support]
    assert cli not in imports[collect] and collect not in imports[support]
    assert research not in imports[support]
    assert not {cli, research, support} & (imports["probe.measure.session"] | imports["probe.measure.runner"])
    assert imports[cli] >= {research, collect}  # the test sees the imports it guards


def test_domain_errors_share_one_base_with_exit_codes():
    from probe.errors import DatabaseBusy, DatabaseError, OptionConflict, ProbeError
    from probe.measure.lock import LockBusy
    from probe.volunteer.config import ConfigError

    for cls in (probe.TargetError, ConfigError, DatabaseError, OptionConflict):
        assert issubclass(cls, ProbeError) and cls.exit_code == 1
    assert issubclass(LockBusy, ProbeError) and LockBusy.exit_code == DatabaseBusy.exit_code == 4
