"""Throttling: a page that comes, but far slower here than at the control and than this line carries.

Pure, like the rest of analysis. Three speeds meet (bytes per second from a response's first byte to its last,
steps/transfer.py):
- here: the page the main chain ends on, and the same page fetched once more ("repeat" chain, measure.py);
- the control: the helper's own fetch of the page (`x_transfer` in its reply);
- the line: the run's survey fetched a sized body from our helper (netview.line), stored with the run so that
  `probe reanalyze` judges with it too; and a second sample fetched from the helper at the same time as the
  page's second fetch (chain "line", steps/line.py), stored with the URL's observations.
A throttled site is slow here only: `DROP` times slower than at the control (OONI's design dd-007 flags a 10x
drop) *and* than the line, on both fetches, for a body large enough to time (`MIN_BODY`), and the second fetch
DROP times slower than the line sample taken beside it. What it is not:
- a site slow for everyone: the control is slow too, so no drop against the control;
- a big page on a slow line: the line's own speed explains it, so no drop against the line;
- a lossy line or a congested moment: a second fetch does not reproduce it (and loss slows the survey too);
- a line (or this machine) busy at the moment: the sample beside the second fetch is slowed as much. (Found by
  bench/transfer.py: 200 large pages at once on loopback, measured against a survey made while idle.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..models import ControlResult, HttpHop, NetworkView, Observations, TlsHandshake

MIN_BODY = 64 * 1024  # smaller bodies are over in a few round trips: their speed is the line's latency
DROP = 10.0  # OONI's dd-007: a 10x drop
REPEAT_CHAIN = "repeat"  # HttpHop.chain of the second fetch of a page that came slowly
LINE_CHAIN = "line"  # HttpHop.chain of the line's sample (steps/line.py) fetched beside it
TIMEOUT = "generic_timeout_error"


QUICKEST = 0.001  # seconds: a transfer quicker than this is timed as this long (a lower bound of its speed)


def rate(transfer: dict[str, Any]) -> float | None:
    """Bytes per second from the first byte to the last, stalls left out; None when unknown. The first read's
    bytes had arrived before the clock started: they are left out when the reads were recorded. A stall (a gap of
    200 ms or more between reads, steps/transfer.STALL) is how loss shows: a retransmission timeout between bursts
    at the line's speed; throttling comes steadily. Left out on every side alike (page, control, line), a lossy
    line is judged by its speed between losses, which is no drop. A transfer too quick for the clock (one read,
    or under QUICKEST) gets a lower bound of its speed: a fast line or control is never overstated, and a page
    that came in one read can never look slow."""
    try:
        n, duration = int(transfer["bytes"]), float(transfer["duration"]) - float(transfer.get("stalled") or 0)
        events = transfer.get("events") or ()
        rest = n - int(events[0][1]) if events else n
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if n <= 0:
        return None
    return (rest if rest > 0 else n) / max(duration, QUICKEST)


def _large(hop: HttpHop | None) -> bool:
    return hop is not None and hop.failure is None and (hop.body_length or 0) >= MIN_BODY


def worth_repeating(hop: HttpHop | None, control: ControlResult | None) -> bool:
    """Measuring asks this once the helper answered: fetch the page again only when it came DROP times slower
    than at the control (a second fetch of every large page would double a run's traffic)."""
    if not _large(hop) or control is None or control.failure is not None:
        return False
    assert hop is not None
    here, there = rate(hop.transfer), rate(control.http_transfer)
    return here is not None and there is not None and here * DROP <= there


def line_sample_size(hop: HttpHop) -> int:
    """Bytes to ask the helper for beside a page's second fetch: as many as the page (TCP's slow start weighs the
    same on both), within [MIN_BODY, 256 KiB]."""
    return max(MIN_BODY, min(hop.body_length or 0, 256 * 1024))


@dataclass(frozen=True, slots=True)
class Throughput:
    """The speeds a throttling rule reads (bytes per second; None where not measured)."""

    here: float | None = None
    again: float | None = None  # the repeat fetch's; None when there was none (or it failed)
    repeated: bool = False  # a repeat fetch was made
    control: float | None = None
    line: float | None = None
    line_now: float | None = None  # the sample fetched beside the second fetch; None when there was none
    body: int = 0

    def slow(self, r: float | None) -> bool:
        """DROP times slower than the control and than the line: neither the site nor the line explains it."""
        return (r is not None and self.body >= MIN_BODY and self.control is not None and self.line is not None
                and r * DROP <= self.control and r * DROP <= self.line)

    @property
    def throttled(self) -> bool:
        beside = self.again is not None and self.line_now is not None and self.again * DROP <= self.line_now
        return self.slow(self.here) and self.slow(self.again) and beside

    @property
    def unconfirmed(self) -> bool:
        """Slow twice, but the line's sample beside the second fetch failed: the line at that moment is unknown."""
        return self.slow(self.here) and self.slow(self.again) and self.line_now is None

    def describe(self) -> str:
        def kib(r: float | None) -> str:
            return "?" if r is None else f"{r / 1024:.0f} KiB/s"

        again = f", again {kib(self.again)} (line meanwhile {kib(self.line_now)})" if self.repeated else ""
        return (f"{self.body // 1024} KiB at {kib(self.here)}{again}; control {kib(self.control)}; "
                f"line {kib(self.line)}")


def throughput(obs: Observations, final: HttpHop | None, network: NetworkView | None) -> Throughput:
    c = obs.control if obs.control is not None and obs.control.failure is None else None
    repeat = obs.chain(REPEAT_CHAIN)
    again = repeat[-1] if repeat else None
    sample = obs.chain(LINE_CHAIN)
    line_now = None
    if sample and sample[-1].failure is None and sample[-1].status == 200 and final is not None and \
            (sample[-1].body_length or 0) >= line_sample_size(final) // 2:
        line_now = rate(sample[-1].transfer)
    return Throughput(
        here=rate(final.transfer) if final is not None and final.failure is None else None,
        again=rate(again.transfer) if again is not None and _large(again) else None,
        repeated=bool(repeat),
        control=rate(c.http_transfer) if c is not None else None,
        line=rate(network.line) if network is not None else None,
        line_now=line_now,
        body=(final.body_length or 0) if final is not None else 0,
    )


@dataclass(frozen=True, slots=True)
class TlsTrickle:
    """Handshakes with the real name that read some bytes and then nothing until the timeout."""

    tries: int = 0  # real-name tries at the failing address that trickled
    failed: int = 0  # real-name tries at that address that failed
    line: bool = False  # the survey measured this line's speed (it carries bytes fine)

    @property
    def reproduced(self) -> bool:
        return self.tries >= 2 and self.tries == self.failed


def tls_trickle(obs: Observations, failing: TlsHandshake | None, network: NetworkView | None) -> TlsTrickle:
    """A dropped ClientHello reads nothing; a reset ends at once; a handshake whose server flight trickles in
    and stops reads part of it and times out. Part: fewer bytes than the helper's own handshake with the same
    address and name read in full (its `x_transfer`); a whole flight read and then a timeout is this machine too
    busy to finish, not a trickle. (Records without transfer evidence, ours or the helper's, never count.)"""
    line = network is not None and rate(network.line) is not None
    if failing is None or failing.failure != TIMEOUT:
        return TlsTrickle(line=line)
    c = obs.control if obs.control is not None and obs.control.failure is None else None
    key = f"[{failing.ip}]:{failing.port}" if ":" in failing.ip else f"{failing.ip}:{failing.port}"
    theirs = (c.tls_handshake.get(key) or {}) if c is not None else {}
    full = int((theirs.get("x_transfer") or {}).get("bytes") or 0) if theirs.get("status") else 0
    tries = [h for h in obs.tls if h.ip == failing.ip and h.port == failing.port and not h.decoy]
    trickled = [h for h in tries if h.failure == TIMEOUT and 0 < int(h.transfer.get("bytes") or 0) < full]
    return TlsTrickle(tries=len(trickled), failed=sum(1 for h in tries if h.failure), line=line)
