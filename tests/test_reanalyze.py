"""Stored observations are enough to re-judge a run: `probe reanalyze` rebuilds them and re-runs analysis."""

from __future__ import annotations

from probe import RULES_VERSION, open_db, read_inputs, run_async
from probe.reanalysis import reanalyze
from probe.storage import measurements


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
