"""Signatures: the real Pakistani blockpage is named, public sets load strictly and match what they describe,
server-side pages are never called censorship, and ordinary pages match nothing."""

from __future__ import annotations

import csv
import functools
import http.server
import io
import shutil
import subprocess
import sys
import threading

import pytest

from probe.analysis import analyse
from probe.models import ControlResult, HttpHop, Observations, Target
from probe.signatures import SignatureSet, load
from probe.signatures.loaders import load_builtin, load_censoredplanet_jsonl, load_ooni_csv
from probe.signatures.update import update
from tests.corpus import pages

PK_PAGE = "pk-surf-safely-blockpage-censoredplanet-quack-2021-05-31.html"
CACHE_NAMES = {"fingerprints_http.csv": "fingerprints_http.csv", "fingerprints_dns.csv": "fingerprints_dns.csv",
               "censoredplanet-assets-blockpage_signatures.json": "blockpage_signatures.json",
               "censoredplanet-assets-false_positive_signatures.json": "false_positive_signatures.json"}
TARGET = Target(url="http://site.example/", hostname="site.example", scheme="http", port=80)


def hop_obs(body: bytes = b"", headers: tuple[tuple[str, str], ...] = (), status: int = 200,
            control: ControlResult | None = None) -> Observations:
    import hashlib

    hop = HttpHop(url=TARGET.url, ip="203.0.113.7", status=status, headers=headers, body=body,
                  body_length=len(body), body_sha256=hashlib.sha256(body).hexdigest(),
                  location=dict(headers).get("location"))
    return Observations(target=TARGET, http=(hop,), control=control)


def different_control() -> ControlResult:
    return ControlResult(source="test", http_status=200, http_title="The real site",
                         http_headers={"x-real-site": "1"}, http_body_length=90_000)


@pytest.fixture(scope="module")
def served_sets(tmp_path_factory):
    """The public sets, served from a local HTTP server, downloaded with `update` into a cache."""
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("mirror")
    for src, dst in CACHE_NAMES.items():
        shutil.copy(SHARED_DATA / src, root / dst)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    cache = tmp_path_factory.mktemp("cache")
    results = update(cache, ooni_base=base, cp_base=base)
    server.shutdown()
    assert [r.error for r in results] == [None] * 4
    return cache, results


def test_real_pk_blockpage_by_builtin_pack_alone(shared_data):
    sigs, warnings = load_builtin()
    assert not warnings
    body = (shared_data / PK_PAGE).read_bytes()
    assert {s.id for s in SignatureSet(sigs).match_text(body)} == {"probe.pk.surf-safely",
                                                                    "probe.pk.surf-safely-banner"}
    v = analyse(hop_obs(body), SignatureSet(sigs).hits)
    assert (v.status, v.layer, v.detail, v.fingerprint) == ("blocked", "http", "http/blockpage:probe.pk.surf-safely",
                                                             "probe.pk.surf-safely")


def test_real_pk_blockpage_by_downloaded_sets(shared_data, served_sets):
    cache, results = served_sets
    assert sum(r.loaded for r in results) > 2900
    sigset, warnings = load(builtin=False, cache=cache)
    assert not warnings
    found = {s.id for s in sigset.match_text((shared_data / PK_PAGE).read_bytes())}
    assert "cp.b_nat_pak_isp_common_blockpage" in found


def test_every_literal_ooni_fingerprint_matches_what_it_describes(shared_data):
    text = (shared_data / "fingerprints_http.csv").read_text()
    sigs, warnings = load_ooni_csv(text, "fingerprints_http.csv")
    assert not warnings
    sigset = SignatureSet(sigs)
    rows = list(csv.DictReader(io.StringIO(text)))
    checked = fps = optins = 0
    by_id = {sig.id: sig for sig in sigs}
    for row in rows:
        if row["pattern_type"] == "regexp":
            continue
        pattern, where = row["pattern"], row["location_found"]
        if where == "body":
            body = pattern.encode() if row["pattern_type"] != "contains" else \
                f"<html><body><p>Notice</p>{pattern}<p>end</p></body></html>".encode()
            obs = hop_obs(body)
        else:
            name = where.removeprefix("header.")
            value = pattern if row["pattern_type"] != "contains" else f"x {pattern} y"
            obs = hop_obs(b"<html></html>", headers=((name, value),), status=302 if name == "location" else 200)
        control = different_control() if row["scope"] == "vbw" else None
        obs = Observations(target=obs.target, http=obs.http, control=control)
        v = analyse(obs, sigset.hits)
        checked += 1
        if row["scope"] == "fp":
            fps += 1
            assert v.status != "blocked" and v.detail.startswith("http/server-side:"), (row["name"], v)
        elif "optin" in (row["name"] + row["other_names"] + row["notes"]).lower().replace("-", "").replace("_", ""):
            optins += 1  # a filter the subscriber chose: filtered, never counted as blocking
            assert v.status == "filtered" and v.detail.startswith("http/opt-in:") and v.scope == "opt-in", row
        elif v.status == "filtered":  # the same page text as an opt-in filter's (OONI lists SKT's twice)
            assert by_id[v.fingerprint or ""].scope_class == "opt-in", (row["name"], v.fingerprint)
        else:
            assert v.status == "blocked" and v.detail.startswith("http/blockpage:"), (row["name"], v.evidence)
    assert checked > 1700 and fps > 460 and optins >= 20
    assert sum(s.false_positive for s in sigs) == 475  # every fp row, regexps included


