"""Golden files: observations in, verdict out. Each file in tests/golden/ is one scenario, named
`<rule id>--<scenario>.json`; most were measured for real (tests/test_control.py, PROBE_WRITE_GOLDEN=1), a few
are written by hand where loopback cannot produce them (their "note" says why). Verdicts use the built-in
signature pack.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probe.analysis import RULES, analyse
from probe.models import NetworkView
from probe.serialize import from_dict, to_dict
from probe.signatures import SignatureSet
from probe.signatures.loaders import load_builtin

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.json"))
ALWAYS_MATCHES = "no-evidence"  # the catch-all, reached only when nothing else holds
BUILTIN = SignatureSet(load_builtin()[0])  # golden files are judged with our own pack


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_verdict(path: Path) -> None:
    doc = json.loads(path.read_text())
    obs = from_dict(doc["observations"])
    network = NetworkView.from_dict(doc.get("network"))  # the run's network survey, where the verdict needs it
    v = analyse(obs, BUILTIN.hits, network)
    assert {"status": v.status, "layer": v.layer, "detail": v.detail, "rule": v.rule} == doc["expected"], v.evidence
    assert path.stem.split("--")[0] == v.rule
    assert from_dict(to_dict(obs)) == obs  # the file format round-trips


def test_rule_ids_are_unique_and_none_is_dead() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    covered = {p.stem.split("--")[0] for p in GOLDEN}
    missing = set(ids) - covered - {ALWAYS_MATCHES}
    assert not missing, f"rules no golden scenario reaches: {sorted(missing)}"
    assert RULES[-1].id == ALWAYS_MATCHES
