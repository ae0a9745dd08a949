"""Signatures: what a censor's blockpage, redirect or DNS answer looks like, as data with stable ids.

A signature says where it matches (`body`, `header.<name>`, `dns`), how (`contains`, `prefix`, `full`,
`regexp`, as in OONI's blocking-fingerprints) and what it means: `scope` follows OONI (nat, isp, prod, inst,
vbw = vague blocking words, fp = a server-side page such as a CDN challenge or a geo-block). False-positive
signatures are checked first and stop a match (Censored Planet's order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

Kind = Literal["contains", "prefix", "full", "regexp"]
KINDS: tuple[Kind, ...] = ("contains", "prefix", "full", "regexp")
_REGEX_META = set(".^$*+?{}[]|()")
# Scope classes, from OONI's scopes: who is behind a blockpage. "opt-in": a filter the subscriber chose.
SCOPES = {"nat": "state", "isp": "isp", "inst": "institution", "prod": "product", "optin": "opt-in",
          "fp": "false-positive"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Signature:
    id: str
    where: str  # "body", "header.<name>" (lower case) or "dns"
    kind: Kind
    pattern: str
    scope: str = ""
    countries: tuple[str, ...] = ()
    confidence: int | None = None
    source: str = ""
    name: str = ""
    other_names: tuple[str, ...] = ()
    origin: str = ""  # the file (and line) it was loaded from
    compiled: re.Pattern[bytes] | None = field(default=None, compare=False, repr=False)

    @property
    def false_positive(self) -> bool:
        return self.scope == "fp"

    @property
    def weak(self) -> bool:
        """Vague words ("Access denied"): evidence only next to a control that shows a different page."""
        return self.scope == "vbw"

    @property
    def scope_class(self) -> str:
        """Who answers for what this signature shows (SCOPES): what counts set against a regulator's keep apart."""
        text = " ".join((self.id, self.name, *self.other_names)).lower().replace("-", "").replace("_", "")
        if self.scope == "fp":
            return "false-positive"
        if self.scope == "optin" or "optin" in text:
            return "opt-in"  # OONI files opt-in filters under `isp`; its names and notes say "optin"
        return SCOPES.get(self.scope, "")

    @property
    def layer(self) -> str:
        return "dns" if self.where == "dns" else "http"


class SignatureError(ValueError):
    pass


def as_literal(pattern: str) -> str | None:
    """The plain string a regexp stands for, if it has no regexp operators (most public ones are escaped text)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 < len(pattern) and not pattern[i + 1].isalnum():
                out.append(pattern[i + 1])
                i += 2
                continue
            return None
        if c in _REGEX_META:
            return None
        out.append(c)
        i += 1
    return "".join(out)


def make(**kw: object) -> Signature:
    """Validate and, for regexps, compile once (over bytes: bodies are matched undecoded)."""
    sig = Signature(**kw)  # type: ignore[arg-type]
    if sig.kind not in KINDS:
        raise SignatureError(f"unknown pattern type {sig.kind!r}")
    if not sig.pattern:
        raise SignatureError("empty pattern")
    if not (sig.where in ("body", "dns") or sig.where.startswith("header.")):
        raise SignatureError(f"unknown location {sig.where!r}")
    if sig.kind == "regexp":
        literal = as_literal(sig.pattern)
        if literal is not None:
            return replace(sig, kind="contains", pattern=literal)
        try:
            compiled = re.compile(sig.pattern.encode("utf-8"), re.DOTALL)
        except re.error as e:
            raise SignatureError(f"bad regular expression {sig.pattern[:60]!r}: {e}") from None
        return replace(sig, compiled=compiled)
    return sig
