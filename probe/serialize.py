"""Observations as plain JSON and back: golden test files, exports, `probe show`.

Bodies travel as text when they are UTF-8, else base64, so a golden file stays readable.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from .models import ControlResult, DnsQuery, HttpHop, Observations, Target, TcpConnect, TlsHandshake, TtlProbe

_NESTED: dict[str, type] = {"dns": DnsQuery, "control_dns": DnsQuery, "tcp": TcpConnect, "tls": TlsHandshake,
                            "http": HttpHop, "locate": TtlProbe}


def _plain(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.name == "body":
            try:
                out["body_text"] = v.decode("utf-8")
            except UnicodeDecodeError:
                out["body_b64"] = base64.b64encode(v).decode()
            continue
        out[f.name] = _jsonable(v)
    return out


def _jsonable(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return _plain(v)
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def to_dict(obs: Observations) -> dict[str, Any]:
    return _plain(obs)


def _build(cls: type, d: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    kw: dict[str, Any] = {}
    for k, v in d.items():
        if k == "body_text":
            kw["body"] = v.encode("utf-8")
        elif k == "body_b64":
            kw["body"] = base64.b64decode(v)
        elif k in names:
            kw[k] = _tuples(v) if isinstance(v, list) else v
    return cls(**kw)


def _tuples(v: list[Any]) -> tuple[Any, ...]:
    return tuple(_tuples(x) if isinstance(x, list) else x for x in v)


def from_dict(d: dict[str, Any]) -> Observations:
    kw: dict[str, Any] = {"target": _build(Target, d["target"])}
    for name, cls in _NESTED.items():
        kw[name] = tuple(_build(cls, x) for x in d.get(name, ()))
    if d.get("control"):
        kw["control"] = _build(ControlResult, d["control"])
    for k in ("bogons",):
        kw[k] = tuple(d.get(k, ()))
    for k in ("started", "runtime_s"):
        if k in d:
            kw[k] = d[k]
    return Observations(**kw)
