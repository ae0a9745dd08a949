"""Loading signature sets: OONI's blocking-fingerprints CSV, Censored Planet's JSON Lines, our built-in pack.

Strict about broken rows and forgiving about the rest: a bad row becomes a warning naming the file and line,
and every other row loads.
"""

from __future__ import annotations

import csv
import io
import json
from importlib import resources
from pathlib import Path

from .model import Signature, SignatureError, make

OONI_COLUMNS = ("name", "scope", "other_names", "location_found", "pattern_type", "pattern", "confidence_no_fp",
                "expected_countries", "source", "exp_url", "notes")


def _split(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def load_ooni_csv(text: str, origin: str) -> tuple[list[Signature], list[str]]:
    sigs: list[Signature] = []
    warnings: list[str] = []
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header[: len(OONI_COLUMNS)]) != OONI_COLUMNS:
        return [], [f"{origin}:1: not an OONI fingerprints file (header {header!r})"]
    for row in reader:
        line = reader.line_num
        if not any(row):
            continue
        if len(row) != len(OONI_COLUMNS):
            warnings.append(f"{origin}:{line}: expected {len(OONI_COLUMNS)} columns, found {len(row)}")
            continue
        r = dict(zip(OONI_COLUMNS, row, strict=True))
        try:
            conf = int(r["confidence_no_fp"]) if r["confidence_no_fp"].strip() else None
            sigs.append(make(
                id=r["name"].strip(), where=r["location_found"].strip().lower(), kind=r["pattern_type"].strip(),
                pattern=r["pattern"], scope=r["scope"].strip(), countries=_split(r["expected_countries"]),
                confidence=conf, source=r["source"].strip() or "ooni", name=r["notes"].strip(),
                other_names=_split(r["other_names"]), origin=f"{origin}:{line}",
            ))
        except (SignatureError, ValueError) as e:
            warnings.append(f"{origin}:{line}: {r['name'] or '?'}: {e}")
    return sigs, warnings


def load_censoredplanet_jsonl(text: str, origin: str, *, false_positive: bool) -> tuple[list[Signature], list[str]]:
    """Censored Planet: {"fingerprint", "pattern"} a line, a regexp over the body (and its header lines)."""
    sigs: list[Signature] = []
    warnings: list[str] = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            fp, pattern = row["fingerprint"], row["pattern"]
            if not isinstance(fp, str) or not isinstance(pattern, str):
                raise SignatureError("fingerprint and pattern must be strings")
            sigs.append(make(id=f"cp.{fp}", where="body", kind="regexp", pattern=pattern,
                             scope="fp" if false_positive else _cp_scope(fp), source="censored planet",
                             origin=f"{origin}:{line_no}"))
        except (ValueError, KeyError, TypeError, SignatureError) as e:
            warnings.append(f"{origin}:{line_no}: {type(e).__name__}: {e}")
    return sigs, warnings


def _cp_scope(fingerprint: str) -> str:
    """Censored Planet ids start with a letter then the scope: b_nat_..., c_isp_..., a_prod_..."""
    parts = fingerprint.split("_")
    return parts[1] if len(parts) > 2 and parts[1] in ("nat", "isp", "prod", "inst", "vbw") else ""


def load_pack(text: str, origin: str) -> tuple[list[Signature], list[str]]:
    """A pack in our own JSON format: {"signatures": [{"id", "where", "kind", "pattern", ...}]}."""
    try:
        doc = json.loads(text)
        rows = doc["signatures"]
        if not isinstance(rows, list):
            raise TypeError("'signatures' must be a list")
    except (ValueError, KeyError, TypeError) as e:
        return [], [f"{origin}: not a signature pack: {e}"]
    sigs: list[Signature] = []
    warnings: list[str] = []
    for i, row in enumerate(rows):
        try:
            sigs.append(make(id=row["id"], where=row["where"], kind=row["kind"], pattern=row["pattern"],
                             scope=row.get("scope", ""), countries=tuple(row.get("countries", ())),
                             confidence=row.get("confidence"), source=row.get("source", ""),
                             name=row.get("name", ""), origin=f"{origin}#{i}"))
        except (KeyError, TypeError, SignatureError) as e:
            warnings.append(f"{origin}#{i}: {type(e).__name__}: {e}")
    return sigs, warnings


def load_builtin() -> tuple[list[Signature], list[str]]:
    """The pack we write ourselves (probe/signatures/builtin.json), each signature with its source."""
    return load_pack(resources.files(__package__).joinpath("builtin.json").read_text(encoding="utf-8"),
                     "builtin.json")


# The cache layout that `probe signatures update` writes, and how each file is read.
CACHE_FILES = {
    "fingerprints_http.csv": lambda text, origin: load_ooni_csv(text, origin),
    "fingerprints_dns.csv": lambda text, origin: load_ooni_csv(text, origin),
    "blockpage_signatures.json": lambda text, origin: load_censoredplanet_jsonl(text, origin, false_positive=False),
    "false_positive_signatures.json": lambda text, origin: load_censoredplanet_jsonl(text, origin,
                                                                                      false_positive=True),
}


def load_file(path: Path) -> tuple[list[Signature], list[str]]:
    loader = CACHE_FILES.get(path.name)
    if loader is None:
        return [], [f"{path}: unknown signature file"]
    return loader(path.read_text(encoding="utf-8", errors="replace"), str(path))


def load_cache(directory: Path) -> tuple[list[Signature], list[str]]:
    sigs: list[Signature] = []
    warnings: list[str] = []
    for name in CACHE_FILES:
        path = directory / name
        if path.exists():
            s, w = load_file(path)
            sigs.extend(s)
            warnings.extend(w)
    return sigs, warnings
