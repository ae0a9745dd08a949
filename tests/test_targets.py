"""Reading lists: normalisation, Citizen Lab CSV, and one clear warning per bad line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.measure.targets import TargetError, normalise, parse_list, read_inputs


@pytest.mark.parametrize("raw, url, host, port", [
    ("HTTP://Example.COM", "http://example.com/", "example.com", 80),
    ("https://example.com:443/a?b=1#frag", "https://example.com/a?b=1", "example.com", 443),
    ("http://example.com:8080/x", "http://example.com:8080/x", "example.com", 8080),
    ("https://bücher.example/", "https://xn--bcher-kva.example/", "xn--bcher-kva.example", 443),
    ("http://example.com./", "http://example.com/", "example.com", 80),
    ("http://[2001:DB8::1]:8080/", "http://[2001:db8::1]:8080/", "2001:db8::1", 8080),
    ("  http://203.0.113.9/  ", "http://203.0.113.9/", "203.0.113.9", 80),
])
def test_normalise(raw, url, host, port):
    t = normalise(raw)
    assert (t.url, t.hostname, t.port) == (url, host, port)


@pytest.mark.parametrize("raw, reason", [
    ("example.com", "no scheme"),
    ("ftp://example.com/", "unsupported scheme"),
    ("http://exa mple.com/", "spaces"),
    ("http://example.com/\x07", "control"),
    ("http://user:pw@example.com/", "user name"),
    ("http://example.com:99999/", "invalid port"),
    ("http://" + "a" * 3000 + ".com/", "longer than"),
    ("http://xn--a.example/", "internationalised"),
    ("http://bad_\u2603..com/", "invalid"),
    ("http:///path", "no host"),
])
def test_bad_urls_say_why(raw, reason):
    with pytest.raises(TargetError, match=reason):
        normalise(raw)


def test_citizenlab_csv_with_bom_crlf_and_broken_rows(tmp_path):
    text = ("\ufeffurl,category_code,category_description,date_added,source,notes\r\n"
            "http://a.example/,NEWS,News Media,2020-01-01,x,\r\n"
            "http://b.example/,HUMR,Human Rights,2020-01-01,x\r\n"  # a column short
            "a.example,NEWS,News Media,2020-01-01,x,\r\n"
            "https://c.example/,GRP,Social Networking,2020-01-01,x,\"note, with comma\"\r\n"
            "http://A.example,POLR,Political,2020-01-01,x,\r\n")  # duplicate of the first once normalised
    path = tmp_path / "pk.csv"
    path.write_bytes(text.encode("utf-8"))
    targets, warnings = read_inputs([str(path)])
    assert [(t.url, t.category) for t in targets] == [("http://a.example/", "NEWS"), ("https://c.example/", "GRP")]
    assert [(w.line, w.message.split(" ")[0]) for w in warnings] == [(3, "expected"), (4, "no")]
    assert str(warnings[0]).startswith(f"{path}:3:")


def test_csv_without_url_column_is_one_warning():
    targets, warnings = parse_list("a,b\n1,2\n", "x.csv", csv_format=True)
    assert not targets and len(warnings) == 1 and "no 'url' column" in warnings[0].message


def test_real_citizenlab_lists_parse(shared_data):
    for name, at_least in (("citizenlab-global.csv", 1500), ("citizenlab-pk.csv", 600)):
        targets, warnings = read_inputs([str(shared_data / name)])
        assert len(targets) >= at_least
        assert len(warnings) < 10, warnings[:5]
        assert all(t.category for t in targets)


@given(st.text(max_size=300))
def test_normalise_never_crashes(raw):
    try:
        t = normalise(raw)
    except TargetError:
        return
    assert normalise(t.url) == t  # idempotent
    assert t.url.startswith(("http://", "https://")) and t.hostname.isascii()


hosts = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9]{0,10}){1,3}", fullmatch=True)


@given(hosts, st.sampled_from(["http", "https"]), st.integers(1, 65535), st.from_regex(r"(/[a-z0-9._~-]*){0,4}",
                                                                                       fullmatch=True))
def test_normalise_keeps_scheme_host_port_path(host, scheme, port, path):
    t = normalise(f"{scheme.upper()}://{host.upper()}:{port}{path}")
    assert t.scheme == scheme and t.hostname == host and t.port == port
    assert t.url.endswith(path or "/")
