"""A database with known verdicts for the research outputs: two networks, four runs, every status, and claims
with and without a published list. Verdicts are written through storage as a run writes them, so every output
(diff, claims, results, report, Datasette, OONI export) is checked against numbers worked out by hand here."""

from __future__ import annotations

from pathlib import Path

from probe import open_db
from probe.measure.targets import normalise
from probe.models import Observations, Verdict
from probe.research import claims
from probe.storage import create_run, finish_run, set_vantage, write_measurement

NET_A = (64500, "TESTNET-A")
# A long name, as real ones are: the report must fit it, not clip it.
NET_B = (64501, "Example Broadband Internet Services of a Rather Long Name (Private) Limited")
A, B = f"AS{NET_A[0]} {NET_A[1]}", f"AS{NET_B[0]} {NET_B[1]}"

OK = ("ok", None, "ok")
ERROR = ("error", None, "local/network_unreachable")
DOWN = ("down", "tcp", "tcp/connection_refused")
NXDOMAIN = ("blocked", "dns", "dns/nxdomain")
CENSOR_IP = ("blocked", "dns", "dns/censor-ip:nayatel_dns")
SNI_RESET = ("blocked", "tls", "tls/connection_reset")
SURF_SAFELY = ("blocked", "http", "http/blockpage:pk_surfsafely")
MOBILINK = ("blocked", "http", "http/blockpage:pk_mobilink_redirect")
HTTP_DIFF = ("anomaly", "http", "http/diff")
TCP_TIMEOUT = ("anomaly", "tcp", "tcp/generic_timeout_error")

CATEGORY = {"blocked": "NEWS", "anomaly": "POLR", "flap": "HUMR", "page": "NEWS", "down": "GMB", "ok": "NEWS",
            "error": "COMT", "odd": "HUMR"}
# Runs in the order they were made: (network, start time, verdict per host).
RUNS = [
    (NET_A, "2025-10-01T08:00:00+00:00", {"blocked": OK, "anomaly": OK, "flap": SURF_SAFELY, "page": SURF_SAFELY,
                                          "down": DOWN, "ok": OK, "error": OK, "odd": OK}),
    (NET_A, "2025-10-01T14:00:00+00:00", {"blocked": NXDOMAIN, "anomaly": HTTP_DIFF, "flap": OK, "page": MOBILINK,
                                          "down": DOWN, "ok": OK, "error": ERROR, "odd": OK}),
    (NET_B, "2025-10-01T20:00:00+00:00", {"blocked": CENSOR_IP, "anomaly": HTTP_DIFF, "flap": OK,
                                          "page": SURF_SAFELY, "down": DOWN, "ok": OK, "error": ERROR}),
    (NET_A, "2025-10-02T09:30:00+00:00", {"blocked": SNI_RESET, "anomaly": OK, "flap": SURF_SAFELY, "page": MOBILINK,
                                          "down": DOWN, "ok": OK, "error": ERROR, "odd": TCP_TIMEOUT}),
]
LISTED = ["http://blocked.test/", "http://anomaly.test/", "http://down.test/", "http://never.test/"]


def url(host: str) -> str:
    return f"http://{host}.test/"


def build(path: Path):
    db = open_db(path)
    add_runs(db, RUNS)
    for doc in claims.builtin_claims():
        claims.add(db, doc)
    cid = claims.add(db, {"key": "test-list", "authority": "Test Authority", "date": "2025-10-01",
                          "claimed_count": 5, "covers": "websites and an account"})
    rows = "".join(f"{u},2025-10-01,TA,website\n" for u in LISTED) + "https://facebook.com/someone,2025-10-01,TA," \
                                                                     "facebook_account\n"
    claims.import_items(db, cid, "url,date_published,authority,kind\n" + rows, "items.csv")
    return db


def add_runs(db, runs: list[tuple[tuple[int, str], str, dict[str, tuple[str, str | None, str]]]]) -> None:
    for (asn, network), started, verdicts in runs:
        targets = [normalise(url(h), category=CATEGORY.get(h, "")) for h in verdicts]
        run_id = create_run(db, options={}, software_version="test", rules_version="test", targets=targets,
                            resolvers=[])
        set_vantage(db, run_id, asn, network, "PK", None)
        for target in targets:
            status, layer, detail = verdicts[target.hostname.removesuffix(".test")]
            fingerprint = detail.split(":", 1)[1] if ":" in detail else None
            verdict = Verdict(status=status, layer=layer, detail=detail, rule=f"test-{status}",  # type: ignore[arg-type]
                              control="ok", fingerprint=fingerprint, evidence=f"{status} because the test says so")
            with db.atomic():
                write_measurement(db, run_id, Observations(target=target, started=started, runtime_s=0.5), verdict,
                                  "test", keep_body=False)
        finish_run(db, run_id, "done")
        db.table("runs").update(run_id, {"started": started})


def many_runs(db, n: int) -> None:
    """n more runs of network A, three a day, with the blocked count going up and down: a crowded time axis."""
    hosts = [f"site{i}" for i in range(12)]
    runs = []
    for i in range(n):
        started = f"2025-11-{1 + i // 3:02d}T{6 + 6 * (i % 3):02d}:00:00+00:00"
        runs.append((NET_A, started, {h: NXDOMAIN if j < 3 + i % 7 else HTTP_DIFF if j == 11 else OK
                                      for j, h in enumerate(hosts)}))
    add_runs(db, runs)
