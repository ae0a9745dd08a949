"""Where the censor sits: TTL-limited ClientHellos after a TLS reset or timeout (measure/steps/locate.py, issue 20).

The lab's ISP router (hop 1) resets or drops the ClientHellos of snirst and snidrop; its gateway, one router
further (hop 2, lab/gateway.py), those of gwreset and gwdrop. Each must be located after the right router, ten
runs out of ten, with the verdict's status unchanged; the records survive storage, reanalysis and OONI's format.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from probe import storage
from probe.analysis import analyse
from probe.analysis.locate import locate
from probe.lab.gateway import GW_ISP_IP
from probe.lab.run import probe_command, run_scenarios
from probe.lab.scenarios import by_name
from probe.lab.topology import ISP_CLIENT_IP, Lab, missing_requirements
from probe.measure.steps.locate import parse_error_queue, router_label
from probe.models import TtlProbe
from probe.research.ooni import export_measurement, import_measurement
from tests.conftest import running_lab

LAB_PREFIX = os.environ.get("PROBE_TEST_LAB_PREFIX", "plt")


def lab_test(f):
    """Marks a test that builds the lab (root, Linux; CI runs it)."""
    skip = pytest.mark.skipif(bool(missing_requirements()), reason="; ".join(missing_requirements()))
    return pytest.mark.lab(skip(f))


# scenario -> (expected status, detail, first TTL of the interference, the router before it)
WHERE = {
    "snirst": ("blocked", "tls/connection_reset", 2, ISP_CLIENT_IP),
    "snidrop": ("blocked", "tls/generic_timeout_error", 2, ISP_CLIENT_IP),
    "gwreset": ("blocked", "tls/connection_reset", 3, GW_ISP_IP),
    "gwdrop": ("blocked", "tls/generic_timeout_error", 3, GW_ISP_IP),
}


def _probe(ttl: int, failure: str | None, router: str | None = None, icmp: str | None = "time_exceeded",
           step: str | None = "tls") -> TtlProbe:
    return TtlProbe(ip="198.18.10.7", port=443, sni="x.lab.test", ttl=ttl, failure=failure,
                    failed_step=step if failure else None, router=router, icmp=icmp if router else None)


# ----------------------------------------------------------------------------------------------- pure analysis
def test_a_reset_is_located_at_its_first_ttl_after_the_router_before_it():
    probes = (_probe(1, "host_unreachable", "198.18.1.1"), _probe(2, "host_unreachable", "198.18.5.2"),
              *(_probe(t, "connection_reset", "198.18.10.7", "unreachable") for t in range(3, 6)))
    (where,) = locate(probes)
    assert (where.ttl, where.hop, where.router, where.failure) == (3, 2, "198.18.5.2", "connection_reset")
    assert where.sentence() == ("198.18.10.7: connection_reset from TTL 3 on: the interference sits after router "
                                "198.18.5.2 (hop 2)")


def test_a_drop_is_located_where_the_timeouts_begin_and_last():
    probes = (_probe(1, "host_unreachable", "198.18.1.1"), _probe(2, "generic_timeout_error", "198.18.5.2"),
              _probe(3, "host_unreachable", "198.18.6.2"), _probe(4, "generic_timeout_error"),
              _probe(5, "generic_timeout_error"))
    (where,) = locate(probes)  # TTL 2 timed out between two expired ones: a router that sent no ICMP for TCP
    assert (where.ttl, where.router, where.failure) == (4, "198.18.6.2", "generic_timeout_error")


def test_nothing_is_located_without_icmp_or_with_a_reply_below_the_timeouts():
    silent = tuple(_probe(t, "generic_timeout_error") for t in range(1, 5))
    assert locate(silent)[0].ttl is None and "no router sent ICMP" in locate(silent)[0].why
    replied = (_probe(1, "host_unreachable", "198.18.1.1"), _probe(2, None), _probe(3, "generic_timeout_error"))
    assert locate(replied)[0].ttl is None
    unconnected = tuple(_probe(t, "connection_refused", step="tcp") for t in range(1, 4))
    assert locate(unconnected)[0].why == "no connection got through"


def test_a_reset_at_ttl_one_sits_before_the_first_router_and_an_unanswered_hop_is_said():
    assert "before the first router" in locate((_probe(1, "connection_reset"),))[0].sentence()
    where = locate((_probe(1, "generic_timeout_error"), _probe(2, "connection_reset")))[0]
    assert (where.ttl, where.router) == (2, None) and "a router that sent no ICMP" in where.sentence()


def test_public_routers_are_kept_as_their_prefix_and_private_ones_whole():
    assert router_label("203.0.113.9") == "203.0.113.9"  # documentation range: not global
    assert router_label("39.45.12.1") == "39.45.12.0/24"
    assert router_label("2a00:1450:4001:80b::1") == "2a00:1450:4001::/48"
    assert router_label("192.168.1.1") == "192.168.1.1" and router_label("198.18.5.2") == "198.18.5.2"


def test_the_error_queue_names_the_offender():
    import socket
    import struct

    ee = struct.pack("=IBBBBII", 113, 2, 11, 0, 0, 0, 0)  # EHOSTUNREACH, SO_EE_ORIGIN_ICMP, time exceeded
    offender = struct.pack("=HH4s8x", socket.AF_INET, 0, socket.inet_aton("198.18.5.2"))
    answer = parse_error_queue([(socket.IPPROTO_IP, 11, ee + offender)])
    assert (answer.router, answer.icmp) == ("198.18.5.2", "time_exceeded")
    unreachable = struct.pack("=IBBBBII", 111, 2, 3, 3, 0, 0, 0) + offender
    assert parse_error_queue([(socket.IPPROTO_IP, 11, unreachable)]).icmp == "unreachable"
    assert parse_error_queue([(socket.IPPROTO_IP, 11, struct.pack("=IBBBBII", 90, 1, 0, 0, 0, 0, 0))]).icmp is None


# ----------------------------------------------------------------------------------------------- loopback
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_step_on_loopback_resets_replies_and_silence_unprivileged_calls_only(host):
    """Real sockets, no lab: the IP TTL / IPv6 hop limit and IP_RECVERR / IPV6_RECVERR options, a datagram's ICMP
    read from the error queue (the address itself answers: port unreachable), and each TCP outcome."""
    import socket
    import ssl
    import struct

    import trio

    from probe.measure.steps.locate import locate as run_locate
    from probe.measure.steps.locate import router_at

    context = ssl.create_default_context()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    async def main() -> dict[str, list[TtlProbe]]:
        answer = await router_at(host, 1, wait=2)
        assert (answer.router, answer.icmp) == (host, "unreachable")
        out: dict[str, list[TtlProbe]] = {}
        for how in ("reset", "reply", "silence"):
            listener = trio.socket.socket(family, socket.SOCK_STREAM)
            await listener.bind((host, 0))
            listener.listen()
            port = listener.getsockname()[1]

            async def serve(listener=listener, how=how) -> None:
                held = []  # silence: the connections stay open (a dropped one would send FIN)
                while True:
                    conn, _ = await listener.accept()
                    held.append(conn)
                    await conn.recv(4096)  # the ClientHello
                    if how == "reset":
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        conn.close()
                    elif how == "reply":
                        await conn.send(b"\x15\x03\x03\x00\x02\x02\x28")  # a TLS alert: handshake_failure
                    # silence: keep the connection open, say nothing

            async with trio.open_nursery() as n:
                n.start_soon(serve)
                out[how] = await run_locate(host, port, sni="x.test", context=context, timeout=0.5,
                                            clock=trio.current_time, max_ttl=3)
                n.cancel_scope.cancel()
            listener.close()
        return out

    got = trio.run(main)
    assert [p.failure for p in got["reset"]] == ["connection_reset"] * 3
    assert locate(tuple(got["reset"]))[0].sentence().endswith("the interference sits before the first router")
    assert [(p.failure, p.reply_bytes) for p in got["reply"]] == [(None, 7)] * 3
    assert [p.failure for p in got["silence"]] == ["generic_timeout_error"] * 3
    assert locate(tuple(got["silence"]))[0].ttl is None  # no router sent ICMP: not located


# ----------------------------------------------------------------------------------------------- the lab
@pytest.fixture(scope="module")
def lab():
    with running_lab(LAB_PREFIX) as the_lab:
        yield the_lab


def _located(db: Path) -> dict[str, tuple]:
    """url -> (status, detail, located ttl, router) as stored, and as analysis reads the stored records."""
    out = {}
    con = storage.open_existing(db)
    for m in storage.measurements(con):
        obs = storage.load_observations(con, m)
        spots = locate(obs.locate)
        ttl, router = (spots[0].ttl, spots[0].router) if spots else (None, None)
        out[m["url"].split("//")[1].split(".")[0]] = (m["status"], m["detail"], ttl, router, m["evidence"])
    con.close()
    return out


@lab_test
def test_the_isp_and_the_gateway_are_located_after_their_router_ten_times_out_of_ten(lab, tmp_path):
    """Ten runs in a row: the exact status, and the interference after the ISP router (hop 1) for the ISP's
    censor, after the gateway (hop 2) for the gateway's; the evidence says so."""
    scenarios = by_name(tuple(WHERE))
    for i in range(10):
        db = tmp_path / f"where{i}.db"
        run_scenarios(lab, scenarios, db=db)
        got = _located(db)
        for name, (status, detail, ttl, router) in WHERE.items():
            assert got[name][:4] == (status, detail, ttl, router), (i, name, got[name])
            assert f"the interference sits after router {router} (hop {ttl - 1})" in got[name][4]


