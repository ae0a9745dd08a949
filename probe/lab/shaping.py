"""The lab's traffic shaping: throttled sites, a handshake that trickles and stalls, and a slow access line.

All of it sits on the ISP router's link to the volunteer (`<p>-i0`), on what the volunteer downloads:
- an HTB root whose unclassified traffic goes straight through (`default 0`: no class, no limit);
- per throttled site, a class whose token bucket (tbf) lets its packets out at THROTTLE bytes a second, by the
  site's source address: the volunteer gets the page slowly, the helper (in the lab's internet) at full speed.
  tbf, not an HTB rate: tbf cuts a large segmentation-offload packet into wire packets before it queues it, so
  the rate holds from the first byte;
- for a trickle-stall site, an in-path box (`relay`, a process in the router; iptables sends the site's port 443
  to it): it passes what the volunteer sends, and of what the site answers on each connection lets TRICKLE_BYTES
  through, a few bytes at a time, and then nothing: each handshake reads the start of the server's flight and
  stalls. (Not tc and conntrack: the server's whole flight crosses the router as one offloaded packet, which a
  byte counter lets through or drops whole.)
- the slow line (`line("slow")`): a catch-all filter, added for one probe run only, sends everything else
  through a class limited to SLOW_LINE;
- the lossy line (`line("lossy")`): for one probe run, iptables drops LOSSY_LINE of the volunteer's packets,
  both ways, the ISP's own resolver included (as bench/world.py --loss does).

This kernel has no netem (DESIGN.md): no delay or loss here, only rates, which tbf and HTB do.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from .scenarios import Line, Scenario

if TYPE_CHECKING:
    from .topology import Lab

THROTTLE = "512kbit"  # 64 KB/s: the line carries ~300 times that from the helper
TRICKLE_BYTES, TRICKLE_PIECE, TRICKLE_EVERY = 600, 50, 0.2  # 250 B/s up to 600 bytes of the server's flight
RELAY_PORT = 8444
SLOW_LINE = "4mbit"  # 500 KB/s: a thin home line
LOSSY_LINE = 0.05  # of the volunteer's packets, each way
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
    for k, s in enumerate((s for s in scenarios if s.censor == "throttle"), start=10):
        classid = f"1:{k}"
        _bucket(lab, classid, THROTTLE)
        _tc(lab, "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip",
            "src", f"{s.ips[0]}/32", "flowid", classid)
    stalled = [s.ips[0] for s in scenarios if s.censor == "trickle-stall"]
    if stalled:
        _start_relay(lab, stalled)


def _start_relay(lab: Lab, addresses: list[str]) -> None:
    from .topology import ISP_CLIENT_IP

    ready = lab.state / "relay.ready"
    path = lab.state / "relay.json"
    path.write_text(json.dumps({"listen": ISP_CLIENT_IP, "port": RELAY_PORT, "ready": str(ready)}))
    pid = lab._spawn("relay", lab.isp, sys.executable, "-m", "probe.lab.shaping", str(path))
    lab._wait_ready(ready, pid, "relay", "the lab's trickle-stall box", 10)
    for ip in addresses:
        lab.ns(lab.isp, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", _dev(lab), "-p", "tcp", "-d", ip,
               "--dport", "443", "-j", "REDIRECT", "--to-ports", str(RELAY_PORT))


async def relay(listen: str, port: int, ready: Path | None = None) -> None:
    """The trickle-stall box: connects on to where the volunteer meant to go (the original destination, which
    the REDIRECT keeps for SO_ORIGINAL_DST), passes the volunteer's bytes, and trickles then stalls the site's."""
    listeners = await trio.open_tcp_listeners(port, host=listen)

    async def pump_up(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
        try:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                while data := await src.receive_some(65536):
                    await dst.send_all(data)
        finally:
            await trio.aclose_forcefully(dst)  # the volunteer gave up: so does the box, both ways

    async def trickle(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
        sent = 0
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await src.receive_some(TRICKLE_PIECE):
                if sent >= TRICKLE_BYTES:
                    continue  # stalled: read and dropped, nothing more reaches the volunteer
                piece = data[: TRICKLE_BYTES - sent]
                await dst.send_all(piece)
                sent += len(piece)
                await trio.sleep(TRICKLE_EVERY)

    async def handle(stream: trio.SocketStream) -> None:
        raw = stream.socket.getsockopt(socket.SOL_IP, _SO_ORIGINAL_DST, 16)
        dst_port, dst_ip = struct.unpack_from("!H", raw, 2)[0], socket.inet_ntoa(raw[4:8])
        try:
            up = await trio.open_tcp_stream(dst_ip, dst_port)
        except OSError:
            await trio.aclose_forcefully(stream)
            return
        async with stream, up, trio.open_nursery() as n:
            n.start_soon(pump_up, stream, up)
            n.start_soon(trickle, up, stream)

    async with trio.open_nursery() as n:
        n.start_soon(trio.serve_listeners, handle, listeners)
        if ready is not None:
            ready.touch()


_SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h


@contextlib.contextmanager
def line(lab: Lab, speed: Line) -> Iterator[None]:
    """The volunteer's whole line at `speed` while the block runs (run.py: one probe run per line speed)."""
    if speed == "fast":
        yield
        return
    dev = _dev(lab)
    if speed == "lossy":
        _lossy(lab, on=True)
        try:
            yield
        finally:
            _lossy(lab, on=False)
        return
    _tc(lab, "filter", "add", "dev", dev, "parent", "1:", "protocol", "all", "prio", _LINE_PRIO, "u32", "match",
        "u32", "0", "0", "flowid", _LINE_CLASS)
    try:
        yield
    finally:
        _tc(lab, "filter", "del", "dev", dev, "parent", "1:", "prio", _LINE_PRIO)



def _lossy(lab: Lab, *, on: bool) -> None:
    stat = ["-m", "statistic", "--mode", "random", "--probability", str(LOSSY_LINE), "-j", "DROP"]
    for chain, way in (("FORWARD", "-i"), ("FORWARD", "-o"), ("INPUT", "-i"), ("OUTPUT", "-o")):
        lab.ns(lab.isp, "iptables", "-I" if on else "-D", chain, way, _dev(lab), *stat)


if __name__ == "__main__":
    _config = json.loads(Path(sys.argv[1]).read_text())
    trio.run(relay, _config["listen"], _config["port"], Path(_config["ready"]))
