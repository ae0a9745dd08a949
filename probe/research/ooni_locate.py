"""The locate step's records (models.TtlProbe) in OONI's shape, and back.

OONI's `tlsmiddlebox` (ooni/spec ts-037) writes an `iterative_trace`: per address, a `target_trace` with the
`server_name` and its `iterations`, each a `ttl` and a `handshake` (df-006). Inside a Web Connectivity
measurement it travels as `x_probe_iterative_trace` (OONI's tools ignore x_ keys); what tlsmiddlebox has no field
for (the step that failed, bytes read, the router that answered a datagram with that TTL) rides in x_probe_ keys
of each iteration. Routers are kept as the step keeps them (a public one as its /24, as OONI publishes them).
"""

from __future__ import annotations

from typing import Any

from ..models import TtlProbe


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def export_trace(probes: tuple[TtlProbe, ...]) -> list[dict[str, Any]]:
    traces: dict[str, dict[str, Any]] = {}
    for p in probes:
        trace = traces.setdefault(_endpoint(p.ip, p.port), {
            "address": _endpoint(p.ip, p.port), "target_trace": {"server_name": p.sni, "iterations": []}})
        trace["target_trace"]["iterations"].append({
            "ttl": p.ttl,
            "handshake": {"address": _endpoint(p.ip, p.port), "server_name": p.sni, "failure": p.failure,
                          "t0": p.t0, "t": p.t},
            "x_probe_failed_step": p.failed_step, "x_probe_reply_bytes": p.reply_bytes,
            "x_probe_router": p.router, "x_probe_icmp": p.icmp,
        })
    return list(traces.values())


def import_trace(test_keys: dict[str, Any]) -> tuple[TtlProbe, ...]:
    """The records of `x_probe_iterative_trace` (none in OONI's own measurements)."""
    out: list[TtlProbe] = []
    traces = test_keys.get("x_probe_iterative_trace") or ()
    for trace in traces if isinstance(traces, list) else ():
        if not isinstance(trace, dict):
            continue
        host, _, port = str(trace.get("address") or "").rpartition(":")
        target = trace.get("target_trace") or {}
        for it in target.get("iterations") or () if isinstance(target, dict) else ():
            if not isinstance(it, dict) or not isinstance(it.get("ttl"), int):
                continue
            hs = it.get("handshake") or {}
            out.append(TtlProbe(ip=host.strip("[]"), port=int(port) if port.isdigit() else 0,
                                sni=str(target.get("server_name") or hs.get("server_name") or ""), ttl=it["ttl"],
                                failure=hs.get("failure"), failed_step=it.get("x_probe_failed_step"),
                                reply_bytes=int(it.get("x_probe_reply_bytes") or 0), router=it.get("x_probe_router"),
                                icmp=it.get("x_probe_icmp"), t0=hs.get("t0") or 0.0, t=hs.get("t") or 0.0))
    return tuple(out)