def test_ordinary_pages_match_no_censor_signature(served_sets):
    cache, _ = served_sets
    sigset, _ = load(cache=cache)
    corpus = pages()
    assert len(corpus) >= 100
    talks_about_blocking = sum(b"block" in body or b"censor" in body or b"restrict" in body for _, body in corpus)
    assert talks_about_blocking >= 30
    for name, body in corpus:
        obs = hop_obs(body, headers=(("content-type", "text/html; charset=utf-8"), ("server", "nginx")))
        matched = [m.signature.id for m in sigset.match(obs) if not m.signature.false_positive]
        assert matched == [], (name, matched)
        assert analyse(obs, sigset.hits).status == "ok", name


def test_a_page_the_control_confirms_is_not_a_blockpage():
    """A news article quoting the national blockpage word for word is the site's own page."""
    sigs, _ = load_builtin()
    body = (b"<html><head><title>Why the regulator blocks sites</title></head><body><p>Users see a page saying"
            b" the site 'contains content that is prohibited for viewership from within Pakistan'.</p>"
            + b"<p>More reporting.</p>" * 200 + b"</body></html>")
    same = ControlResult(source="test", http_status=200, http_title="Why the regulator blocks sites",
                         http_headers={}, http_body_length=len(body))
    assert analyse(hop_obs(body, control=same), SignatureSet(sigs).hits).status == "ok"
    assert analyse(hop_obs(body), SignatureSet(sigs).hits).status == "blocked"  # without control, it would be


def test_broken_rows_are_named_and_the_rest_load():
    header = "name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,expected_countries," \
             "source,exp_url,notes\n"
    text = header + ("good_1,isp,,body,contains,Blocked by ISP X,5,PK,ooni,,\n"
                     "bad_type,isp,,body,glob,x*,5,,ooni,,\n"
                     "bad_regex,isp,,body,regexp,(unclosed,5,,ooni,,\n"
                     "short,isp,,body\n"
                     "bad_where,isp,,cookie,contains,x,5,,ooni,,\n"
                     "good_2,nat,,header.location,prefix,http://block.example/,5,,ooni,,\n")
    sigs, warnings = load_ooni_csv(text, "f.csv")
    assert [s.id for s in sigs] == ["good_1", "good_2"]
    assert [w.split(":")[1] for w in warnings] == ["3", "4", "5", "6"]
    assert "glob" in warnings[0] and "regular expression" in warnings[1] and "columns" in warnings[2]
    cp, cp_warn = load_censoredplanet_jsonl('{"fingerprint":"a_isp_x","pattern":"ok"}\nnot json\n'
                                            '{"fingerprint":"b","pattern":"(bad"}\n', "cp.json", false_positive=False)
    assert [s.id for s in cp] == ["cp.a_isp_x"] and [w.split(":")[1] for w in cp_warn] == ["2", "3"]


def test_failed_download_keeps_the_cache(tmp_path):
    from tests.conftest import closed_port

    (tmp_path / "fingerprints_dns.csv").write_text("keep me")
    dead = f"http://127.0.0.1:{closed_port()}/"
    results = update(tmp_path, ooni_base=dead, cp_base=dead, timeout=2)
    assert all(r.error for r in results)
    assert (tmp_path / "fingerprints_dns.csv").read_text() == "keep me"


def test_dns_censor_ip_and_redirect_location():
    sigs, _ = load_builtin()
    sigset = SignatureSet(sigs)
    from probe.models import DnsQuery

    q = DnsQuery(resolver="system:192.0.2.1:53", engine="udp", hostname="site.example", query_type="A",
                 answers=("203.82.48.83",), rcode="NOERROR")
    v = analyse(Observations(target=TARGET, dns=(q,)), sigset.hits)
    assert (v.status, v.detail) == ("blocked", "dns/censor-ip:probe.pk.nayatel-dns-surfsafely")
    redirect = hop_obs(b"", headers=(("location", "http://119.73.65.87:8080/redirect.html?accessurl=x"),),
                       status=302)
    v = analyse(redirect, sigset.hits)
    assert (v.status, v.detail) == ("blocked", "http/blockpage:probe.pk.mobilink-redirect-location")


def _page(url: str, body: bytes, *, status: int = 200, title: str | None = None, location: str | None = None,
          **kw) -> HttpHop:
    import hashlib

    headers = (("location", location),) if location else (("content-type", "text/html"),)
    return HttpHop(url=url, ip="203.0.113.7", status=status, headers=headers, location=location, body=body,
                   body_length=len(body), body_sha256=hashlib.sha256(body).hexdigest(), title=title, **kw)


