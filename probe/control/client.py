"""Control client: what an uncensored vantage sees for the same URL.

Two sources, both optional and both overridable: DNS over HTTPS resolvers (RFC 8484; the DNS message is built
by hand in `steps/dns_wire.py` and carried over h11 by `transport.py`) and a Web Connectivity test helper (ours,
`probe helper serve`, or OONI's: same protocol, ts-017). Failures of the control are recorded, never raised: a
missing control makes verdicts weaker (`error`/`anomaly`), never stronger.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, Literal

import dns.message
import h11
import trio

from ..failures import TIMEOUT, classify, from_helper_dns
from ..measure.netpolicy import is_ip_literal
from ..measure.steps.dns_wire import fields, parse_reply, query_wire, question, read_reply
from ..measure.steps.http import BROWSER_HEADERS
from ..models import ControlResult, DnsQuery, Target
from .transport import ReplyTooLarge, ServiceClient

# Used only when the user gives no --doh and no --no-control; tests always override.
DEFAULT_DOH = ("https://dns.google/dns-query", "https://cloudflare-dns.com/dns-query")
HELPER_TIMEOUT = 40.0  # the helper does TCP+TLS+HTTP itself, with its own 10 s bounds
MAX_HELPER_REPLY = 4 * 1024 * 1024
# Our helper's sized body (`GET /x/bytes?n=N`, helper_server.line_body): the survey's measure of the line's speed.
LINE_PATH = "/x/bytes"


def endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# Kept-alive connections to each DoH resolver and to the helper. A DoH answer takes one round trip, a helper
# reply a whole measurement of the site: the helper gets more connections.
DOH_POOL = 16
HELPER_POOL = 48
DOH_MAX_REPLY = 65535  # the largest DNS message
_ERRORS = (OSError, EOFError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, ReplyTooLarge)


class ControlClient:
    """One connection pool per control service, shared by every URL of the run."""

    def __init__(self, doh: dict[str, ServiceClient], helper: ServiceClient | None, *,
                 timeout: float = 4.0) -> None:
        self.doh = doh
        self.helper_client = helper
        self.timeout = timeout

    @property
    def doh_urls(self) -> tuple[str, ...]:
        return tuple(self.doh)

    @property
    def helper_url(self) -> str | None:
        return self.helper_client.url if self.helper_client else None

    @classmethod
    @asynccontextmanager
    async def open(cls, ssl_context: ssl.SSLContext, *, helper_url: str | None, doh_urls: tuple[str, ...],
                   timeout: float = 4.0, share: int = 1) -> AsyncIterator[ControlClient]:
        """`share`: the number of processes measuring the run (workers.py); each takes its part of the pools."""
        doh = {url: ServiceClient(url, ssl_context=ssl_context, size=max(1, DOH_POOL // share),
                                  max_reply=DOH_MAX_REPLY)
               for url in doh_urls}
        helper = ServiceClient(helper_url, ssl_context=ssl_context, size=max(1, HELPER_POOL // share),
                               max_reply=MAX_HELPER_REPLY) if helper_url else None
        try:
            yield cls(doh, helper, timeout=timeout)
        finally:
            with trio.CancelScope(shield=True):
                for client in [*doh.values(), *([helper] if helper else [])]:
                    await client.aclose()

    async def resolve(self, hostname: str, *, clock: Callable[[], float]) -> list[DnsQuery]:
        out: list[DnsQuery] = []

        async def one(url: str, qtype: Literal["A", "AAAA"]) -> None:
            out.append(await self.doh_query(url, hostname, qtype, clock=clock))

        async with trio.open_nursery() as n:
            for url in self.doh_urls:
                for qtype in ("A", "AAAA"):
                    n.start_soon(one, url, qtype)
        return out

    async def doh_query(self, url: str, hostname: str, qtype: Literal["A", "AAAA"], *,
                        clock: Callable[[], float]) -> DnsQuery:
        base = DnsQuery(resolver=f"doh:{url}", engine="doh", hostname=hostname, query_type=qtype, control=True,
                        t0=clock())
        try:
            wire = query_wire(0, question(hostname, qtype))  # id 0 keeps answers cacheable (RFC 8484 §4.1)
            with trio.fail_after(self.timeout):
                resp = await self.doh[url].post(wire, "application/dns-message", accept="application/dns-message")
            if resp.status != 200:
                return replace(base, failure=f"unknown_failure: DoH HTTP status {resp.status}", t=clock())
            fast = read_reply(resp.body, qtype)
            if fast is not None:
                return replace(base, **fields(fast[0]), t=clock())
            reply = dns.message.from_wire(resp.body)
        except trio.TooSlowError:
            return replace(base, failure=TIMEOUT, t=clock())
        except _ERRORS as e:
            return replace(base, failure=classify(e), t=clock())
        except Exception as e:  # a malformed DNS message from the DoH server
            return replace(base, failure=f"unknown_failure: bad DoH reply: {type(e).__name__}", t=clock())
        return replace(base, **fields(parse_reply(reply, qtype)), t=clock())

    async def helper(self, target: Target, addresses: list[str]) -> ControlResult:
        assert self.helper_client is not None
        source = self.helper_client.url
        request = {
            "http_request": target.url,
            "http_request_headers": {k: [v] for k, v in BROWSER_HEADERS.items()},
            "tcp_connect": [endpoint(a, target.port) for a in addresses],
        }
        t0 = trio.current_time()
        try:
            with trio.fail_after(HELPER_TIMEOUT):
                resp = await self.helper_client.post(json.dumps(request).encode(), "application/json")
            if resp.status != 200:
                return ControlResult(source=source,
                                     failure=f"unknown_failure: helper HTTP status {resp.status}")
            data = json.loads(resp.body)
            result = parse_helper_reply(source, data, ip_literal=is_ip_literal(target.hostname))
        except trio.TooSlowError:
            return ControlResult(source=source, failure=TIMEOUT)
        except ReplyTooLarge:
            return ControlResult(source=source, failure="unknown_failure: helper reply too large")
        except _ERRORS as e:
            return ControlResult(source=source, failure=classify(e))
        except (ValueError, TypeError, AttributeError) as e:
            return ControlResult(source=source, failure=f"unknown_failure: bad helper reply: {e}"[:200])
        return replace(result, t=round(trio.current_time() - t0, 4))


def parse_helper_reply(source: str, data: dict[str, Any], *, ip_literal: bool = False) -> ControlResult:
    """A Web Connectivity test-helper reply (OONI's fields, plus our `x_` extras when present).

    The helper's DNS outcome is translated into our vocabulary (OONI's helper says `dns_name_error` for NXDOMAIN
    and an empty list for "no answer"): see failures.from_helper_dns.
    """
    if not isinstance(data, dict):
        raise ValueError("reply is not a JSON object")
    d = data.get("dns") or {}
    addrs = tuple(str(a) for a in d.get("addrs") or ())
    h = data.get("http_request") or {}
    headers = {str(k).lower(): str(v[0] if isinstance(v, list) and v else v)
               for k, v in (h.get("headers") or {}).items()}
    return ControlResult(
        source=source,
        dns_addrs=addrs,
        dns_failure=from_helper_dns(d.get("failure"), addrs, ip_literal=ip_literal),
        tcp_connect={str(k): dict(v) for k, v in (data.get("tcp_connect") or {}).items()},
        tls_handshake={str(k): dict(v) for k, v in (data.get("tls_handshake") or {}).items()},
        quic_handshake={str(k): dict(v) for k, v in (data.get("x_quic_handshake") or {}).items()
                        if isinstance(v, dict)},
        http_status=_positive_int(h.get("status_code")),
        http_failure=h.get("failure"),
        http_title=h.get("title") or None,
        http_headers=headers,
        http_body_length=_positive_int(h.get("body_length"), zero_ok=True),
        http_body_sha256=h.get("x_body_sha256"),
        http_transfer=dict(h["x_transfer"]) if isinstance(h.get("x_transfer"), dict) else {},
    )


def _positive_int(v: Any, *, zero_ok: bool = False) -> int | None:
    """OONI's helper uses -1 and 0 for 'no value'; anything not an int is no value either."""
    if isinstance(v, bool) or not isinstance(v, int):
        return None
    return v if v > 0 or (zero_ok and v == 0) else None
