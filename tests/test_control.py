"""Control and verdicts on real scenarios: a helper and a DoH server see the truth; censors sit in front of the
real servers on other loopback addresses (same port numbers), the way an ISP's box sits in the path.

PROBE_WRITE_GOLDEN=1 refreshes tests/golden/ from these runs (then review the diff).
"""

from __future__ import annotations

from functools import partial

from probe import open_db, read_inputs, run_async
from probe.lab.servers import DnsEntry, Site, Sites, serve_http
from probe.storage import load_observations, measurements
from tests.conftest import write_golden
from tests.control_world import BLOCKPAGE, SCENARIOS, _url, control_options


async def test_every_rule_fires_on_its_scenario(world):
    net = world
    urls = [_url(net, n, s, p) for n, s, _, p, _ in SCENARIOS]
    targets, _ = read_inputs(urls)
    db = open_db(":memory:")
    summary = await run_async(db, targets, control_options(net), emit=None)
    rows = {m["url"]: m for m in measurements(db, summary.run_id)}
    got, want = {}, {}
    for (*_, expected), url in zip(SCENARIOS, urls, strict=True):
        m = rows[url]
        got[url] = (m["status"], m["layer"], m["detail"], m["rule"])
        want[url] = expected
        assert m["control"] == "ok", (url, m["evidence"])
    assert got == want, "\n".join(f"{u}: got {got[u]} want {want[u]}\n   {rows[u]['evidence']}"
                                  for u in urls if got[u] != want[u])
    for (name, scheme, *_), url in zip(SCENARIOS, urls, strict=True):
        write_golden(db, rows[url], f"{name.split('.')[0]}-{scheme}")


async def test_control_runs_in_parallel_and_is_recorded(world):
    net = world
    targets, _ = read_inputs([net.https("ok.test")])
    db = open_db(":memory:")
    summary = await run_async(db, targets, control_options(net), emit=None)
    obs = load_observations(db, next(measurements(db, summary.run_id)))
    assert obs.control is not None and obs.control.http_status == 200
    assert obs.control.http_title == "Welcome to the ok site"
    assert obs.control.tcp_connect[f"127.0.0.1:{net.https_port}"]["status"] is True
    assert {q.resolver for q in obs.control_dns} == {f"doh:https://127.0.0.1:{net.doh_port}/dns-query"}
    assert all(q.answers == ("127.0.0.1",) for q in obs.control_dns if q.query_type == "A")


async def test_unreachable_control_gives_error_not_blocked(world):
    from tests.conftest import closed_port

    net = world
    targets, _ = read_inputs(["http://nxc.test/", net.http("ok.test")])
    db = open_db(":memory:")
    opts = net.options(no_control=False, helper=f"http://127.0.0.1:{closed_port()}/",
                       doh=(f"https://127.0.0.1:{closed_port()}/dns-query",))
    summary = await run_async(db, targets, opts, emit=None)
    rows = {m["url"]: m for m in measurements(db, summary.run_id)}
    assert rows["http://nxc.test/"]["status"] == "error"
    assert rows["http://nxc.test/"]["detail"] == "control/failed"
    assert rows[net.http("ok.test")]["status"] == "ok"  # reachable is reachable, control or not
    assert {r["control"] for r in rows.values()} == {"failed"}
    write_golden(db, rows["http://nxc.test/"], "nxc-control-unreachable")


async def test_blockpage_and_censor_ip_are_named_and_reanalysis_finds_them(world, nursery, shared_data):
    from probe.signatures import SignatureSet
    from probe.signatures.loaders import load_builtin
    from probe.signatures.model import make
    from probe.storage.reanalysis import reanalyze

    net = world
    page = (shared_data / "pk-surf-safely-blockpage-censoredplanet-quack-2021-05-31.html").read_bytes()
    await nursery.start(partial(serve_http, Sites(default=Site(body=page, headers=())), "127.0.0.11",
                                net.http_port))
    await nursery.start(partial(serve_http, Sites(default=Site(body=BLOCKPAGE, headers=())), "127.0.2.12",
                                net.http_port))
    for name, answer in (("pkblock.test", "127.0.0.11"), ("censorip.test", "127.0.2.12")):
        net.zone.entries[name] = DnsEntry(a=(answer,))
        net.truth.entries[name] = DnsEntry(a=("127.0.0.1",))
        real = b"<html><head><title>The real site</title></head><body>" + b"<p>News of the day.</p>" * 900
        net.sites.by_host[name] = Site(body=real + b"</body></html>")
    # A lab censor's blockpage address, as a DNS signature (the real ones are public addresses we never dial).
    sigs = [*load_builtin()[0], make(id="lab.dns-blockpage-server", where="dns", kind="full", pattern="127.0.2.12",
                                     scope="isp", source="this test")]
    sigset = SignatureSet(sigs)
    urls = [net.http("pkblock.test"), net.http("censorip.test")]
    targets, _ = read_inputs(urls)
    db = open_db(":memory:")
    summary = await run_async(db, targets, control_options(net, keep_bodies="suspect"), emit=None)
    before = {m["url"]: m["detail"] for m in measurements(db, summary.run_id)}
    assert before == {urls[0]: "http/diff", urls[1]: "dns/inconsistent"}  # no signatures yet
    changed, total = reanalyze(db, summary.run_id, sigset.hits)
    rows = {m["url"]: m for m in measurements(db, summary.run_id)}
    assert (changed, total) == (2, 2)
    assert (rows[urls[0]]["status"], rows[urls[0]]["detail"], rows[urls[0]]["fingerprint"]) == (
        "blocked", "http/blockpage:probe.pk.surf-safely", "probe.pk.surf-safely")
    assert (rows[urls[1]]["status"], rows[urls[1]]["detail"]) == ("blocked", "dns/censor-ip:lab.dns-blockpage-server")
    write_golden(db, rows[urls[0]], "pk-surf-safely-in-path")


