"""What the real internet throws at a probe: every URL still ends with a verdict, each failure named.

Its time and memory are a benchmark's business: `python bench/hostile.py` runs the same servers and prints them."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import ssl
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from probe.lab.servers import DnsEntry, DnsZone, InThread, Site, Sites, serve_dns, serve_http
from tests.test_cli_run import probe_cmd

GB = 1 << 30


def _broken_chain_context(ca: trustme.CA, tmp: Path) -> ssl.SSLContext:
    """A leaf issued by an intermediate, served without the intermediate: the chain cannot be built."""
    leaf = ca.create_child_ca().issue_cert("brokenchain.test")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.private_key_pem.write_to_path(str(tmp / "brokenchain.key"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp / "brokenchain.pem"))  # the leaf alone
    ctx.load_cert_chain(str(tmp / "brokenchain.pem"), str(tmp / "brokenchain.key"))
    return ctx


def _huge_cert_context(ca: trustme.CA, tmp) -> ssl.SSLContext:
    """A certificate of ~100 KB (thousands of names), signed by the test CA."""
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("bigcert.test")] + [x509.DNSName(f"name{i:05d}.padding-for-a-huge-certificate.test")
                                              for i in range(2200)]
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "big")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(names), critical=False).sign(ca_key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    assert len(cert.public_bytes(serialization.Encoding.DER)) > 100_000
    (tmp / "big.pem").write_bytes(pem)
    (tmp / "big.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tmp / "big.pem"), str(tmp / "big.key"))
    return ctx


@contextlib.contextmanager
def hostile_servers(ca: trustme.CA, tmp: Path) -> Iterator[tuple[int, ...]]:
    """DNS, HTTP and two TLS servers, each misbehaving per name; yields their ports (bench/hostile.py uses it)."""
    loop = ("127.0.0.1",)
    zone = DnsZone(entries={"*.test": DnsEntry(a=loop)})
    for name, behaviour in (("garbage", "garbage"), ("wrongid", "wrong-id"), ("cut", "cut"), ("huge", "huge"),
                            ("truncated", "truncate")):
        zone.entries[f"{name}.test"] = DnsEntry(a=loop, behaviour=behaviour)  # type: ignore[arg-type]
    title = b"<title>" + b"T" * (1 << 20) + b"</title>"
    sites = Sites(default=Site(title="fine"), by_host={
        "slowloris.test": Site(behaviour="slow-body"),
        "big.test": Site(behaviour="big", size=GB),
        "bomb.test": Site(behaviour="gzip-bomb", size=GB),
        "headers.test": Site(headers=(("x-padding", "p" * 65536),)),
        "loop.test": Site(status=302, location="/next"),
        "tofile.test": Site(status=302, location="file:///etc/passwd"),
        "toloopback.test": Site(status=302, location="http://127.0.0.2/admin"),
        "tov6.test": Site(status=302, location="http://[::1]/"),
        "toprivate.test": Site(status=302, location="http://10.0.0.1/"),
        "badutf8.test": Site(body=b"<html><head>" + title + b"</head><body>\xff\xfe\xc3\x28 broken \x80</body></html>"),
    })
    servers = InThread(partial(serve_dns, zone), partial(serve_http, sites),
                       partial(serve_http, sites, ssl_context=_broken_chain_context(ca, tmp)),
                       partial(serve_http, sites, ssl_context=_huge_cert_context(ca, tmp)))
    with servers:
        yield servers.ports


def hostile_run(ports: tuple[int, ...], tmp: Path, ca_file: str) -> tuple[list[str], Path, list[str]]:
    """The URLs, the database and the `probe run` command that measures them all."""
    dns_port, http_port, broken_port, big_port = ports
    urls = [f"http://{h}.test:{http_port}/" for h in (
        "slowloris", "big", "bomb", "headers", "loop", "tofile", "toloopback", "tov6", "toprivate", "badutf8",
        "garbage", "wrongid", "cut", "huge", "truncated")]
    urls += [f"https://brokenchain.test:{broken_port}/", f"https://bigcert.test:{big_port}/"]
    listing = tmp / "hostile.txt"
    listing.write_text("\n".join(urls))
    db = tmp / "h.db"
    cmd = probe_cmd(dns_port, db, str(listing), "--timeout", "3", "--ca-file", ca_file, "--quiet")
    cmd[cmd.index("127.0.0.0/8")] = "127.0.0.1/32"  # 127.0.0.2 and the rest of loopback are the volunteer's own
    return urls, db, cmd


@pytest.fixture
def hostile(ca, tmp_path):
    with hostile_servers(ca, tmp_path) as ports:
        yield ports


def test_hostile_servers_each_get_a_verdict(hostile, tmp_path, ca_file):
    # How long it takes and how much memory it needs: bench/hostile.py prints both.
    urls, db, cmd = hostile_run(hostile, tmp_path, ca_file)
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    con = sqlite3.connect(db)
    rows = {u: (s, d, r) for u, s, d, r in con.execute("select url, status, detail, runtime_s from measurements")}
    assert set(rows) == set(urls), "every URL ends with a verdict"
    hops = {u: (n, t, s, title) for u, n, t, s, title in con.execute(
        "select m.url, h.body_length, h.body_truncated, h.stopped, length(h.title) from http_hops h "
        "join measurements m on m.id = h.measurement_id where h.chain = ''")}  # the main chain's hops
    assert hops[urls[1]][:2] == (512 * 1024, 1), "a 1 GB body is read up to the cap, then dropped"
    assert hops[urls[2]][:2] == (512 * 1024, 1), "a gzip bomb inflates only up to the cap"
    assert rows[urls[0]][1] == "http/generic_timeout_error"
    stopped = {u.split("//")[1].split(".")[0]: s for u, (_, _, s, _) in hops.items() if s}
    assert stopped["loop"] == "too-many-redirects:10" and stopped["tofile"] == "redirect-scheme:file"
    assert stopped["toloopback"] == "redirect-to-bogon:127.0.0.2"
    assert stopped["toprivate"] == "redirect-to-bogon:10.0.0.1"
    assert stopped["tov6"].startswith("redirect-to-bogon:")
    assert hops[urls[9]][3] <= 512, "a 1 MB title is kept to 512 characters"
    dns = dict(con.execute("select m.url, group_concat(q.failure) from dns_queries q join measurements m "
                           "on m.id = q.measurement_id where q.query_type = 'A' group by m.url"))
    assert dns[urls[10]] == dns[urls[11]] == dns[urls[12]] == "generic_timeout_error"  # garbage is no reply
    tls = dict(con.execute("select m.url, t.failure from tls_handshakes t join measurements m "
                           "on m.id = t.measurement_id where t.decoy = 0"))
    assert tls[urls[15]] == "ssl_unknown_authority"
    engine, answers = con.execute("select q.engine, q.answers from dns_queries q join measurements m on m.id = "
                                  "q.measurement_id where m.url = ? and q.query_type = 'A'", [urls[13]]).fetchone()
    assert engine == "tcp" and answers.count(",") == 2999, "3,000 records: truncated over UDP, complete over TCP"
    assert rows[urls[13]][1] == "dns/bogon", "198.18/15 is outside this test's --allow-net: never dialled"
    assert con.execute("select count(*) from tcp_connects t join measurements m on m.id = t.measurement_id "
                       "where m.url = ?", [urls[13]]).fetchone()[0] == 0
    assert "blocked" not in {s for s, _, _ in rows.values()}, "no control: nothing is ever called blocked"
