"""Where on the path a TLS failure sits, from the locate step's TTL-limited ClientHellos (steps/locate.py).

Pure. For each address, the first TTL at which the interference shows: a reset or EOF where it first comes
back, or, for a handshake that gets nothing, the first TTL of the run of timeouts that lasts to the last TTL
(below it, routers' ICMP time exceeded said the ClientHello expired on the way). The censor sits after the
router that answered the TTL before (when ICMP named it) and no further than the hop that TTL reaches: a filter
in a router's forwarding path sees a packet only when it survived that router's TTL check, so the ISP router's
own filter shows at TTL 2, after the ISP router (hop 1). It never changes a verdict: it is evidence for
researchers (the ISP, or a gateway upstream).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..failures import TIMEOUT
from ..models import TtlProbe

RESETS = ("connection_reset", "connection_aborted", "eof_error")
EXPIRED = "host_unreachable"  # an ICMP error for the connection: the ClientHello did not get that far


@dataclass(frozen=True, slots=True)
class Location:
    ip: str
    ttl: int | None  # the first TTL at which the interference shows; None: not located
    failure: str | None  # what it was there (a reset, EOF or timeout)
    router: str | None  # the router that answered the TTL before (ICMP time exceeded), when one did
    why: str = ""  # why it was not located

    @property
    def hop(self) -> int | None:
        """The hop of the last router before the interference (0: before the first router)."""
        return None if self.ttl is None else self.ttl - 1

    def sentence(self) -> str:
        if self.ttl is None:
            return f"{self.ip}: not located ({self.why})"
        where = f"{self.failure} from TTL {self.ttl} on"
        if self.ttl == 1:
            return f"{self.ip}: {where}: the interference sits before the first router"
        router = f"router {self.router}" if self.router else "a router that sent no ICMP"
        return f"{self.ip}: {where}: the interference sits after {router} (hop {self.hop})"


def locate(probes: tuple[TtlProbe, ...]) -> tuple[Location, ...]:
    """One Location per address the locate step tried, in the order it tried them."""
    by_ip: dict[str, list[TtlProbe]] = {}
    for p in probes:
        by_ip.setdefault(p.ip, []).append(p)
    return tuple(_one(ip, sorted(ps, key=lambda p: p.ttl)) for ip, ps in by_ip.items())


def _one(ip: str, probes: list[TtlProbe]) -> Location:
    sent = [p for p in probes if p.failed_step != "tcp"]  # a connection that failed carried no ClientHello
    if not sent:
        return Location(ip, None, None, None, "no connection got through")
    first = next((p for p in sent if p.failure in RESETS), None)
    if first is None:
        # Timeouts to the end, and no reply from the far end after them: a drop from that TTL on.
        tail: list[TtlProbe] = []
        for p in reversed(sent):
            if p.failure != TIMEOUT:
                break
            tail.insert(0, p)
        if not tail or len(tail) == len(sent):
            why = ("no TTL got a reset or timeout" if not tail
                   else "every TTL timed out: no router sent ICMP time exceeded")
            return Location(ip, None, None, None, why)
        if sent[len(sent) - len(tail) - 1].failure is None:
            return Location(ip, None, None, None, "a reply came at a lower TTL than the timeouts")
        first = tail[0]
    before = next((p for p in probes if p.ttl == first.ttl - 1), None)
    router = before.router if before is not None and before.icmp == "time_exceeded" else None
    return Location(ip, first.ttl, first.failure, router)