@lab_test
def test_locate_is_stored_reanalysed_and_travels_in_ooni_format(lab, tmp_path):
    db = tmp_path / "ooni.db"
    run_scenarios(lab, by_name(("gwreset", "secure1")), db=db)
    con = storage.open_existing(db)
    run = dict(storage.run_row(con, 1) or {})
    for m in storage.measurements(con):
        obs = storage.load_observations(con, m)
        verdict = analyse(obs)
        if "gwreset" not in m["url"]:
            assert obs.locate == () and "located" not in m["evidence"]  # a clean site: nothing to locate
            continue
        assert [p.ttl for p in obs.locate] == list(range(1, 17))
        assert obs.locate[0].failure == "host_unreachable" and obs.locate[0].router == ISP_CLIENT_IP
        assert verdict.status == "blocked" and "after router 198.18.5.2 (hop 2)" in verdict.evidence
        doc = export_measurement(obs, verdict, run, "test")
        trace = doc["test_keys"]["x_probe_iterative_trace"]
        assert trace[0]["address"] == "198.18.16.7:443" and len(trace[0]["target_trace"]["iterations"]) == 16
        back = import_measurement(doc)
        assert back.locate == obs.locate
        assert analyse(back).evidence == verdict.evidence
    con.close()


@lab_test
def test_no_locate_on_the_command_line_and_in_probe_toml(lab, tmp_path):
    (tmp_path / "probe.toml").write_text("[run]\nlocate = false\n")
    list_file = tmp_path / "list.txt"
    list_file.write_text("https://gwreset.lab.test/\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for how, extra, cwd in (("flag", ("--no-locate",), elsewhere), ("toml", (), tmp_path),
                            ("default", (), elsewhere)):
        db = tmp_path / f"{how}.db"
        env = {k: v for k, v in os.environ.items() if k != "PROBE_RESOLV_CONF"}
        env["XDG_CONFIG_HOME"] = str(tmp_path / "no-config")  # only the probe.toml in `cwd` counts
        proc = subprocess.run(probe_command(lab, list_file, db, extra), capture_output=True, text=True, timeout=120,
                              cwd=cwd, env=env)
        assert proc.returncode == 0, proc.stderr
        con = sqlite3.connect(db)
        rows = con.execute("select count(*) from ttl_probes").fetchone()[0]
        status = con.execute("select status, detail from measurements").fetchone()
        con.close()
        assert status == ("blocked", "tls/connection_reset"), how
        assert rows == (16 if how == "default" else 0), how


