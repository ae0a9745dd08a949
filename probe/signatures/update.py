"""`probe signatures update`: fetch the public sets into the cache, validated before they replace the old copy.

The sources are public repositories (OONI's blocking-fingerprints, Censored Planet's analysis assets). Both
bases are overridable (options or environment) so tests and mirrors never depend on them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import httpx

from .loaders import CACHE_FILES

OONI_BASE = "https://raw.githubusercontent.com/ooni/blocking-fingerprints/main/"
CP_BASE = "https://raw.githubusercontent.com/censoredplanet/censoredplanet-analysis/master/pipeline/assets/"
MAX_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class UpdateResult:
    name: str
    url: str
    loaded: int = 0
    warnings: tuple[str, ...] = ()
    error: str | None = None


def sources(ooni_base: str | None = None, cp_base: str | None = None) -> dict[str, str]:
    ooni = ooni_base or os.environ.get("PROBE_OONI_FINGERPRINTS_BASE") or OONI_BASE
    cp = cp_base or os.environ.get("PROBE_CP_SIGNATURES_BASE") or CP_BASE
    ooni, cp = ooni.rstrip("/") + "/", cp.rstrip("/") + "/"
    return {name: (ooni if name.startswith("fingerprints_") else cp) + name for name in CACHE_FILES}


def update(dest: Path, *, ooni_base: str | None = None, cp_base: str | None = None,
           verify: str | bool = True, timeout: float = 30.0) -> list[UpdateResult]:
    dest.mkdir(parents=True, exist_ok=True)
    results = []
    with httpx.Client(timeout=timeout, follow_redirects=True, verify=verify) as client:
        for name, url in sources(ooni_base, cp_base).items():
            results.append(_fetch_one(client, name, url, dest))
    return results


def _fetch_one(client: httpx.Client, name: str, url: str, dest: Path) -> UpdateResult:
    try:
        with client.stream("GET", url) as resp:
            if resp.status_code != 200:
                return UpdateResult(name, url, error=f"HTTP {resp.status_code}")
            data = bytearray()
            for chunk in resp.iter_bytes():
                data += chunk
                if len(data) > MAX_BYTES:
                    return UpdateResult(name, url, error=f"larger than {MAX_BYTES} bytes")
    except httpx.HTTPError as e:
        return UpdateResult(name, url, error=f"{type(e).__name__}: {e}")
    text = data.decode("utf-8", errors="replace")
    sigs, warnings = CACHE_FILES[name](text, url)
    if not sigs:
        return UpdateResult(name, url, warnings=tuple(warnings), error="no usable signature in the download; "
                            "the cached copy is kept")
    tmp = dest / f".{name}.tmp"
    tmp.write_bytes(bytes(data))
    tmp.replace(dest / name)  # atomic: a run reading the cache never sees half a file
    return UpdateResult(name, url, loaded=len(sigs), warnings=tuple(warnings))
