"""Hostile requests against the control helper; run by tests/test_helper_hostile.py.

Run as a script (`python -m tests.hostile_helper`), it prints one JSON line of problems: the test runs it inside
a fresh network namespace (`unshare -n`, loopback only) so that even a buggy helper could not send a packet to a
private address of the machine's real network. A canary listens on every local address of that namespace at
the port every hostile target names: it must see no connection at all.
"""

from __future__ import annotations

import json
import socket
import sys
from functools import partial

import httpx
import trio

from probe.control.helper_server import MAX_ENDPOINTS, serve_forever
from probe.lab.servers import DnsEntry, DnsZone, serve_dns

CANARY = 18999
LOCAL_TARGETS = [
    "127.0.0.1", "127.1.2.3", "0.0.0.0", "[::1]", "[::]", "[::ffff:127.0.0.1]", "[::127.0.0.1]",
    "[2002:7f00:1::1]", "rebind.test", "rebind6.test", "localhost.test",
]
PRIVATE_TARGETS = [  # only reachable from inside the private namespace: they must be refused before dialling
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "198.18.0.1", "224.0.0.1",
    "255.255.255.255", "[fc00::1]", "[fe80::1]", "[ff02::1]", "[::ffff:10.0.0.1]", "private.test",
]


def malformed() -> list[tuple[str, bytes | str, int]]:
    """(description, body, expected status)."""
    ok_url = "http://nx.test/"
    many = [f"203.0.113.{i}:80" for i in range(MAX_ENDPOINTS + 1)]
    return [
        ("not JSON", b"{not json", 400),
        ("JSON array", b"[1,2]", 400),
        ("empty body", b"", 400),
        ("no http_request", json.dumps({"tcp_connect": []}), 400),
        ("http_request is a number", json.dumps({"http_request": 42}), 400),
        ("file scheme", json.dumps({"http_request": "file:///etc/passwd"}), 400),
        ("gopher scheme", json.dumps({"http_request": "gopher://127.0.0.1:70/"}), 400),
        ("URL with credentials", json.dumps({"http_request": "http://u:p@nx.test/"}), 400),
        ("10,000-char URL", json.dumps({"http_request": "http://a.test/" + "x" * 10000}), 400),
        ("too many endpoints", json.dumps({"http_request": ok_url, "tcp_connect": many}), 400),
        ("endpoint is a name", json.dumps({"http_request": ok_url, "tcp_connect": ["nx.test:80"]}), 400),
        ("endpoint port 0", json.dumps({"http_request": ok_url, "tcp_connect": ["203.0.113.1:0"]}), 400),
        ("endpoint port 70000", json.dumps({"http_request": ok_url, "tcp_connect": ["203.0.113.1:70000"]}), 400),
        ("endpoint not a string", json.dumps({"http_request": ok_url, "tcp_connect": [[1, 2]]}), 400),
        ("tcp_connect not a list", json.dumps({"http_request": ok_url, "tcp_connect": "x"}), 400),
        ("headers not an object", json.dumps({"http_request": ok_url, "http_request_headers": []}), 400),
        ("100 KB body", json.dumps({"http_request": ok_url, "pad": "x" * 100_000}), 413),
        ("control characters in URL", json.dumps({"http_request": "http://a.test/\u0000"}), 400),
    ]


async def canary(count: list[int], host: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    await sock.bind((host, CANARY))
    sock.listen(16)
    task_status.started()
    while True:
        conn, _ = await sock.accept()
        count[0] += 1
        conn.close()


async def run(extended: bool) -> dict:
    problems: list[str] = []
    hits = [0]
    zone = DnsZone(entries={"rebind.test": DnsEntry(a=("127.0.0.1",)), "rebind6.test": DnsEntry(aaaa=("::1",)),
                            "localhost.test": DnsEntry(a=("127.0.0.1",), aaaa=("::1",)),
                            "private.test": DnsEntry(a=("10.0.0.1",))})
    targets = LOCAL_TARGETS + (PRIVATE_TARGETS if extended else [])
    sent = 0
    async with trio.open_nursery() as n:
        await n.start(canary, hits, "0.0.0.0")
        await n.start(canary, hits, "::")
        dns_port = await n.start(serve_dns, zone)
        port = await n.start(partial(serve_forever, "127.0.0.1", 0, resolvers=(f"127.0.0.1:{dns_port}",),
                                     timeout=1.0))
        url = f"http://127.0.0.1:{port}/"
        async with httpx.AsyncClient(timeout=20) as client:
            for host in targets:  # SSRF by URL
                sent += 1
                r = await client.post(url, json={"http_request": f"http://{host}:{CANARY}/"})
                failure = r.json().get("http_request", {}).get("failure") or "" if r.status_code == 200 else ""
                if not (r.status_code == 400 or failure.startswith("refused")):
                    problems.append(f"URL {host}: {r.status_code} {r.text[:200]}")
            for host in targets:  # SSRF by endpoint
                if host.endswith(".test"):
                    continue
                sent += 1
                r = await client.post(url, json={"http_request": "http://nx.test/",
                                                 "tcp_connect": [f"{host}:{CANARY}"]})
                if r.status_code == 400:
                    continue
                entries = r.json().get("tcp_connect", {})
                if not entries or not all(str(e.get("failure", "")).startswith("refused") for e in entries.values()):
                    problems.append(f"endpoint {host}: {r.status_code} {r.text[:200]}")
            for desc, body, status in malformed():
                sent += 1
                r = await client.post(url, content=body if isinstance(body, bytes) else body.encode(),
                                      headers={"content-type": "application/json"})
                if r.status_code != status or not r.json().get("error"):
                    problems.append(f"{desc}: got {r.status_code} {r.text[:200]}")
            sent += 1
            r = await client.get(url)
            if r.status_code != 405:
                problems.append(f"GET: {r.status_code}")
            # Still answering, and properly, after all that.
            r = await client.post(url, json={"http_request": "http://nx.test/"})
            if r.status_code != 200 or r.json()["dns"]["failure"] != "dns_nxdomain_error":
                problems.append(f"after the storm: {r.status_code} {r.text[:200]}")
        n.cancel_scope.cancel()
    if hits[0]:
        problems.append(f"the canary saw {hits[0]} connection(s)")
    return {"sent": sent, "problems": problems}


if __name__ == "__main__":
    print(json.dumps(trio.run(run, "--extended" in sys.argv)))
