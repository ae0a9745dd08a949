"""The wire reader of DNS replies gives exactly what dnspython's message gives, or leaves the reply to it."""

from __future__ import annotations

import struct

import dns.exception
import dns.flags
import dns.message
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.measure.steps.dns import parse_reply
from probe.measure.steps.dns_wire import read_reply

# Mostly plain labels (read here), sometimes ones dnspython escapes in text (left to it).
LABELS = st.sampled_from([b"a", b"B", b"cdn", b"www", b"x-1", b"_srv", b"a", b"cdn", b"\xc3\xa9", b"a.b"])
# A pointer back to the question name, and pointers forward or beyond the message, which dnspython refuses.
POINTERS = st.sampled_from([b"\xc0\x0c", b"\xc0\x0c", b"\xc0\x0c", b"\xc0\x30", b"\xc0\xff"])
NAME = st.lists(LABELS, min_size=0, max_size=4)


def _wire_name(labels: list[bytes]) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


@st.composite
def replies(draw) -> tuple[bytes, str]:
    qtype = draw(st.sampled_from(["A", "AAAA"]))
    qname = draw(NAME.filter(bool))
    flags = 0x8180 | draw(st.sampled_from([0, 0, 0, 1, 2, 3, 5, 9])) | draw(st.sampled_from([0, 0, 0x0200]))
    records = []
    for _ in range(draw(st.integers(0, 6))):
        owner = draw(st.one_of(POINTERS, NAME.map(_wire_name)))
        rtype = draw(st.sampled_from([1, 1, 28, 28, 5, 16]))
        if rtype == 1:
            rdata = draw(st.sampled_from([b"\x01\x02\x03\x04", b"\xc6\x12\x00\x01", b"\x01\x02"]))
        elif rtype == 28:
            rdata = draw(st.sampled_from([bytes(16), b"\x20\x01\x0d\xb8" + bytes(11) + b"\x01",
                                          b"\x00" * 10 + b"\xff\xff\x01\x02\x03\x04", b"\x01" * 15]))
        elif rtype == 5:
            rdata = draw(st.one_of(POINTERS, NAME.map(_wire_name)))
        else:
            rdata = b"\x03txt"
        ttl = draw(st.one_of(st.integers(0, 2**31 - 1), st.integers(2**31, 2**32 - 1)))  # the latter: read as 0
        records.append(owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata)
    authority = []
    if draw(st.booleans()):
        soa = _wire_name([b"ns"]) + b"\xc0\x0c" + bytes(20)
        authority.append(b"\xc0\x0c" + struct.pack("!HHIH", 6, 1, 60, len(soa)) + soa)
    header = struct.pack("!HHHHHH", 0x1234, flags, 1, len(records), len(authority), 0)
    question = _wire_name(qname) + struct.pack("!HH", 1 if qtype == "A" else 28, 1)
    data = header + question + b"".join(records) + b"".join(authority)
    data += draw(st.sampled_from([b"", b"", b"", b"\0", b"junk"]))
    cut = draw(st.sampled_from([None, None, None, -1, -3]))
    return (data[:cut] if cut else data), qtype


def _by_dnspython(data: bytes, qtype: str):
    try:
        msg = dns.message.from_wire(data)
    except (dns.exception.DNSException, ValueError):
        return None
    return parse_reply(msg, qtype), bool(msg.flags & dns.flags.TC)


@settings(max_examples=3000, deadline=None)
@given(replies())
def test_the_wire_reader_agrees_with_dnspython_whenever_it_reads_a_reply(case):
    data, qtype = case
    ours = read_reply(data, qtype)
    if ours is not None:
        assert ours == _by_dnspython(data, qtype)


def test_the_wire_reader_reads_the_common_replies_itself():
    for qtype, rdtype, address in (("A", "A", "198.18.0.7"), ("AAAA", "AAAA", "2001:db8::7")):
        query = dns.message.make_query("www.Example.test", qtype)
        for rcode, answers in ((0, [address]), (3, []), (0, [])):
            reply = dns.message.make_response(query)
            reply.set_rcode(rcode)
            if answers:
                reply.answer.append(dns.rrset.from_text("www.example.test.", 300, "IN", "CNAME", "cdn.example.net."))
                reply.answer.append(dns.rrset.from_text("cdn.example.net.", 60, "IN", rdtype, *answers))
            else:
                reply.authority.append(dns.rrset.from_text("example.test.", 60, "IN", "SOA",
                                                           "ns.example.test. admin.example.test. 1 2 3 4 5"))
            data = reply.to_wire()
            ours = read_reply(data, qtype)
            assert ours is not None, (qtype, rcode, answers)
            assert ours == _by_dnspython(data, qtype)
