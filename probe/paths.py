"""Where probe keeps downloaded data (signature sets, lists): $PROBE_DATA_DIR, else the XDG data directory."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    if env := os.environ.get("PROBE_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "probe"
