"""Failure strings are OONI's vocabulary, exactly (ooni/spec data-formats/df-007-errors.md).

The list below is copied by hand from df-007 (the table of errors that OONI Probe and Measurement Kit emit), so
that a change in failures.py cannot quietly change what the test accepts. Every failure stored by a real run
(loopback servers, a control helper and DoH) must be in it, or carry OONI's catch-all prefix
(`unknown_failure`) or one of our documented prefixes (`local_error`, `refused`).
"""

from __future__ import annotations

import ast
import json
import re
from functools import partial
from pathlib import Path

from probe import failures, open_db, read_inputs, run_async, storage
from probe.analysis import facts, rules
from probe.control.helper_server import serve_forever
from probe.lab.servers import DnsEntry, DnsZone, Site, serve_dns
from probe.measure.steps import dns_wire, tcp, tls
from tests.control_world import SCENARIOS, _url, control_options

# df-007's list written out again on purpose: the test holds the spec, and the code's copy must equal it.
DF_007 = {
    "android_dns_cache_no_data", "connection_aborted", "connection_already_closed", "connection_refused",
    "connection_reset", "dns_bogon_error", "dns_no_answer", "dns_non_recoverable_failure", "dns_nxdomain_error",
    "dns_reply_with_wrong_query_id", "dns_refused_error", "dns_server_misbehaving", "dns_servfail_error",
    "dns_temporary_failure", "eof_error", "http_request_failed", "host_unreachable", "generic_timeout_error",
    "http_unexpected_redirect_url", "http_unexpected_status_code", "interrupted", "json_parse_error",
    "network_down", "network_reset", "network_unreachable", "quic_incompatible_version", "ssl_failed_handshake",
    "ssl_invalid_hostname", "ssl_unknown_authority", "ssl_invalid_certificate",
}
PREFIXES = ("unknown_failure", "local_error", "refused")


def allowed(failure: str) -> bool:
    return failure in DF_007 or any(re.match(rf"{p}[: ]", failure) for p in PREFIXES)


def stored_failures(db) -> dict[str, set[str]]:
    """Every failure string in the observation tables: columns named *failure, and the helper's JSON maps."""
    out: dict[str, set[str]] = {}
    for table in db.table_names():
        if table == "runs":  # run metadata (vantage lookup), not a measurement's failure
            continue
        for col in db[table].columns_dict:
            if col.endswith("failure"):
                for (value,) in db.execute(f"select [{col}] from [{table}] where [{col}] is not null"):
                    out.setdefault(value, set()).add(f"{table}.{col}")
        if table == "control_results":
            for col in ("tcp_connect", "tls_handshake"):
                for (value,) in db.execute(f"select [{col}] from [{table}]"):
                    for entry in json.loads(value or "{}").values():
                        if entry.get("failure"):
                            out.setdefault(entry["failure"], set()).add(f"{table}.{col}")
    return out


def test_the_code_holds_oonis_list() -> None:
    assert failures.OONI_FAILURES == DF_007
    assert failures.OUR_PREFIXES == ("local_error", "refused")


def test_every_failure_constant_in_the_code_is_oonis() -> None:
    produced = {*failures._ERRNO.values(), *dns_wire.FAILURES.values(), failures.TIMEOUT}
    compared = {*tcp.UNREACHABLE, *facts.DNS_LOOKUP_FAILURES, *rules._INTERFERENCE,
                *tls.INTERFERENCE_FAILURES, *tls.CERT_FAILURES}
    assert produced - DF_007 == set()
    assert compared - DF_007 == set()
    assert failures.classify(ConnectionAbortedError(103, "x")) == "connection_aborted"
    assert failures.classify(OSError(100, "x")) == "network_down"  # ENETDOWN


# Names in the code that look like failure strings but are something else (option names, tables, OONI keys).
NOT_FAILURES = {"dns_delay", "dns_queries", "dns_timeout", "dns_experiment_failure", "network_a", "network_b",
                "network_of", "network_of_run", "http_experiment_failure", "connection_refused_error", "dns_addrs",
                "dns_failure", "network_events"}
LOOKS_LIKE_A_FAILURE = re.compile(r"^(dns|ssl|connection|network|host|generic|eof)_[a-z_]+$")