@lab_test
def test_locate_needs_no_root(lab):
    """The volunteer runs unprivileged: the probe with every capability dropped (no CAP_NET_RAW, no
    CAP_NET_ADMIN; the bounding set emptied, so not even uid 0 gets them back) still locates the gateway, the
    router named from a UDP socket's error queue. (Not as `nobody`: the interpreter may live under a root-only
    home, as CI's does.)"""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="probe-nocaps-") as tmp:  # pytest's tmp_path is root's alone
        work = Path(tmp)
        work.chmod(0o777)
        _run_without_capabilities(lab, work)


def _run_without_capabilities(lab: Lab, work: Path) -> None:
    list_file = work / "list.txt"
    list_file.write_text("https://gwreset.lab.test/\n")
    cmd = probe_command(lab, list_file, work / "n.db", ("--data-dir", str(work / "data")))
    at = cmd.index(lab.client) + 1
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]
    caps = subprocess.run(["ip", "netns", "exec", lab.client, *drop, "grep", "^CapEff", "/proc/self/status"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert caps == ["CapEff:", "0000000000000000"], "the probe below runs without any capability"
    cmd[at:at] = drop
    env = {k: v for k, v in os.environ.items() if k != "PROBE_RESOLV_CONF" and not k.startswith("XDG_")}
    env["HOME"] = str(work)  # its own: not the test session's config and data directories
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=work)
    assert proc.returncode == 0, proc.stderr
    got = _located(work / "n.db")["gwreset"]
    assert got[:4] == ("blocked", "tls/connection_reset", 3, GW_ISP_IP)
