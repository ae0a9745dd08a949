"""QUIC (issue 20) on loopback: the step against the lab's own QUIC server (aioquic, the same library), the lab's
SNI filter in front of it, the verdict beside the TCP/TLS one, storage, export and import.

Every server here is real and on 127.0.0.1; the lab scenarios (tests/test_quic_lab.py) do the same through the
ISP router's iptables and the decrypting filter.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import sqlite3

import pytest
import trio

from probe import storage
from probe.analysis import analyse
from probe.analysis.quic import QUIC_RULES, judge
from probe.lab.quic_filter import initial_names, relay
from probe.lab.quic_server import serve
from probe.measure.runner import run_async
from probe.measure.steps import quic
from probe.measure.targets import normalise
from probe.models import ControlResult, HttpHop, Observations, QuicHandshake, Target, TcpConnect, TlsHandshake

LOOP = "127.0.0.1"
NAME = "ok.test"


@pytest.fixture(scope="module")
def cert_files(ca, tmp_path_factory) -> tuple[str, str]:
    leaf = ca.issue_cert(NAME, "blocked.test", LOOP)
    d = tmp_path_factory.mktemp("quic")
    leaf.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(d / "key.pem"))
    return str(d / "cert.pem"), str(d / "key.pem")


@pytest.fixture
async def quic_port(nursery, cert_files) -> int:
    endpoints = await nursery.start(serve, [(LOOP, 0)], *cert_files)
    return endpoints[0].sock.getsockname()[1]


def clock() -> float:
    return trio.current_time()


async def test_a_working_handshake_is_the_only_one_at_its_address_and_its_certificate_is_checked(quic_port, ca_file):
    trust = quic.QuicTrust.build(ca_file)
    tries = await quic.measure(LOOP, sni=NAME, decoy_sni="decoy.test", trust=trust, timeout=4, clock=clock,
                               port=quic_port)
    assert [(h.sni, h.decoy, h.failure, h.alpn, h.attempt) for h in tries] == [(NAME, False, None, "h3", 1)]
    assert tries[0].peer_chain and NAME in tries[0].peer_chain[0]["sans"]
    # A certificate that is not for the name, or from an authority nobody here trusts: OONI's ssl_* failures,
    # and no decoy (a certificate is the same for any name).
    other = await quic.measure(LOOP, sni="someone-else.example", decoy_sni="decoy.test", trust=trust, timeout=4,
                               clock=clock, port=quic_port)
    assert [(h.failure, h.decoy) for h in other] == [("ssl_invalid_hostname", False)]
    untrusted = await quic.measure(LOOP, sni=NAME, decoy_sni="decoy.test", trust=quic.QuicTrust.build(None),
                                   timeout=4, clock=clock, port=quic_port)
    assert [h.failure for h in untrusted] == ["ssl_unknown_authority"]


async def test_a_closed_port_is_refused_and_a_silent_one_times_out_then_the_decoy_within_one_timeout():
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind((LOOP, 0))
    refused_port = closed.getsockname()[1]
    closed.close()  # nothing there: the kernel answers ICMP port unreachable
    trust = quic.QuicTrust.build(None)
    refused = await quic.measure(LOOP, sni=NAME, decoy_sni="decoy.test", trust=trust, timeout=2, clock=clock,
                                 port=refused_port)
    assert [(h.failure, h.decoy) for h in refused] == [("connection_refused", False)]
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never read: every datagram is lost
    silent.bind((LOOP, 0))
    try:
        lost = await quic.measure(LOOP, sni=NAME, decoy_sni="decoy.test", trust=trust, timeout=2, clock=clock,
                                  port=silent.getsockname()[1])
    finally:
        silent.close()
    assert [(h.sni, h.failure, h.decoy, h.attempt) for h in lost] == [
        (NAME, "generic_timeout_error", False, 1), (NAME, "generic_timeout_error", False, 2),
        ("decoy.test", "generic_timeout_error", True, 0)]
    assert min(h.t0 for h in lost[1:]) >= lost[0].t, "the decoy and the second try come after the first failed"
    assert max(h.t for h in lost) - lost[0].t0 <= 2 + 0.5, "all tries share one step's timeout"


async def test_the_labs_filter_reads_the_name_in_an_encrypted_initial_and_drops_only_that_flow(
        nursery, quic_port, ca_file):
    port = await nursery.start(relay, (LOOP, 0), (LOOP, quic_port), ["blocked.test"])
    trust = quic.QuicTrust.build(ca_file)
    passed = await quic.measure(LOOP, sni=NAME, decoy_sni="decoy.test", trust=trust, timeout=2, clock=clock,
                                port=port)
    filtered = await quic.measure(LOOP, sni="blocked.test", decoy_sni="decoy.test", trust=trust, timeout=2,
                                  clock=clock, port=port)
    assert [h.failure for h in passed] == [None]
    assert [(h.sni, h.failure, h.attempt) for h in filtered] == [("blocked.test", "generic_timeout_error", 1),
                                                                 ("blocked.test", "generic_timeout_error", 2),
                                                                 ("decoy.test", None, 0)]
    obs = Observations(target=normalise("https://blocked.test/"), quic=tuple(filtered))
    assert analyse(obs).quic == "sni-blocked"


def test_the_filter_sees_no_name_in_what_is_not_a_client_initial():
    assert initial_names(b"\x00" * 1200, ["blocked.test"]) is None
    assert initial_names(b"", ["blocked.test"]) is None
    assert initial_names(bytes([0xC0]) + b"\x00\x00\x00\x01" + b"\xff" * 50, ["blocked.test"]) is None


# --------------------------------------------------------------------------------------------- analysis (pure)
TS = Target(url="https://site.example/", hostname="site.example", scheme="https", port=443)
IP, IP2 = "198.51.100.7", "198.51.100.8"


def hs(ip=IP, *, failure=None, decoy=False) -> QuicHandshake:
    return QuicHandshake(ip=ip, port=443, sni="example.com" if decoy else TS.hostname, decoy=decoy, failure=failure)


def helper(quic_failure: str | bool | None = False) -> ControlResult:
    """The helper's reply; quic_failure False: it did not try QUIC (OONI's helper, or ours before QUIC)."""
    tries = {} if quic_failure is False else {f"{IP}:443": {"status": quic_failure is None,
                                                            "failure": quic_failure}}
    return ControlResult(source="h", dns_addrs=(IP,), tcp_connect={f"{IP}:443": {"status": True, "failure": None}},
                         tls_handshake={f"{IP}:443": {"status": True, "failure": None}}, http_status=200,
                         quic_handshake=tries)


LOST = "generic_timeout_error"
CASES = {
    "quic-ok": ((hs(IP, failure=LOST), hs(IP, failure=LOST, decoy=True), hs(IP2)), helper(False), "ok"),
    "quic-local": ((hs(failure="local_error: EMFILE"),), helper(None), "error"),
    "quic-sni": ((hs(failure=LOST), hs(decoy=True)), helper(False), "sni-blocked"),
    "quic-tls": ((hs(failure="ssl_invalid_hostname"),), helper(None), "failed"),
    "quic-udp": ((hs(failure=LOST), hs(failure=LOST, decoy=True)), helper(None), "udp-blocked"),
    "quic-unavailable": ((hs(failure="connection_refused"),), helper("connection_refused"), "unavailable"),
    # A try the run cut short (UDP/443 dropped everywhere so far) is no evidence, even where the control's
    # QUIC completed and the decoy was lost: failed, never udp-blocked.
    "quic-cut": ((hs(failure=LOST), hs(failure="interrupted"), hs(failure=LOST, decoy=True)), helper(None),
                 "failed"),
    "quic-failed": ((hs(failure=LOST), hs(failure=LOST, decoy=True)), helper(False), "failed"),
}


def test_quic_rule_ids_are_unique_and_every_rule_fires_on_its_case():
    assert len({r.id for r in QUIC_RULES}) == len(QUIC_RULES)
    assert set(CASES) == {r.id for r in QUIC_RULES}, "a rule without a case is dead or untested"
    for rule_id, (tries, control, value) in CASES.items():
        got = judge(Observations(target=TS, quic=tries, control=control))
        assert got is not None and (got[0].id, got[0].value) == (rule_id, value)


def _tcp_tls_ok(control: ControlResult | None = None, **kw) -> Observations:
    page = HttpHop(url=TS.url, ip=IP, status=200, title="Daily News", body_length=900, body_sha256="a" * 64)
    return Observations(target=TS, tcp=(TcpConnect(ip=IP, port=443, origin="probe", attempt=1),),
                        tls=(TlsHandshake(ip=IP, port=443, sni=TS.hostname, version="TLSv1.3", attempt=1),),
                        http=(page,), control=control or helper(None), **kw)


def test_a_quic_failure_never_changes_the_tcp_tls_verdict_and_says_itself_in_the_evidence():
    plain = analyse(_tcp_tls_ok())
    assert plain.quic is None
    for tries, control, value in CASES.values():
        v = analyse(_tcp_tls_ok(quic=tries, control=control))
        assert (v.status, v.layer, v.detail, v.rule) == (plain.status, plain.layer, plain.detail, plain.rule)
        assert v.quic == value and f"quic {value} (" in v.evidence


def test_quic_records_and_verdict_are_stored_read_back_and_rejudged_alike(tmp_path):
    db = storage.open_db(tmp_path / "q.db")
    run_id = storage.create_run(db, options={}, software_version="t", rules_version="r", targets=[TS], resolvers=[])
    obs = _tcp_tls_ok(quic=CASES["quic-udp"][0])
    verdict = analyse(obs)
    with db.atomic():
        mid = storage.write_measurement(db, run_id, obs, verdict, "r", keep_body=False)
    back = storage.load_observations(db, next(storage.measurements(db, run_id)))
    assert back.quic == obs.quic and back.control is not None
    assert back.control.quic_handshake == obs.control.quic_handshake  # type: ignore[union-attr]
    assert analyse(back) == verdict
    assert storage.verdicts(db, [mid])[0]["quic"] == "udp-blocked"


def test_ooni_export_carries_quic_handshakes_and_import_reads_them_back():
    from probe.research.ooni import export_measurement, import_measurement

    obs = dataclasses.replace(_tcp_tls_ok(quic=CASES["quic-sni"][0]), started="2026-12-04T10:00:00+00:00")
    verdict = analyse(obs)
    run = {"id": 1, "started": "2026-12-04T10:00:00+00:00", "vantage_asn": 64512, "vantage_country": "PK"}
    m = json.loads(json.dumps(export_measurement(obs, verdict, run, "t")))
    assert [h["server_name"] for h in m["test_keys"]["quic_handshakes"]] == [TS.hostname, "example.com"]
    assert m["test_keys"]["x_probe_verdict"]["quic"] == "sni-blocked"
    back = import_measurement(m)
    assert back.quic == obs.quic
    assert analyse(back).quic == "sni-blocked"


async def test_a_run_tries_quic_for_https_only_and_no_quic_turns_it_off(net, nursery, cert_files):
    # The lab's QUIC server on the UDP port of the same number as the loopback internet's HTTPS (TCP) port.
    await nursery.start(serve, [(LOOP, net.https_port)], *cert_files)
    targets = [normalise(net.https("ok.test")), normalise(net.http("ok.test"))]
    for quic_on in (True, False):
        db = storage.open_db(":memory:")
        summary = await run_async(db, targets, net.options(quic=quic_on), emit=None)
        rows = {r["url"]: r for r in db.query("select * from measurements where run_id = ?", [summary.run_id])}
        https, http = rows[targets[0].url], rows[targets[1].url]
        assert (https["status"], http["status"]) == ("ok", "ok")
        tries = db.execute("select sni, decoy, failure from quic_handshakes where measurement_id = ?",
                           [https["id"]]).fetchall()
        assert db.execute("select count(*) from quic_handshakes where measurement_id = ?",
                          [http["id"]]).fetchone()[0] == 0
        if quic_on:  # no control: only "ok" can be said, and it is
            assert (https["quic"], tries) == ("ok", [("ok.test", 0, None)])
        else:
            assert (https["quic"], tries) == (None, [])
        assert http["quic"] is None


def test_no_quic_in_probe_toml_and_on_the_command_line(internet, tmp_path):
    import subprocess
    import sys

    dns_port, _, _ = internet
    for args, toml in ((["--no-quic"], ""), ([], "[run]\nno_quic = true\n")):
        config = tmp_path / "probe.toml"
        config.write_text(toml)
        db = tmp_path / f"n{len(args)}.db"
        proc = subprocess.run([sys.executable, "-m", "probe", "--config", str(config), "run", "--db", str(db),
                               "--resolver", f"{LOOP}:{dns_port}", "--no-system-resolver", "--no-control",
                               "--allow-net", "127.0.0.0/8", "--timeout", "2", "--dns-timeout", "1",
                               "--portal-check", "none", "--no-vantage", "--accept-risk", "--json", *args,
                               "https://site1.test:9/"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        line = json.loads(proc.stdout.splitlines()[0])
        assert line["quic"] is None
        con = sqlite3.connect(db)
        assert con.execute("select count(*) from quic_handshakes").fetchone()[0] == 0
        assert json.loads(con.execute("select options from runs").fetchone()[0])["quic"] is False
        con.close()


async def test_our_helper_tries_quic_at_the_endpoints_the_probe_names_as_an_extension(net, nursery, cert_files,
                                                                                     ca_file):
    from probe.control.client import parse_helper_reply
    from probe.control.helper_server import answer, build_config

    await nursery.start(serve, [(LOOP, net.https_port)], *cert_files)
    cfg = build_config(resolvers=(f"{LOOP}:{net.dns_port}",), ca_file=ca_file, allow_net=("127.0.0.0/8",),
                       timeout=2.0)
    target = normalise(net.https("ok.test"))
    reply = await answer(cfg, target, [(LOOP, net.https_port), (LOOP, net.refused_port)])
    key = f"{LOOP}:{net.https_port}"
    assert reply["x_quic_handshake"][key] == {"server_name": "ok.test", "status": True, "failure": None}
    assert reply["x_quic_handshake"][f"{LOOP}:{net.refused_port}"]["failure"] == "connection_refused"
    assert parse_helper_reply("h", reply).quic_handshake == reply["x_quic_handshake"]
    plain = await answer(cfg, normalise(net.http("ok.test")), [(LOOP, net.http_port)])
    assert "x_quic_handshake" not in plain, "http:// URLs get no QUIC"


async def test_a_run_that_finds_udp443_dropped_everywhere_cuts_quic_short_after_the_other_steps(net, cert_files):
    # UDP/443 dropped for every site: a UDP socket on the HTTPS port's number, bound and never read. One URL at
    # a time, so the order is fixed: the first LEARN_AFTER URLs get every try in full (timed out, the decoy
    # too), and each later one's first try ends a grace after its TCP/TLS/HTTP, recorded as cut short.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((LOOP, net.https_port))
    targets = [normalise(net.https("ok.test", f"/page{i}")) for i in range(quic.LEARN_AFTER + 2)]
    db = storage.open_db(":memory:")
    try:
        summary = await run_async(db, targets, net.options(timeout=4.0, concurrency=1, workers=1), emit=None)
    finally:
        silent.close()
    rows = {r["url"]: r for r in db.query("select * from measurements where run_id = ?", [summary.run_id])}
    for i, target in enumerate(targets):
        m = rows[target.url]
        tries = db.execute("select sni, decoy, attempt, failure, t0, t from quic_handshakes "
                           "where measurement_id = ? order by decoy, attempt", [m["id"]]).fetchall()
        assert m["status"] == "ok", "QUIC never decides a status"
        if i < quic.LEARN_AFTER:
            assert [(t[1], t[2], t[3]) for t in tries] == [
                (0, 1, "generic_timeout_error"), (0, 2, "generic_timeout_error"), (1, 0, "generic_timeout_error")]
            assert m["quic"] == "failed" and "quic-failed" in m["evidence"]  # no control: not attributable
        else:
            assert [(t[0], t[1], t[2], t[3]) for t in tries] == [("ok.test", 0, 1, "interrupted")], \
                "one try, kept, cut short and not followed up"
            assert tries[0][5] - tries[0][4] < 4.0 / 2, "ended before its own timeout"
            assert m["quic"] == "failed" and "quic-cut" in m["evidence"]


def test_the_watch_learns_only_from_whole_losses_and_one_completed_handshake_unlearns_it():
    watch = quic.QuicWatch()
    lost = [hs(failure=LOST), hs(failure=LOST), hs(failure=LOST, decoy=True)]
    for _ in range(quic.LEARN_AFTER - 1):
        watch.close(watch.open(), lost, {IP})
    watch.close(watch.open(), lost, set())  # TCP did not connect there either: the site is down, not UDP
    assert watch.lost_in_a_row == 0 and not watch.dropped
    watch.close(watch.open(), [hs(failure="interrupted")], {IP})  # no evidence either way: no change
    for _ in range(quic.LEARN_AFTER):
        watch.close(watch.open(), lost, {IP})
    assert watch.dropped
    watch.close(watch.open(), [hs(failure=LOST), hs(IP2)], {IP, IP2})
    assert not watch.dropped and watch.completed
    for _ in range(quic.LEARN_AFTER):
        watch.close(watch.open(), lost, {IP})
    assert not watch.dropped, "a network where QUIC completed once this run does not drop UDP/443 wholesale"
