"""Volunteers' databases for the collector tests and bench/collector.py: real observations (the golden files'
loopback and lab measurements) written through storage as a run writes them, under a network of the test's
choosing, each measurement with its own UUID."""

from __future__ import annotations

import json
from pathlib import Path

from probe import storage
from probe.analysis import RULES_VERSION, analyse
from probe.models import NetworkView, Observations, Verdict
from probe.serialize import from_dict

GOLDEN = Path(__file__).resolve().parent / "golden"


def golden_observations() -> list[tuple[Observations, Verdict]]:
    """One case per URL (a run measures a URL once)."""
    out: dict[str, tuple[Observations, Verdict]] = {}
    for path in sorted(GOLDEN.glob("*.json")):
        obs = from_dict(json.loads(path.read_text())["observations"])
        out.setdefault(obs.target.url, (obs, analyse(obs, None)))
    return list(out.values())


def volunteer_db(path: Path, runs: int = 1, per_run: int = 20, asn: int = 64500, network: str = "TESTNET-A",
                 country: str = "PK", cases: list[tuple[Observations, Verdict]] | None = None,
                 view: NetworkView | None = None) -> list[str]:
    """A finished volunteer database; returns its measurements' UUIDs. A run has at most len(cases) URLs."""
    cases = cases or golden_observations()
    assert per_run <= len(cases), f"at most {len(cases)} measurements per run"
    db = storage.open_db(path)
    for _ in range(runs):
        run_id = storage.create_run(db, options={}, software_version="test", rules_version=RULES_VERSION,
                                    targets=[], resolvers=[])
        storage.set_vantage(db, run_id, asn, network, country, None)
        if view is not None:
            storage.set_network(db, run_id, view)
        with db.atomic():
            for i in range(per_run):
                obs, verdict = cases[i % len(cases)]
                storage.write_measurement(db, run_id, obs, verdict, RULES_VERSION, keep_body=verdict.status != "ok")
        storage.finish_run(db, run_id, "done")
    uuids = [r[0] for r in db.execute("select uuid from measurements order by id")]
    storage.close(db)
    return uuids
