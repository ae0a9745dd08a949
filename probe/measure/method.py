"""How a run measured: the part of its configuration that can change a verdict, recorded with the run.

A verdict that changes between two runs is evidence of a change in censorship only when both runs measured the
same way. The rules version, the signature sets (by name and content digest: a cached set updated in between is
another method), the control, the resolvers, the timeouts and the options that decide what counts as public all
change verdicts by themselves; the run's output options, limits and workers do not. `record` captures this when a
run starts (signature files are read then: they may change later), `of_run` reads it back (deriving what it can
from `runs.options` for runs made before it was recorded), and `key` names a method in a few characters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

# RunOptions fields that change verdicts (the others shape a session: output, limits, workers, bodies kept).
VERDICT_OPTIONS = ("resolvers", "system_resolver", "helper", "doh", "no_control", "ca_file", "timeout",
                   "dns_timeout", "late_window", "allow_net", "decoy_sni", "body_cap", "signatures",
                   "signature_packs", "data_dir")
# What a run made before these fields existed used, as RunOptions' defaults say.
_DEFAULTS: dict[str, Any] = {"resolvers": [], "system_resolver": True, "helper": None, "doh": None,
                             "no_control": False, "ca_file": None, "timeout": 10.0, "dns_timeout": 4.0,
                             "late_window": 0.5, "allow_net": [], "decoy_sni": "example.com",
                             "body_cap": 512 * 1024, "signatures": True, "signature_packs": [], "data_dir": None}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def signature_sources(options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The signature sets these options load (as `signatures.load` does), each by name and content digest."""
    from ..signatures import cache_dir
    from ..signatures.loaders import CACHE_FILES

    if not options.get("signatures", True):
        return []
    out: list[dict[str, Any]] = [{"name": "builtin", "sha256": _digest(
        resources.files("probe.signatures").joinpath("builtin.json").read_bytes())}]
    for pack in options.get("signature_packs") or ():
        try:
            digest: str | None = _digest(Path(pack).read_bytes())
        except OSError:
            digest = None  # gone: the run's matcher loads nothing from it either
        out.append({"name": f"pack:{Path(pack).name}", "sha256": digest})
    data_dir = options.get("data_dir")
    directory = cache_dir(Path(data_dir)) if data_dir else cache_dir()
    for name in CACHE_FILES:
        path = directory / name
        if path.is_file():
            out.append({"name": f"cache:{name}", "sha256": _digest(path.read_bytes())})
    return out


def record(options: Mapping[str, Any], rules_version: str, *,
           sources: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The method of a run with these options (RunOptions as a dict), its signature files read now."""
    return describe(options, rules_version,
                    signature_sources(options) if sources is None else sources)


def describe(options: Mapping[str, Any], rules_version: str,
             sources: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The method as stored: `sources` None when the signature files were not read when the run was made."""
    o = {k: options.get(k, _DEFAULTS[k]) for k in VERDICT_OPTIONS}
    if o["no_control"]:
        control: dict[str, Any] = {"mode": "none"}
    else:
        control = {"mode": "helper" if o["helper"] else "doh", "helper": o["helper"],
                   "doh": "default" if o["doh"] is None else list(o["doh"])}
    if not o["signatures"]:
        sigs: Any = "off"
    elif sources is None:  # a run made before methods were recorded: the names it asked for, contents unknown
        sigs = [{"name": "builtin", "sha256": None}, *({"name": f"pack:{Path(p).name}", "sha256": None}
                                                       for p in o["signature_packs"])]
    else:
        sigs = sources
    return {
        "rules": rules_version,
        "signatures": sigs,
        "control": control,
        "resolvers": {"system": bool(o["system_resolver"]), "listed": list(o["resolvers"])},
        "timeouts": {"step": o["timeout"], "dns": o["dns_timeout"], "late_window": o["late_window"]},
        "options": {"allow_net": list(o["allow_net"]), "decoy_sni": o["decoy_sni"], "body_cap": o["body_cap"],
                    "ca_file": o["ca_file"]},
    }


def of_run(run: Mapping[str, Any]) -> dict[str, Any]:
    """A stored run's method: as recorded, else derived from its options; its rules are the run's current ones
    (a reanalysed run counts as its new rules version)."""
    stored = run.get("method")
    if stored:
        method = json.loads(stored)
    else:
        try:
            options = json.loads(run.get("options") or "{}")
        except ValueError:
            options = {}
        method = describe(options if isinstance(options, dict) else {}, "", None)
    method["rules"] = run.get("rules_version") or method.get("rules") or ""
    return method


def key(method: Mapping[str, Any]) -> str:
    """A short name for a method: equal methods, equal keys."""
    return hashlib.sha256(json.dumps(method, sort_keys=True).encode()).hexdigest()[:8]


def brief(method: Mapping[str, Any]) -> str:
    """One short line: rules, signatures, control, resolvers, timeouts, and the key."""
    sigs = method["signatures"]
    if sigs == "off":
        said = "no signatures"
    else:
        names = [s["name"].split(":", 1)[-1] for s in sigs]
        said = "sigs " + "+".join(names)
    control = method["control"]
    ctl = ("no control" if control["mode"] == "none" else "helper" + (" + DoH" if control.get("doh") else "")
           if control["mode"] == "helper" else "DoH" + (" (default)" if control.get("doh") == "default" else ""))
    res = method["resolvers"]
    n = len(res["listed"]) + (1 if res["system"] else 0)
    t = method["timeouts"]
    return (f"rules {method['rules'] or '?'}, {said}, {ctl}, {n} resolver{'s' if n != 1 else ''}, "
            f"timeouts {t['step']:g}/{t['dns']:g}/{t['late_window']:g}s [{key(method)}]")


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """What differs between two methods, in words ("signatures", "rules 1 -> 2")."""
    out = []
    for part in ("rules", "signatures", "control", "resolvers", "timeouts", "options"):
        if a.get(part) != b.get(part):
            out.append(f"rules {a.get('rules') or '?'} -> {b.get('rules') or '?'}" if part == "rules" else part)
    return out
