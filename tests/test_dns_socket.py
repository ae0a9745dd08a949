"""The run's shared sockets to a resolver: an ICMP error meant for one query fails no other.

A connected UDP socket reports an ICMP error to whichever call comes next, without saying which datagram it
answers. Here the kernel rejects (ICMP host prohibited) only the queries for one name, in a network namespace
of the test's own, while ten other names are asked on the same socket at the same time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from probe.measure.steps.dns import SENDS

NS = os.environ.get("PROBE_TEST_LAB_PREFIX", "plt")[:-1] + "i"  # machine-wide: one per checkout

QUERIES = r"""
import json, trio
from probe.lab.servers import DnsEntry, DnsZone, serve_dns
from probe.measure.steps import dns
from probe.measure.steps.dns_socket import DnsSockets

zone = DnsZone(entries={"*.test": DnsEntry(a=("198.18.0.9",))}, delay=0.2)
names = [f"w{i}.test" for i in range(10)] + ["blocked.test"]
out = {}

async def main():
    async with trio.open_nursery() as servers:
        port = await servers.start(serve_dns, zone, "127.0.0.1", 5353)
        resolver = dns.Resolver(ip="127.0.0.1", port=port)
        async with DnsSockets.open() as sockets:
            async def ask(name):
                q, _ = await dns.query(resolver, name, "A", sockets=sockets, timeout=2, late_window=0,
                                       clock=trio.current_time)
                out[name] = [q.failure, list(q.answers), q.retransmits]
            async with trio.open_nursery() as queries:
                for name in names:
                    queries.start_soon(ask, name)
        servers.cancel_scope.cancel()
    print(json.dumps(out))

trio.run(main)
"""


def _ns(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", NS, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.root("ip", "iptables")
def test_an_icmp_error_for_one_name_fails_only_that_name_s_query():
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        _ns("ip", "link", "set", "lo", "up").check_returncode()
        _ns("iptables", "-A", "INPUT", "-p", "udp", "--dport", "5353", "-m", "string", "--string", "blocked",
            "--algo", "bm", "-j", "REJECT", "--reject-with", "icmp-host-prohibited").check_returncode()
        proc = _ns(sys.executable, "-c", QUERIES)
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    # The rejected name reports the ICMP error (after its retransmissions met the same refusal)...
    assert out.pop("blocked.test") == ["host_unreachable", [], SENDS - 1]
    # ...and every other query on the same socket was answered, once, as if nothing had happened.
    assert out == {f"w{i}.test": [None, ["198.18.0.9"], 0] for i in range(10)}