async def test_a_retransmission_s_answer_is_not_an_injection(world):
    net = world
    targets, _ = read_inputs([net.http("rotate.test"), net.http("inject.test")])
    db = open_db(":memory:")
    summary = await run_async(db, targets, control_options(net), emit=None)
    rows = {m["url"]: m for m in measurements(db, summary.run_id)}
    rotate = load_observations(db, rows[net.http("rotate.test")])
    a = next(q for q in rotate.dns if q.query_type == "A")
    # The scenario did what it says: we sent the query twice and heard two different, honest answers.
    assert a.retransmits == 1 and [late["answers"] for late in a.late_answers] == [["127.0.0.1"]]
    assert a.answers == ("127.0.0.12",)
    assert (rows[net.http("rotate.test")]["status"], rows[net.http("rotate.test")]["rule"]) == ("ok", "ok")
    assert (rows[net.http("inject.test")]["status"], rows[net.http("inject.test")]["rule"]) == (
        "blocked", "dns-injection")


async def test_doh_only_control_compares_what_it_claims(world):
    """The control most volunteers have: DoH, no helper. Pages are compared with pages fetched from here."""
    net = world
    cases = {
        net.http("ok.test"): ("ok", None, "ok", "ok-dns-consistent"),
        # Our answer leads to a notice; the control's answer, fetched from here, to the real page.
        net.http("dnspage.test"): ("blocked", "dns", "dns/inconsistent", "dns-inconsistent-page"),
        net.http("redir-nx.test"): ("blocked", "dns", "dns/nxdomain", "redirect-blocked"),
        # No helper fetched the page: a reset on the second hop is not conclusive.
        net.http("redir-reset.test"): ("anomaly", "http", "http/connection_reset", "redirect-unverified"),
    }
    targets, _ = read_inputs(list(cases))
    db = open_db(":memory:")
    opts = net.options(no_control=False, doh=(f"https://127.0.0.1:{net.doh_port}/dns-query",))
    summary = await run_async(db, targets, opts, emit=None)
    rows = {m["url"]: m for m in measurements(db, summary.run_id)}
    got = {u: (m["status"], m["layer"], m["detail"], m["rule"]) for u, m in rows.items()}
    assert got == cases, "\n".join(f"{u}: {rows[u]['evidence']}" for u in cases if got[u] != cases[u])
    ok_evidence = rows[net.http("ok.test")]["evidence"]  # no comparison was made, and none is claimed
    assert "no control page was compared" in ok_evidence and "page compared with" not in ok_evidence
    dnspage = load_observations(db, rows[net.http("dnspage.test")])
    assert {h.chain for h in dnspage.http} == {"", "control"}  # no https self-control for a URL on port 8xxx
    assert "control-address page" in rows[net.http("dnspage.test")]["evidence"]
    for url in cases:
        write_golden(db, rows[url], url.split("//")[1].split(".")[0] + "-doh-only")


async def test_without_control_nothing_is_blocked_without_a_signature(world):
    net = world
    cases = {net.http("ok.test"): ("ok", None, "ok", "ok-unverified"),
             net.http("inject.test"): ("anomaly", "dns", "dns/injection", "dns-injection-unverified")}
    targets, _ = read_inputs(list(cases))
    db = open_db(":memory:")
    summary = await run_async(db, targets, net.options(), emit=None)
    rows = {m["url"]: m for m in measurements(db, summary.run_id)}
    assert {u: (m["status"], m["layer"], m["detail"], m["rule"]) for u, m in rows.items()} == cases
    for url in cases:
        write_golden(db, rows[url], url.split("//")[1].split(".")[0] + "-no-control")


async def test_the_helper_reports_an_endpoint_that_worked_on_its_second_try_as_working(world, nursery):
    """The helper tries a failed handshake again, as the probe does: an address whose first handshake was reset
    and whose second verified is reported working, so a reset the probe sees there is not "shared" with the
    control (found in review: the helper reported its own first, failed, try)."""
    import json

    import httpx

    from probe.lab.servers import serve_relay

    net = world
    await nursery.start(partial(serve_relay, ("127.0.0.1", net.https_port), "127.0.0.14", net.https_port,
                                reset=lambda _first, n: n == 1))  # only the first connection is reset
    net.truth.entries["gzip.test"] = DnsEntry(a=("127.0.0.14",))
    net.sites.by_host["gzip.test"] = Site(title="The gzip website")
    async with httpx.AsyncClient() as client:
        resp = await client.post(f"http://127.0.0.1:{net.helper_port}/", content=json.dumps(
            {"http_request": f"https://gzip.test:{net.https_port}/", "http_request_headers": {}, "tcp_connect": []}))
    answer = resp.json()
    endpoint = f"127.0.0.14:{net.https_port}"
    assert answer["tcp_connect"][endpoint]["status"] is True
    hs = answer["tls_handshake"][endpoint]
    assert {k: hs[k] for k in ("server_name", "status", "failure")} == {"server_name": "gzip.test", "status": True,
                                                                         "failure": None}
    assert hs["x_transfer"]["bytes"] > 0  # the server's flight, as the helper read it (an extension field)
    assert answer["http_request"]["status_code"] == 200
