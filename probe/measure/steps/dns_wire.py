"""DNS on the wire, for a measured query: writing it, and what its reply says (rcode, TC flag, addresses of the
asked type, CNAMEs, TTL).

Building dnspython's message objects costs more CPU than everything else a query does, so queries are written
here (`question`, `query_wire`: the UDP step and DoH), and the common reply (plain host names, no additional
records) is read straight from the wire by `read_reply`, giving exactly what `parse_reply` gives from
dnspython's message (tests/test_dns_wire.py compares the two on generated replies); anything unusual is left
to dnspython (`read`).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

import dns.exception
import dns.flags
import dns.ipv6
import dns.message
import dns.rcode
import dns.rdatatype

HEADER = struct.Struct("!HHHHHH")  # id, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT
_RD = 0x0100
_RR = struct.Struct("!HHIH")  # type, class, TTL, RDLENGTH
_TC = 0x0200
_A, _CNAME, _SOA, _AAAA = 1, 5, 6, 28
_WANT = {"A": _A, "AAAA": _AAAA}
_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
STRAY = "stray"  # key of the addresses a reply gave for names outside the question's CNAME chain
FAILURES = {"NXDOMAIN": "dns_nxdomain_error", "SERVFAIL": "dns_servfail_error", "REFUSED": "dns_refused_error"}
# Label bytes dnspython writes as they are in a name's text (anything else it escapes).
_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*")


def question(hostname: str, qtype: str) -> bytes:
    """The question section of a query for `hostname` (IDNA, as targets are normalised), lower-cased.

    Written by hand, like the replies' reading: dnspython's message objects cost more than the rest of a query.
    """
    labels = [label.encode("ascii") for label in hostname.rstrip(".").lower().split(".")]
    if not all(0 < len(label) < 64 for label in labels) or sum(len(x) + 1 for x in labels) > 254:
        raise ValueError(f"not a DNS name: {hostname!r}")
    return b"".join(bytes([len(x)]) + x for x in labels) + b"\0" + struct.pack("!HH", _WANT[qtype], 1)


def query_wire(qid: int, question_section: bytes) -> bytes:
    """A recursive query: the header (id `qid`, RD, one question) and the question section."""
    return HEADER.pack(qid, _RD, 1, 0, 0, 0) + question_section


class _Unusual(Exception):
    """Something this reader leaves to dnspython."""


def _name(data: bytes, pos: int) -> tuple[tuple[bytes, ...], int]:
    """The labels of the name at `pos` (compression pointers followed), and the offset after it."""
    labels: list[bytes] = []
    end = -1
    length = 1
    below = pos  # each pointer must point before the last one (and the name): dnspython's rule, no loops
    while True:
        if pos >= len(data):
            raise _Unusual
        size = data[pos]
        if size >= 0xC0:
            if pos + 1 >= len(data):
                raise _Unusual
            if end < 0:
                end = pos + 2
            pos = ((size & 0x3F) << 8) | data[pos + 1]
            if pos >= below:
                raise _Unusual
            below = pos
        elif size >= 0x40:
            raise _Unusual  # extended label types: obsolete
        elif size == 0:
            return tuple(labels), (end if end >= 0 else pos + 1)
        else:
            label = data[pos + 1:pos + 1 + size]
            if len(label) < size or not _PLAIN.issuperset(label):
                raise _Unusual
            labels.append(label)
            length += 1 + size
            if length > 255:
                raise _Unusual
            pos += 1 + size


def read_reply(data: bytes, qtype: str) -> tuple[dict[str, Any], bool] | None:
    """(what dns.parse_reply returns, the TC flag) for a plain reply; None for one dnspython must read."""
    try:
        return _read(data, _WANT[qtype])
    except (_Unusual, struct.error, IndexError, ValueError, OSError):
        return None


def _read(data: bytes, want: int) -> tuple[dict[str, Any], bool]:
    _, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    rcode = _RCODES.get(flags & 0xF)
    if rcode is None or arcount or qdcount != 1 or flags & 0x7800:  # EDNS, odd opcodes: dnspython's
        raise _Unusual
    qname, pos = _name(data, HEADER.size)
    pos += 4  # QTYPE, QCLASS
    # dnspython gathers records into RRsets by owner and type, in order of first appearance, without duplicates.
    rrsets: dict[tuple[tuple[bytes, ...], int], list[str]] = {}
    ttls: dict[tuple[tuple[bytes, ...], int], int] = {}
    for _ in range(ancount):
        owner, pos = _name(data, pos)
        rtype, rclass, ttl, size = _RR.unpack_from(data, pos)
        ttl = 0 if ttl > 0x7FFFFFFF else ttl  # RFC 2181 §8, as dnspython reads it
        pos += _RR.size
        rdata = data[pos:pos + size]
        if len(rdata) < size or rclass != 1:
            raise _Unusual
        if rtype == want == _A and size == 4:
            text = socket.inet_ntop(socket.AF_INET, rdata)
        elif rtype == want == _AAAA and size == 16:
            text = _ipv6(rdata)
        elif rtype == _CNAME:
            labels, after = _name(data, pos)
            if after != pos + size:
                raise _Unusual
            text = ".".join(label.decode("ascii") for label in labels)
        else:
            raise _Unusual  # another type, or a malformed address: dnspython decides what it is
        pos += size
        key = (tuple(label.lower() for label in owner), rtype)
        if rtype == _CNAME:
            rrsets[key] = [text]  # a singleton type: a second CNAME replaces the first, as in dnspython
        elif text not in (records := rrsets.setdefault(key, [])):
            records.append(text)
        ttls[key] = min(ttl, ttls.get(key, ttl))
    for _ in range(nscount):  # the SOA of a negative answer; nothing else is read here
        _, pos = _name(data, pos)
        rtype, rclass, ttl, size = _RR.unpack_from(data, pos)
        pos += _RR.size
        if rtype != _SOA or rclass != 1:
            raise _Unusual
        _, after = _name(data, pos)
        _, after = _name(data, after)
        if after + 20 != pos + size:
            raise _Unusual
        pos += size
    if pos != len(data):
        raise _Unusual  # trailing bytes, or a record cut short
    cname_of = {owner: records[0] for (owner, t), records in rrsets.items() if t == _CNAME}
    chain = _chain(tuple(label.lower() for label in qname), cname_of,
                   lambda n: tuple(n.encode("ascii").split(b".")) if n else ())
    answers = [a for (owner, t), records in rrsets.items() if t == want and owner in chain for a in records]
    stray = [a for (owner, t), records in rrsets.items() if t == want and owner not in chain for a in records]
    cnames = [c for (owner, t), records in rrsets.items() if t == _CNAME and owner in chain for c in records]
    want_ttls = [ttl for (owner, t), ttl in ttls.items() if t == want and owner in chain]
    return _info(rcode, answers, cnames, want_ttls, stray), bool(flags & _TC)


def _chain(qname: Any, cname_of: dict[Any, str], key: Callable[[str], Any]) -> list[Any]:
    """The owner names a reply may answer for: the question's name and the CNAME chain that starts there
    (as dnspython's resolver follows it); records owned by any other name are no answer to this query."""
    chain = [qname]
    while (target := cname_of.get(chain[-1])) is not None and len(chain) <= 16:
        nxt = key(target.lower().rstrip("."))
        if nxt in chain:
            break  # a CNAME loop
        chain.append(nxt)
    return chain


def _info(rcode: str, answers: list[str], cnames: list[str], ttls: list[int], stray: list[str]) -> dict[str, Any]:
    failure = FAILURES.get(rcode)
    if failure is None and rcode != "NOERROR":
        failure = f"unknown_failure: dns rcode {rcode}"
    if failure is None and not answers:
        failure = "dns_no_answer"
    return {"answers": tuple(answers), "cnames": tuple(cnames), "ttl": min(ttls) if ttls else None,
            "rcode": rcode, "failure": failure, STRAY: tuple(stray)}


def fields(info: dict[str, Any]) -> dict[str, Any]:
    """What a reply says, as DnsQuery fields (the stray records are the reader's concern, see `acceptable`)."""
    return {k: v for k, v in info.items() if k != STRAY}


def rejection(data: bytes, info: dict[str, Any]) -> str | None:
    """Why a reply that matched a query's id and question is still no answer to it, or None.

    A reply must have QR set, and addresses owned by the question's name or its CNAME chain: a message that
    fails either is not taken as the answer (dnspython and OONI's netxlite refuse both), but it is kept as
    evidence, since an injector that gets the details wrong still shows that someone forges replies.
    """
    if len(data) > 2 and not data[2] & 0x80:
        return "not a response (QR=0)"
    if info[STRAY] and not info["answers"]:
        return "addresses for another name: " + ", ".join(info[STRAY])
    return None


def _ipv6(raw: bytes) -> str:
    return dns.ipv6.inet_ntoa(raw)  # dnspython's text for an AAAA record


def read(data: bytes, qtype: str) -> tuple[dict[str, Any], bool] | None:
    """(what the reply says, its TC flag); None for bytes that are no DNS message."""
    fast = read_reply(data, qtype)
    if fast is not None:
        return fast
    try:
        msg = dns.message.from_wire(data)
    except (dns.exception.DNSException, ValueError):
        return None  # garbage on the socket is not a reply; keep waiting for a real one
    return parse_reply(msg, qtype), bool(msg.flags & dns.flags.TC)


def parse_reply(reply: dns.message.Message, qtype: str) -> dict[str, Any]:
    """Addresses, CNAME chain, minimum TTL and rcode of a reply; failure when there is no usable answer.
    Only records on the question's name and its CNAME chain answer it; others are kept apart (`STRAY`)."""
    want = dns.rdatatype.from_text(qtype)
    qname = reply.question[0].name.to_text().lower().rstrip(".") if reply.question else ""
    cname_of = {rrset.name.to_text().lower().rstrip("."): rrset[0].to_text() for rrset in reply.answer
                if rrset.rdtype == dns.rdatatype.CNAME and len(rrset)}
    chain = _chain(qname, cname_of, lambda n: n)
    answers: list[str] = []
    stray: list[str] = []
    cnames: list[str] = []
    ttls: list[int] = []
    for rrset in reply.answer:
        owner = rrset.name.to_text().lower().rstrip(".")
        if rrset.rdtype == want:
            (answers if owner in chain else stray).extend(r.to_text() for r in rrset)
            if owner in chain:
                ttls.append(rrset.ttl)
        elif rrset.rdtype == dns.rdatatype.CNAME and owner in chain:
            cnames.extend(r.to_text().rstrip(".") for r in rrset)
    return _info(dns.rcode.to_text(reply.rcode()), answers, cnames, ttls, stray)
