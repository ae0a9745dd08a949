"""`probe lists update`: Citizen Lab's test lists, downloaded into the cache (CC BY-NC-SA: never vendored).

A download replaces the cached copy only when its header is Citizen Lab's and it parses; the report says
which URLs were added and removed since the last update. `probe run` with no INPUT then measures the cached
global list plus the country list of this network (or of --country).
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx

from ..measure.targets import CITIZENLAB_HEADER
from ..paths import data_dir

CITIZENLAB_BASE = "https://raw.githubusercontent.com/citizenlab/test-lists/master/lists/"
MAX_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ListUpdate:
    name: str
    url: str
    count: int = 0
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    error: str | None = None


def lists_dir(base: Path | None = None) -> Path:
    return (base or data_dir()) / "lists"


def _urls(text: str) -> list[str]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(h.strip().lower() for h in rows[0]) != CITIZENLAB_HEADER:
        raise ValueError(f"not a Citizen Lab list: header {rows[0] if rows else None!r}")
    return [r[0].strip() for r in rows[1:] if r and r[0].strip()]


def update(dest: Path, countries: tuple[str, ...], *, base: str | None = None, verify: str | bool = True,
           timeout: float = 30.0) -> list[ListUpdate]:
    root = (base or os.environ.get("PROBE_LISTS_BASE") or CITIZENLAB_BASE).rstrip("/") + "/"
    names = ["global", *(c.lower() for c in countries)]
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    with httpx.Client(timeout=timeout, follow_redirects=True, verify=verify) as client:
        for name in names:
            if not re.fullmatch(r"[a-z]{2}|global", name):
                out.append(ListUpdate(name, "", error="a country is a two-letter code (e.g. pk)"))
                continue
            url = f"{root}{name}.csv"
            try:
                resp = client.get(url)
                if resp.status_code != 200:
                    raise ValueError(f"HTTP {resp.status_code}")
                if len(resp.content) > MAX_BYTES:
                    raise ValueError("too large")
                text = resp.content.decode("utf-8-sig")
                new = _urls(text)
            except (httpx.HTTPError, ValueError, UnicodeDecodeError) as e:
                kept = ("the cached copy is kept" if (dest / f"{name}.csv").exists() else
                        "there is no cached copy yet")
                out.append(ListUpdate(name, url, error=f"{type(e).__name__}: {e}; {kept}"))
                continue
            path = dest / f"{name}.csv"
            old = set(_urls(path.read_text(encoding="utf-8-sig"))) if path.exists() else set()
            tmp = dest / f".{name}.csv.tmp"
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
            out.append(ListUpdate(name, url, len(new), tuple(sorted(set(new) - old)), tuple(sorted(old - set(new)))))
    return out


def shipped_list() -> str:
    """Our small list, shipped inside the package (never read from the working directory): a wheel has it too."""
    return str(resources.files("probe").joinpath("data/default.txt"))


def run_inputs(base: Path | None, country: str | None) -> list[str]:
    """What `probe run` measures when given no INPUT: the cached Citizen Lab lists (global + country) when
    `probe lists update` fetched them, else our small list."""
    return default_inputs(base, country) or [shipped_list()]


def default_inputs(base: Path | None, country: str | None) -> list[str]:
    """Cached global list plus the country's, if `probe lists update` fetched them; else nothing."""
    directory = lists_dir(base)
    chosen = [directory / "global.csv"]
    if country:
        chosen.append(directory / f"{country.lower()}.csv")
    return [str(p) for p in chosen if p.exists()]