def test_no_string_in_the_code_drifts_from_the_vocabulary() -> None:
    """A literal like "dns_server_failure" anywhere in probe/ fails here, whoever adds it.

    OONI's test helper has names of its own for the control's DNS outcome ("dns_name_error",
    "dns_server_failure"); only failures.py may spell them, to translate them on the way in, and storage.py the
    names of earlier versions, to rename them in stored runs.
    """
    root = Path(failures.__file__).parent
    drift = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            s = node.value
            if not LOOKS_LIKE_A_FAILURE.match(s) or s in DF_007 or s in NOT_FAILURES:
                continue
            if path.name == "failures.py" and (s in failures.OONI_LEGACY_FAILURES or s in failures.HELPER_DNS):
                continue
            renamed = {*storage.RENAMED_FAILURES, *storage.RENAMED_HELPER_DNS}
            if path == root / "storage" / "__init__.py" and s in renamed:
                continue  # the old names, to rename them in earlier databases
            drift.append(f"{path.relative_to(root.parent)}:{node.lineno}: {s}")
    assert drift == []


async def test_every_failure_a_real_run_stores_is_oonis(world, nursery, tmp_path) -> None:
    """The control world's scenarios (DNS, TCP, TLS, HTTP failures at the probe and at the control), the local
    failure kinds (refused, reset, silent, bad certificate), and a strict helper that refuses loopback."""
    net = world
    net.zone.entries["tlsreset.test"] = DnsEntry(a=("127.0.0.1",))
    net.sites.by_host["gone.test"] = Site(title="gone")
    urls = [_url(net, n, s, p) for n, s, _, p, _ in SCENARIOS] + [
        f"http://ok.test:{net.refused_port}/", f"http://reset.test:{net.reset_port}/",
        f"http://timeout.test:{net.silent_port}/", f"https://tlsreset.test:{net.reset_port}/",
        f"https://mitm.test:{net.badcert_port}/", "http://servfail.test/", "http://nx.test/",
        f"http://loop.test:{net.http_port}/", f"http://gzip.test:{net.http_port}/",
    ]
    db = open_db(tmp_path / "v.db")
    targets, warnings = read_inputs(urls)
    assert not warnings
    await run_async(db, targets, control_options(net, timeout=1.0), emit=None)
    # A helper with the default policy: it refuses loopback addresses, a failure of our own prefix.
    truth = DnsZone(entries={"ok.test": DnsEntry(a=("127.0.0.1",)), "servfail.test": DnsEntry(behaviour="servfail")})
    truth_port = await nursery.start(serve_dns, truth)
    strict = await nursery.start(partial(serve_forever, "127.0.0.1", 0, resolvers=(f"127.0.0.1:{truth_port}",),
                                         ca_file=net.ca_file, timeout=1.0))
    targets, _ = read_inputs([net.http("ok.test"), "http://servfail.test/"])
    await run_async(db, targets, net.options(no_control=False, helper=f"http://127.0.0.1:{strict}/", doh=()), emit=None)

    seen = stored_failures(db)
    outside = {f: sorted(where) for f, where in seen.items() if not allowed(f)}
    assert outside == {}
    # Nothing was looked up through the host's resolver (a control left on its public defaults would be).
    assert not [f for f in seen if "gaierror" in f]
    # The run really produced failures of every layer and of our own prefix (a test that cannot fail is a defect).
    for expected in ("dns_nxdomain_error", "dns_servfail_error", "connection_refused", "connection_reset",
                     "generic_timeout_error", "ssl_invalid_hostname"):
        assert expected in seen, sorted(seen)
    assert any(f.startswith("refused: ") for f in seen), sorted(seen)


def test_databases_of_earlier_versions_get_oonis_names(tmp_path) -> None:
    """A run stored before the rename: its failures and the verdicts quoting them now use OONI's words."""
    from probe.measure.targets import normalise
    from probe.models import ControlResult, DnsQuery, Observations, Verdict

    db = open_db(tmp_path / "old.db")
    run = storage.create_run(db, options={}, software_version="old", rules_version="old", targets=[], resolvers=[])
    obs = Observations(target=normalise("http://servfail.test/"),
                       dns=(DnsQuery(resolver="udp:127.0.0.1:53", engine="udp", hostname="servfail.test",
                                     query_type="A", failure="dns_server_failure"),),
                       control=ControlResult(source="http://helper/", dns_failure="dns_name_error"))
    old = Verdict(status="anomaly", layer="dns", detail="dns/dns_server_failure", rule="dns-failure", control="ok",
                  evidence="the resolver failed; dns failure: dns_server_failure from udp:127.0.0.1:53")
    storage.write_measurement(db, run, obs, old, "old", keep_body=False)
    storage.m006_ooni_failure_names(db)
    row = next(storage.measurements(db, run))
    assert row["detail"] == "dns/dns_servfail_error" and "dns_server_failure" not in row["evidence"]
    back = storage.load_observations(db, row)
    assert back.dns[0].failure == "dns_servfail_error"
    assert back.control is not None and back.control.dns_failure == "dns_nxdomain_error"
    assert all(allowed(f) for f in stored_failures(db))
