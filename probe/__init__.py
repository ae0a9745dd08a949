"""probe: website-blocking measurement from a volunteer's vantage point.

The library comes first; `probe.cli` is a thin layer over it. The public API is what `__all__` lists.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public names, imported on first use: a worker process (workers.py) or `probe --help` then loads only
# what it needs (a worker never loads storage or sqlite-utils).
_WHERE = {
    "RULES_VERSION": "analysis", "analyse": "analysis", "ProbeError": "errors",
    **dict.fromkeys(("ControlResult", "DnsQuery", "HttpHop", "Observations", "QuicHandshake", "Target",
                     "TcpConnect", "TlsHandshake", "Verdict"), "models"),
    "RunOptions": "measure.runner", "RunSummary": "measure.runner", "run_async": "measure.runner",
    "Session": "measure.session",
    "open_db": "storage",
    **dict.fromkeys(("ListWarning", "TargetError", "normalise", "read_inputs"), "measure.targets"),
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'probe' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{where}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from .analysis import RULES_VERSION, analyse
    from .errors import ProbeError
    from .measure.runner import RunOptions, RunSummary, run_async
    from .measure.session import Session
    from .measure.targets import ListWarning, TargetError, normalise, read_inputs
    from .models import (
        ControlResult,
        DnsQuery,
        HttpHop,
        Observations,
        QuicHandshake,
        Target,
        TcpConnect,
        TlsHandshake,
        Verdict,
    )
    from .storage import open_db

__all__ = [  # noqa: RUF022  (plain sorted order, checked by tests/test_docs.py)
    "ControlResult",
    "DnsQuery",
    "HttpHop",
    "ListWarning",
    "Observations",
    "ProbeError",
    "QuicHandshake",
    "RULES_VERSION",
    "RunOptions",
    "RunSummary",
    "Session",
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
