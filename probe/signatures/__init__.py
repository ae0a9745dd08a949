"""Blockpage, redirect and censor-address signatures: models, loaders, the matcher, and updates.

`load()` gives the set a run uses: our built-in pack plus whatever `probe signatures update` cached.
"""

from __future__ import annotations

from pathlib import Path

from ..paths import data_dir
from .loaders import load_builtin, load_cache, load_pack
from .matcher import Match, SignatureSet
from .model import Signature, SignatureError

__all__ = ["Match", "Signature", "SignatureError", "SignatureSet", "cache_dir", "load"]


def cache_dir(base: Path | None = None) -> Path:
    return (base or data_dir()) / "signatures"


def load(*, builtin: bool = True, cache: Path | None = None,
         packs: tuple[Path, ...] = ()) -> tuple[SignatureSet, list[str]]:
    """Built-in pack first (its ids win on a clash), then extra packs, then the cached public sets."""
    sigs, warnings = load_builtin() if builtin else ([], [])
    for path in packs:
        try:
            more, w = load_pack(path.read_text(encoding="utf-8"), str(path))
        except OSError as e:
            more, w = [], [f"{path}: cannot read: {e.strerror or e}"]
        sigs.extend(more)
        warnings.extend(w)
    directory = cache if cache is not None else cache_dir()
    if directory.is_dir():
        more, w = load_cache(directory)
        sigs.extend(more)
        warnings.extend(w)
    return SignatureSet(sigs), warnings
