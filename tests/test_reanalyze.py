"""Stored observations are enough to re-judge a run: `probe reanalyze` rebuilds them and re-runs analysis."""

from __future__ import annotations

from probe import RULES_VERSION, open_db, read_inputs, run_async
from probe.storage import measurements
from probe.storage.reanalysis import reanalyze


async def test_reanalyze_restores_verdicts_from_observations_alone(net):
    urls = [net.http("ok.test"), "http://nx.test/", f"https://tlsreset.test:{net.reset_port}/", net.http("big.test")]
    targets, _ = read_inputs(urls)
    db = open_db(":memory:")
    summary = await run_async(db, targets, net.options(keep_bodies="all"))
    before = {m["url"]: (m["status"], m["detail"], m["rule"]) for m in measurements(db, summary.run_id)}
    # An older release judged differently: overwrite every verdict.
    db.execute("update measurements set status = 'ok', detail = 'stale', rule = 'old', rules_version = 'old'")
    changed, total = reanalyze(db, summary.run_id)
    after = {m["url"]: (m["status"], m["detail"], m["rule"]) for m in measurements(db, summary.run_id)}
    assert (changed, total) == (4, 4)
    assert after == before
    assert {m["rules_version"] for m in measurements(db)} == {RULES_VERSION}


async def test_a_database_from_the_previous_rules_moves_to_the_new_ones(net, tmp_path):
    """A run stored by rules 2026.11.1 (no chains, steps, retransmissions or route facts in its tables) is
    migrated on open and re-judged by the current rules, with the same verdicts a new run gets."""
    import sqlite3

    urls = [net.http("ok.test"), "http://nx.test/", net.http("loop.test"), f"https://tlsreset.test:{net.reset_port}/"]
    targets, _ = read_inputs(urls)
    path = tmp_path / "old.db"
    db = open_db(path)
    summary = await run_async(db, targets, net.options(keep_bodies="all"))
    now = {m["url"]: (m["status"], m["detail"], m["rule"]) for m in measurements(db, summary.run_id)}
    db.close()
    con = sqlite3.connect(path)
    for table, column in (("http_hops", "chain"), ("http_hops", "failed_step"), ("dns_queries", "retransmits"),
                          ("tcp_connects", "no_local_route")):
        con.execute(f"alter table {table} drop column {column}")
    con.execute("delete from _sqlite_migrations where name = 'm005_paths_and_steps'")
    con.execute("update measurements set rules_version = '2026.11.1', rule = 'ok', status = 'ok', detail = 'ok'"
                " where url = ?", [net.http("loop.test")])  # what 2026.11.1 said of a redirect loop
    con.commit()
    con.close()
    db = open_db(path)
    assert {"chain", "failed_step"} <= set(db.table("http_hops").columns_dict)
    changed, total = reanalyze(db)
    rows = {m["url"]: m for m in measurements(db)}
    assert (changed, total) == (1, 4)
    assert {u: (m["status"], m["detail"], m["rule"]) for u, m in rows.items()} == now
    assert now[net.http("loop.test")] == ("anomaly", "http/too-many-redirects:10", "redirect-unfinished")
    assert {m["rules_version"] for m in rows.values()} == {RULES_VERSION}


async def test_reanalyze_recomputes_every_row_even_the_old_offline_ones(net):
    """Older releases rewrote a whole run to `error vantage/offline`; the observations are still there."""
    targets, _ = read_inputs([net.http("ok.test"), "http://nx.test/"])
    db = open_db(":memory:")
    summary = await run_async(db, targets, net.options())
    before = {m["url"]: (m["status"], m["detail"]) for m in measurements(db, summary.run_id)}
    db.execute("update measurements set status = 'error', layer = null, detail = 'vantage/offline', "
               "rule = 'vantage-offline'")
    changed, total = reanalyze(db, summary.run_id)
    assert (changed, total) == (2, 2)
    assert {m["url"]: (m["status"], m["detail"]) for m in measurements(db, summary.run_id)} == before


async def test_a_database_of_rules_2026_11_2_moves_to_the_new_ones(net, tmp_path):
    """A run stored before tries, surveys, scopes and flaky facts (schema up to m007) is migrated on open and
    re-judged: a CDN challenge over verified TLS, an anomaly then, is the site's own page now (ok), and the tries
    it never recorded are judged as the one try they were."""
    import sqlite3

    from probe.lab.servers import Site
    from probe.signatures import SignatureSet
    from probe.signatures.loaders import load_builtin

    net.sites.by_host["gzip.test"] = Site(status=403, headers=(("server", "cloudflare"),), body=(
        b"<html><head><title>Just a moment...</title></head><body><script>window._cf_chl_opt={};</script>"
        b"</body></html>"))
    matcher = SignatureSet(load_builtin()[0]).hits
    urls = [net.https("gzip.test"), net.http("ok.test"), f"http://reset.test:{net.reset_port}/"]
    targets, _ = read_inputs(urls)
    path = tmp_path / "old.db"
    db = open_db(path)
    summary = await run_async(db, targets, net.options(keep_bodies="all"), matcher=matcher)
    now = {m["url"]: (m["status"], m["detail"], m["rule"]) for m in measurements(db, summary.run_id)}
    db.close()
    con = sqlite3.connect(path)
    for table, column in (("tcp_connects", "attempt"), ("tls_handshakes", "attempt"), ("http_hops", "attempts"),
                          ("runs", "network"), ("measurements", "scope"), ("measurements", "flaky")):
        con.execute(f"alter table {table} drop column {column}")
    con.execute("delete from _sqlite_migrations where name = 'm008_attempts'")
    con.execute("update measurements set rules_version = '2026.11.2', status = 'anomaly', layer = 'http', "
                "rule = 'server-side-page' where url = ?", [net.https("gzip.test")])  # what 2026.11.2 said
    con.execute("update measurements set rules_version = '2026.11.2'")
    con.commit()
    con.close()
    db = open_db(path)
    assert "attempt" in db.table("tcp_connects").columns_dict and "flaky" in db.table("measurements").columns_dict
    changed, total = reanalyze(db, matcher=matcher)
    rows = {m["url"]: m for m in measurements(db)}
    assert (changed, total) == (1, 3)
    assert {u: (m["status"], m["detail"], m["rule"]) for u, m in rows.items()} == now
    assert now[net.https("gzip.test")] == ("ok", "http/server-side:probe.fp.cloudflare-challenge", "server-side-same")
    assert now[f"http://reset.test:{net.reset_port}/"][0] == "anomaly"  # reset twice, no control: never blocked
    assert {m["rules_version"] for m in rows.values()} == {RULES_VERSION}
