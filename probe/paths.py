"""Where probe keeps things: the database (one rule for every command) and downloaded data (signatures, lists)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    if env := os.environ.get("PROBE_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "probe"


DEFAULT_DATABASE = "results/probe.db"


def database_path(explicit: str | Path | None, from_config: Path | None = None) -> Path:
    """The database every command uses: --db, else $PROBE_DB, else `db` in probe.toml, else results/probe.db.

    Relative paths are relative to the working directory (the config's are made absolute when it is read).
    """
    for candidate in (explicit, os.environ.get("PROBE_DB") or None, from_config):
        if candidate:
            return Path(candidate).expanduser()
    return Path(DEFAULT_DATABASE)
