"""The lab's traffic shaping: throttled sites, a handshake that trickles and stalls, and a slow access line.

All of it sits on the ISP router's link to the volunteer (`<p>-i0`), on what the volunteer downloads:
- an HTB root whose unclassified traffic goes straight through (`default 0`: no class, no limit);
- per throttled site, a class whose token bucket (tbf) lets its packets out at THROTTLE bytes a second, by the
  site's source address: the volunteer gets the page slowly, the helper (in the lab's internet) at full speed.
  tbf, not an HTB rate: tbf cuts a large segmentation-offload packet into wire packets before it queues it, so
  the rate holds from the first byte;
- for a trickle-stall site, the same at TRICKLE, and an iptables rule that drops the site's packets on a
  connection once it has sent STALL_AFTER bytes (conntrack's byte counters): each handshake reads the start of
  the server's flight (the certificate does not fit in one packet) and then nothing;
- the slow line (`line("slow")`): a catch-all filter, added for one probe run only, sends everything else
  through a class limited to SLOW_LINE.

This kernel has no netem (DESIGN.md): no delay or loss here, only rates, which tbf and HTB do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .scenarios import Line, Scenario

if TYPE_CHECKING:
    from .topology import Lab

THROTTLE = "512kbit"  # 64 KB/s: the line carries ~300 times that from the helper
TRICKLE = "16kbit"  # 2 KB/s
STALL_AFTER = 2000  # bytes a trickle-stall site may send on one connection (its SYN-ACK and one full packet)
SLOW_LINE = "4mbit"  # 500 KB/s: a thin home line
_LINE_CLASS, _LINE_PRIO = "1:1", "9"


def _dev(lab: Lab) -> str:
    return f"{lab.prefix}-i0"


def _tc(lab: Lab, *args: str) -> None:
    lab.ns(lab.isp, "tc", *args)


def _bucket(lab: Lab, classid: str, rate: str) -> None:
    """An HTB class (never the limit itself) with a tbf that sends at `rate`, queueing up to a few seconds."""
    dev = _dev(lab)
    _tc(lab, "class", "add", "dev", dev, "parent", "1:", "classid", classid, "htb", "rate", "10gbit")
    _tc(lab, "qdisc", "add", "dev", dev, "parent", classid, "tbf", "rate", rate, "burst", "3000", "limit",
        "4mb")


def install(lab: Lab, scenarios: tuple[Scenario, ...]) -> None:
    """Called once by topology.py when the lab comes up."""
    dev = _dev(lab)
    _tc(lab, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "0")
    _bucket(lab, _LINE_CLASS, SLOW_LINE)  # unused until line("slow") sends traffic to it
    shaped = [s for s in scenarios if s.censor in ("throttle", "trickle-stall")]
    for k, s in enumerate(shaped, start=10):
        classid = f"1:{k}"
        _bucket(lab, classid, THROTTLE if s.censor == "throttle" else TRICKLE)
        _tc(lab, "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip",
            "src", f"{s.ips[0]}/32", "flowid", classid)
        if s.censor == "trickle-stall":
            lab.ns(lab.isp, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1")
            lab.ns(lab.isp, "iptables", "-A", "FORWARD", "-o", dev, "-p", "tcp", "-s", s.ips[0], "-m", "connbytes",
                   "--connbytes", f"{STALL_AFTER}:", "--connbytes-dir", "reply", "--connbytes-mode", "bytes",
                   "-j", "DROP")


@contextlib.contextmanager
def line(lab: Lab, speed: Line) -> Iterator[None]:
    """The volunteer's whole line at `speed` while the block runs (run.py: one probe run per line speed)."""
    if speed == "fast":
        yield
        return
    dev = _dev(lab)
    _tc(lab, "filter", "add", "dev", dev, "parent", "1:", "protocol", "all", "prio", _LINE_PRIO, "u32", "match",
        "u32", "0", "0", "flowid", _LINE_CLASS)
    try:
        yield
    finally:
        _tc(lab, "filter", "del", "dev", dev, "parent", "1:", "prio", _LINE_PRIO)
