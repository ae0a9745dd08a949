"""`probe lab run`: measure the scenarios from inside the client namespace and score the verdicts.

The probe runs exactly as a volunteer would run it (`probe run`, the system resolver from the client's
resolv.conf), plus the lab's control, CA and signature pack, and the public resolver as a second resolver so
that transparent DNS interception shows. Scenarios marked for DoH-only control run in a second `probe run`
without the helper. Each scenario must get its exact status (blocked is not anomaly) and layer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..verdicts import INTERFERENCE, STATUSES
from . import shaping
from .scenarios import Control, Resolver, Scenario
from .topology import (
    CHECK_HOST,
    DNS_IP,
    DOH_IP,
    HELPER_IP,
    HELPER_PORT,
    HIJACK_DNS_IP,
    UNREACHABLE_CONTROL_IP,
    Lab,
    LabError,
)


@dataclass(frozen=True, slots=True)
class Outcome:
    scenario: Scenario
    status: str
    layer: str | None
    detail: str
    fingerprint: str | None
    quic: str | None = None  # the QUIC value beside the status (analysis/quic.py)

    @property
    def correct(self) -> bool:
        s = self.scenario
        return (self.status == s.expect and self.layer == s.layer
                and (s.fingerprint is None or self.fingerprint == s.fingerprint)
                and (s.quic is None or self.quic == s.quic)
                and (s.detail is None or self.detail == s.detail))

    @property
    def false_positive(self) -> bool:
        return self.scenario.expect in ("ok", "down") and self.status in INTERFERENCE


def probe_command(lab: Lab, list_file: Path, db: Path, extra: tuple[str, ...] = (),
                  control: Control = "full", resolver: Resolver = "isp") -> list[str]:
    control_ip = UNREACHABLE_CONTROL_IP if control == "down" else None
    helper = ("--helper", f"http://{control_ip or HELPER_IP}:{HELPER_PORT}/") if control != "doh" else ()
    # The ISP's resolver (the client's resolv.conf) and the public one; or only the one that hijacks NXDOMAIN.
    resolvers = ("--resolver", DNS_IP) if resolver == "isp" else ("--no-system-resolver", "--resolver", HIJACK_DNS_IP)
    return ["ip", "netns", "exec", lab.client, sys.executable, "-m", "probe", "run", str(list_file),
            "--db", str(db), "--json", "--quiet", "--accept-risk", *helper,
            "--doh", f"https://{control_ip or DOH_IP}/dns-query", "--ca-file", str(lab.ca_file),
            "--allow-net", "198.18.0.0/15", *resolvers,
            "--signatures", str(lab.signatures_file), "--data-dir", str(lab.state / "data"),
            "--ip-service", f"http://{HELPER_IP}:{HELPER_PORT}/ip",
            "--portal-check", f"http://{CHECK_HOST}/generate_204",
            "--timeout", "4", "--dns-timeout", "2", *extra]


def run_scenarios(lab: Lab, scenarios: tuple[Scenario, ...], db: Path | None = None,
                  extra: tuple[str, ...] = ()) -> list[Outcome]:
    if not lab.is_up():
        lab.up()
    db = db or lab.state / "lab.db"
    got: dict[str, dict] = {}
    for control, resolver, speed in dict.fromkeys((s.control, s.resolver, s.line) for s in scenarios):
        part = [s for s in scenarios if (s.control, s.resolver, s.line) == (control, resolver, speed)]
        with shaping.line(lab, speed):  # a slow access line slows everything: a probe run of its own
            got.update(_run_probe(lab, part, db, extra, control, resolver))
    outcomes = []
    for s in scenarios:
        row = got.get(s.url)
        if row is None:
            raise LabError(f"no verdict for {s.url}")
        outcomes.append(Outcome(s, row["status"], row["layer"], row["detail"], row["fingerprint"], row.get("quic")))
    return outcomes


def _run_probe(lab: Lab, scenarios: list[Scenario], db: Path, extra: tuple[str, ...],
               control: Control, resolver: Resolver) -> dict[str, dict]:
    list_file = lab.state / f"scenarios-{control}-{resolver}.txt"
    list_file.write_text("".join(f"{s.url}\n" for s in scenarios))
    env = {k: v for k, v in os.environ.items() if k != "PROBE_RESOLV_CONF"}  # the client's own resolv.conf
    proc = subprocess.run(probe_command(lab, list_file, db, extra, control, resolver), capture_output=True, text=True,
                          timeout=600, env=env)
    if proc.returncode not in (0,):
        raise LabError(f"probe run in the lab exited {proc.returncode}: {proc.stderr[-2000:]}")
    return {row["url"]: row for row in map(json.loads, proc.stdout.splitlines())}


def report(outcomes: list[Outcome]) -> str:
    lines = [f"{'scenario':24} {'control':8} {'expected':16} {'got':52}", "-" * 106]
    for o in outcomes:
        s = o.scenario
        expected = f"{s.expect}/{s.layer or '-'}" + (f" quic {s.quic}" if s.quic else "")
        got = f"{o.status} {o.detail}" + (f" quic {o.quic}" if s.quic else "")
        lines.append(f"{s.name:24} {s.control:8} {expected:16} {got:52} {'✓' if o.correct else '✗'}")
    total = len(outcomes)
    correct = sum(o.correct for o in outcomes)
    clean = [o for o in outcomes if o.scenario.expect in ("ok", "down")]
    fps = sum(o.false_positive for o in outcomes)
    named = [o for o in outcomes if o.scenario.fingerprint]
    lines += ["-" * 106, f"accuracy: {correct}/{total} scenarios right (exact status, layer and fingerprint)"]
    for status in STATUSES:
        want = [o for o in outcomes if o.scenario.expect == status]
        if want:
            lines.append(f"  expected {status}: {sum(o.correct for o in want)}/{len(want)} right"
                         f" (got: {', '.join(f'{k} {v}' for k, v in _counts(want).items())})")
    lines += [f"false positives: {fps}/{len(clean)} clean or down sites reported as blocked or anomaly",
              f"blockpages named by signature: {sum(o.fingerprint == o.scenario.fingerprint for o in named)}"
              f"/{len(named)}"]
    return "\n".join(lines)


def _counts(outcomes: list[Outcome]) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in outcomes:
        out[o.status] = out.get(o.status, 0) + 1
    return out