def test_an_injected_redirect_is_named_even_when_the_notice_is_as_long_as_the_page():
    """Mobilink style: a 302 to a notice on another host, whose length is within 30% of the real page."""
    real = ControlResult(source="test", http_status=200, http_title="Daily News Today", http_body_length=1000,
                         http_headers={"x-news": "1"})
    notice = b"<html><head><title>Access denied</title></head><body>" + b"x" * 900 + b"</body></html>"
    loc = "http://119.73.65.87:8080/redirect.html?accessurl=site.example/"
    obs = Observations(target=TARGET, control=real, http=(
        _page(TARGET.url, b"", status=302, location=loc),
        _page(loc, notice, title="Access denied")))
    v = analyse(obs, SignatureSet(load_builtin()[0]).hits)
    assert (v.status, v.detail) == ("blocked", "http/blockpage:probe.pk.mobilink-redirect-location"), v.evidence
    # The same redirect to a host no signature knows: a different title on another host is a difference.
    other = "http://notice.example/denied.html"
    obs = Observations(target=TARGET, control=real, http=(
        _page(TARGET.url, b"", status=302, location=other), _page(other, notice, title="Access denied")))
    v = analyse(obs, SignatureSet(load_builtin()[0]).hits)
    assert (v.status, v.detail, v.rule) == ("anomaly", "http/diff", "http-diff"), v.evidence


def test_a_false_positive_signature_on_a_redirect_does_not_speak_for_the_chain(shared_data):
    """A server's default page on a 301, then a certificate that is bad for everyone: down, not server-side."""
    text = (shared_data / "censoredplanet-assets-false_positive_signatures.json").read_text()
    fps, _ = load_censoredplanet_jsonl(text, "fp.json", false_positive=True)
    sigset = SignatureSet([*load_builtin()[0], *fps])
    body = b"<html><body><h1>Moved</h1><p><em>Thank you for using nginx.</em></p></body></html>"
    to = "https://site.example/"
    broken = ControlResult(source="test", http_failure="ssl_invalid_hostname")
    hops = (_page(TARGET.url, body, status=301, location=to),
            HttpHop(url=to, failure="ssl_invalid_hostname", failed_step="tls"))
    assert any(h.server_side for h in sigset.hits(Observations(target=TARGET, http=hops)))  # it does match
    v = analyse(Observations(target=TARGET, control=broken, http=hops), sigset.hits)
    assert (v.status, v.layer, v.detail, v.rule) == ("down", "tls", "tls/ssl_invalid_hostname", "redirect-down")
    # On the page the chain ends on, the same signature does speak: the site's own page, not a censor's.
    v = analyse(Observations(target=TARGET, http=(_page(TARGET.url, body),)), sigset.hits)
    assert v.rule == "server-side-page"


def _signatures_test(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", "signatures", "test", *args], capture_output=True,
                          text=True, timeout=60)


def test_the_signatures_test_command_names_the_match_and_puts_false_positives_first(shared_data, served_sets,
                                                                                    tmp_path):
    """`probe signatures test`: exit 0 and the signature's id for a blockpage (page or DNS answer), exit 1 for a
    page no censor signature knows, and a server-side page (false-positive signature) is never a blockpage even
    when a censor's words are on it too: the false positive is listed first and said."""
    cache, _ = served_sets
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "signatures").symlink_to(cache)  # where `probe signatures update` puts them
    data_dir = str(tmp_path / "data")
    page = shared_data / "pk-surf-safely-blockpage-censoredplanet-quack-2021-05-31.html"
    proc = _signatures_test(str(page), "--data-dir", data_dir)
    assert proc.returncode == 0 and proc.stdout.startswith("probe.pk.surf-safely: censor, hop 1 body"), proc.stdout
    plain = tmp_path / "plain.html"
    plain.write_text("<html><title>Recipes</title><body>Lentils, rice, onions.</body></html>")
    proc = _signatures_test(str(plain), "--data-dir", data_dir)
    assert proc.returncode == 1 and proc.stdout.startswith("no signature matches ("), proc.stdout
    assert _signatures_test(str(plain), "--dns", "203.82.48.83", "--data-dir", data_dir).returncode == 0
    both = tmp_path / "both.html"
    both.write_bytes(page.read_bytes() + b"<p>Checking your browser before accessing</p>")
    proc = _signatures_test(str(both), "--data-dir", data_dir)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1 and "FALSE POSITIVE" in lines[0] and "probe.pk.surf-safely: censor" in proc.stdout
    assert lines[-1].startswith("a false-positive signature matches")
    proc = _signatures_test(str(plain), "--header", "no colon", "--data-dir", data_dir)
    assert proc.returncode == 1 and proc.stderr.strip() == "error: --header wants NAME:VALUE, got 'no colon'"
