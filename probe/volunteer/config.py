"""probe.toml: every `probe run` option in a file, so a cron line stays short. Command-line options win.

Looked up in this order: --config PATH, ./probe.toml, $XDG_CONFIG_HOME/probe/probe.toml (~/.config/...).
A top-level `db` is the database of every command (relative to the file's directory); then a table per
command, whose keys are option names (`helper`, `doh`, `resolver`, `concurrency`, ...):

    db = "/var/lib/probe/probe.db"

    [run]
    inputs = ["lists/pk.csv"]
    helper = "https://helper.example.org/"
    doh = ["https://doh.example.org/dns-query"]
    concurrency = 64
    accept_risk = true
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import click

from ..errors import ProbeError


class ConfigError(ProbeError, ValueError):
    pass


def config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "probe"


def find(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    for candidate in (Path("probe.toml"), config_home() / "probe.toml"):
        if candidate.is_file():
            return candidate
    return None


MAX_BYTES = 1 << 20  # a probe.toml is a few hundred bytes; a larger file is not one


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise ConfigError(f"{path}: more than {MAX_BYTES >> 20} MB: not a probe.toml")
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (UTF-8): not a probe.toml") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {getattr(e, 'strerror', None) or e}") from None


def database(path: Path) -> Path | None:
    """The top-level `db` of the file, made absolute against the file's own directory."""
    value = _read(path).get("db")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: db must be a path, got {value!r}")
    return (path.resolve().parent / Path(value).expanduser())


def default_map(path: Path, group: click.Group) -> dict[str, dict[str, Any]]:
    """Translate the file into click's default_map, naming any key that is not an option."""
    data = _read(path)
    out: dict[str, dict[str, Any]] = {}
    for section, values in data.items():
        if section == "db":
            continue  # see database()
        cmd = group.commands.get(section)
        if cmd is None or not isinstance(values, dict):
            raise ConfigError(f"{path}: [{section}] is not a probe command")
        names: dict[str, click.Parameter] = {}
        for p in cmd.params:
            assert p.name is not None
            names[p.name] = p
            for opt in getattr(p, "opts", ()):
                names[opt.lstrip("-").replace("-", "_")] = p
        ctx = click.Context(cmd, info_name=section)
        mapped: dict[str, Any] = {}
        for key, value in values.items():
            if key.replace("-", "_") in ("db", "db_path"):
                raise ConfigError(f"{path}: [{section}] has db: put `db = ...` at the top of the file, before any "
                                  "[table], so that every command uses the same database")
            param = names.get(key.replace("-", "_"))
            if param is None or param.name is None:
                raise ConfigError(f"{path}: [{section}] has no option {key!r}")
            if param.multiple or param.nargs == -1:
                if isinstance(value, str):
                    value = [value]  # `resolver = "a"` is `resolver = ["a"]`
                elif not isinstance(value, list):
                    raise ConfigError(f'{path}: [{section}] {key} = {value!r}: takes a list, e.g. {key} = ["..."]')
            try:  # checked here, where the file and the key can be named (click would name neither)
                param.type_cast_value(ctx, value)
            except click.BadParameter as e:
                raise ConfigError(f"{path}: [{section}] {key} = {value!r}: {e.message}") from None
            mapped[param.name] = value
        out[section] = mapped
    return out
