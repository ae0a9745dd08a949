"""Matching every hop of a measurement against thousands of signatures, fast.

All literal patterns (most public regexps are escaped text) go into one Aho-Corasick automaton, so a 512 KiB
body costs one pass whatever the number of signatures; the few true regexps run on their own. Bodies are
matched as bytes (decoded as Latin-1, one character per byte, so patterns are encoded the same way).
Censored Planet patterns may name header lines ("Server: ..."), so a hop is matched as its header lines
followed by its body, as Censored Planet sees a response.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import ahocorasick

from ..analysis.facts import SignatureHit
from ..models import HttpHop, Observations
from .model import Signature


def _latin1(text: str) -> str:
    return text.encode("utf-8").decode("latin-1")


@dataclass(frozen=True, slots=True)
class Match:
    signature: Signature
    where: str  # "body", "header.location", "dns", with the hop number for HTTP: "hop 2 body"
    matched: str = ""  # the DNS answer, for DNS signatures
    chain: str = ""  # the HTTP chain of the hop (see HttpHop.chain)
    page: bool = False  # in the response its chain ends on (not a redirect on the way)


class SignatureSet:
    def __init__(self, signatures: Iterable[Signature]) -> None:
        self.signatures = list(signatures)
        self.by_id: dict[str, Signature] = {}
        for s in self.signatures:
            self.by_id.setdefault(s.id, s)
        self._automaton = ahocorasick.Automaton()
        self._regexps: list[Signature] = []
        self._headers: dict[str, list[Signature]] = {}
        self._dns: dict[str, list[Signature]] = {}
        self._anchored: list[tuple[bytes, Signature]] = []  # body prefix/full: compared with the body alone
        literals: dict[str, list[Signature]] = {}
        for s in self.signatures:
            if s.where == "dns":
                self._dns.setdefault(s.pattern.strip(), []).append(s)
            elif s.where.startswith("header."):
                self._headers.setdefault(s.where.removeprefix("header."), []).append(s)
            elif s.compiled is not None:
                self._regexps.append(s)
            elif s.kind == "contains":
                literals.setdefault(_latin1(s.pattern), []).append(s)
            else:
                self._anchored.append((s.pattern.encode("utf-8"), s))
        for pattern, sigs in literals.items():
            self._automaton.add_word(pattern, sigs)
        self._has_literals = bool(literals)
        if literals:
            self._automaton.make_automaton()

    def __len__(self) -> int:
        return len(self.signatures)

    def match_text(self, data: bytes, body: bytes | None = None) -> list[Signature]:
        """Body signatures in `data` (header lines and body, or a body alone); prefix/full ones in `body`."""
        body = data if body is None else body
        found: dict[str, Signature] = {}
        if self._has_literals:
            for _end, sigs in self._automaton.iter(data.decode("latin-1")):
                for s in sigs:
                    found.setdefault(s.id, s)
        for s in self._regexps:
            assert s.compiled is not None
            if s.compiled.search(data):
                found.setdefault(s.id, s)
        stripped = body.strip()
        for pattern, s in self._anchored:
            if body.startswith(pattern) if s.kind == "prefix" else stripped == pattern.strip():
                found.setdefault(s.id, s)
        return list(found.values())

    def match_header(self, name: str, value: str) -> list[Signature]:
        out = []
        for s in self._headers.get(name.lower(), ()):
            if _value_matches(s, value):
                out.append(s)
        return out

    def match_dns(self, address: str) -> list[Signature]:
        return list(self._dns.get(address, ()))

    def match_hop(self, hop: HttpHop, index: int, *, page: bool = False) -> list[Match]:
        out: list[Match] = []
        label = f"{hop.chain} hop {index}" if hop.chain else f"hop {index}"
        for name, value in hop.headers:
            out.extend(Match(s, f"{label} header.{name}", chain=hop.chain, page=page)
                       for s in self.match_header(name, value))
        head = "".join(f"{_title(k)}: {v}\r\n" for k, v in hop.headers).encode("latin-1", errors="replace")
        out.extend(Match(s, f"{label} body", chain=hop.chain, page=page)
                   for s in self.match_text(head + b"\r\n" + hop.body, hop.body))
        return out

    def check_page(self, body: bytes, headers: Iterable[tuple[str, str]] = (), addresses: Iterable[str] = (),
                   url: str = "") -> tuple[list[Match], bool]:
        """`probe signatures test`: a saved page (with headers, DNS answers) against every signature. The matches,
        false positives first, and whether analysis would call it a blockpage: a censor signature matches and no
        false-positive one does (those are checked first and stop a match, as in `hits`)."""
        hop = HttpHop(url=url, headers=tuple((name.lower(), value) for name, value in headers), body=body)
        matches = self.match_hop(hop, 1)
        for ip in addresses:
            matches.extend(Match(s, "dns", ip) for s in self.match_dns(ip))
        matches.sort(key=lambda m: not m.signature.false_positive)
        server_side = any(m.signature.false_positive for m in matches)
        return matches, not server_side and any(not m.signature.false_positive for m in matches)

    def match(self, obs: Observations) -> list[Match]:
        """Every match in a measurement: each hop's headers and body in every chain, each DNS answer."""
        out: list[Match] = []
        for chain in dict.fromkeys(h.chain for h in obs.http):
            hops = obs.chain(chain)
            for i, hop in enumerate(hops, 1):
                out.extend(self.match_hop(hop, i, page=i == len(hops) and hop.status is not None))
        for q in obs.dns:
            for addr in dict.fromkeys((*q.answers, *(a for late in q.late_answers for a in late.get("answers", ())))):
                out.extend(Match(s, f"dns {q.resolver}", addr) for s in self.match_dns(addr))
        return out

    def hits(self, obs: Observations) -> tuple[SignatureHit, ...]:
        """What analysis consumes: false positives first (they stop a match), then DNS, strong, weak ones.

        One exception to false-positives-first: a false-positive literal found inside a censor signature's own
        literal ("redirect" inside Mobilink's ".../redirect.html?accessurl=") says nothing the censor match
        did not already say, so it does not veto it.
        """
        matches = self.match(obs)
        censor_literals = [m.signature.pattern for m in matches
                           if not m.signature.false_positive and m.signature.compiled is None]
        matches = [m for m in matches if not (m.signature.false_positive and m.signature.compiled is None
                                              and any(m.signature.pattern in c for c in censor_literals))]
        # The earliest layer is the cause: a DNS answer that is a censor's address explains the blockpage after it.
        ordered = sorted(matches, key=lambda m: (not m.signature.false_positive, m.signature.layer != "dns",
                                                 m.signature.weak))
        seen: set[tuple[str, str, bool]] = set()
        out = []
        for m in ordered:
            # The same signature on a redirect and on the final page says two things (see facts._pick_signature).
            if (m.signature.id, m.chain, m.page) in seen:
                continue
            seen.add((m.signature.id, m.chain, m.page))
            s = m.signature
            out.append(SignatureHit(id=s.id, layer=s.layer, where=m.where, matched=m.matched,
                                    server_side=s.false_positive, weak=s.weak, chain=m.chain, page=m.page,
                                    scope=s.scope_class))
        return tuple(out)


def _title(name: str) -> str:
    return "-".join(p.capitalize() for p in name.split("-"))


def _value_matches(s: Signature, value: str) -> bool:
    if s.compiled is not None:
        return s.compiled.search(value.encode("utf-8", errors="replace")) is not None
    if s.kind == "contains":
        return s.pattern in value
    if s.kind == "prefix":
        return value.startswith(s.pattern)
    return value.strip() == s.pattern.strip()
