"""probe: website-blocking measurement from a volunteer's vantage point.

The library comes first; `probe.cli` is a thin layer over it. The public API is what `__all__` lists.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .analysis import RULES_VERSION, analyse
    from .models import (
        ControlResult,
        DnsQuery,
        HttpHop,
        Observations,
        Target,
        TcpConnect,
        TlsHandshake,
        Verdict,
    )
    from .runner import RunOptions, RunSummary, run_async
    from .storage import open_db
    from .targets import ListWarning, TargetError, normalise, read_inputs

# Where each public name lives. Imported on first use: a worker process (`python -c "from probe.workers ..."`)
# imports the package too, and needs neither storage (sqlite-utils, which pulls in numpy) nor the runner.
_HOMES = {
    "RULES_VERSION": "analysis", "analyse": "analysis",
    "ControlResult": "models", "DnsQuery": "models", "HttpHop": "models", "Observations": "models",
    "Target": "models", "TcpConnect": "models", "TlsHandshake": "models", "Verdict": "models",
    "RunOptions": "runner", "RunSummary": "runner", "run_async": "runner",
    "open_db": "storage",
    "ListWarning": "targets", "TargetError": "targets", "normalise": "targets", "read_inputs": "targets",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'probe' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


__all__ = [  # noqa: RUF022  (plain sorted order, checked by tests/test_docs.py)
    "ControlResult",
    "DnsQuery",
    "HttpHop",
    "ListWarning",
    "Observations",
    "RULES_VERSION",
    "RunOptions",
    "RunSummary",
    "Target",
    "TargetError",
    "TcpConnect",
    "TlsHandshake",
    "Verdict",
    "__version__",
    "analyse",
    "normalise",
    "open_db",
    "read_inputs",
    "run_async",
]
