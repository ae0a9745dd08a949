"""Comparing the probe's page with the control's, by OONI Web Connectivity's rules (ts-017).

Dynamic pages must not become false positives, so we compare what is stable across loads (status, title
words, uncommon header names, body size within 30%), never the bytes alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Headers nearly every server sends; sharing them says nothing about being the same site.
COMMON_HEADERS = frozenset({
    "date", "content-type", "server", "cache-control", "vary", "set-cookie", "location", "expires", "x-powered-by",
    "content-encoding", "last-modified", "accept-ranges", "pragma", "x-frame-options", "etag",
    "x-content-type-options", "age", "via", "p3p", "x-xss-protection", "content-language", "cf-ray",
    "strict-transport-security", "link", "x-varnish", "connection", "content-length", "transfer-encoding",
    "keep-alive",
})
BODY_PROPORTION = 0.7
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class HttpComparison:
    status_match: bool | None
    body_length_match: bool | None
    headers_match: bool | None
    title_match: bool | None
    body_identical: bool

    @property
    def consistent(self) -> bool:
        """OONI: a diff unless the status matches and at least one of body, headers, title does."""
        if self.body_identical:
            return True
        if self.status_match is False:
            return False
        return bool(self.body_length_match or self.headers_match or self.title_match)


def uncommon(names: Iterable[str]) -> set[str]:
    return {n.lower() for n in names} - COMMON_HEADERS


def title_words(title: str | None) -> set[str]:
    return {w.lower() for w in _WORD.findall(title or "") if len(w) >= 5}


def compare(*, status: int | None, body_length: int | None, header_names: Iterable[str], title: str | None,
            body_sha256: str | None, c_status: int | None, c_body_length: int | None,
            c_header_names: Iterable[str], c_title: str | None, c_body_sha256: str | None) -> HttpComparison:
    status_match = None if not c_status or status is None else status == c_status
    body_match = None
    if body_length and c_body_length:
        body_match = min(body_length, c_body_length) / max(body_length, c_body_length) > BODY_PROPORTION
    ours, theirs = uncommon(header_names), uncommon(c_header_names)
    headers_match = None if not ours and not theirs else bool(ours & theirs)
    c_words = title_words(c_title)
    title_match = None if not c_words else c_words <= title_words(title)
    identical = body_sha256 is not None and body_sha256 == c_body_sha256
    return HttpComparison(status_match, body_match, headers_match, title_match, identical)
