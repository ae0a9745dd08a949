"""probe: website-blocking measurement from a volunteer's vantage point.

The library comes first; `probe.cli` is a thin layer over it. The public API is what `__all__` lists.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .analysis import RULES_VERSION, analyse
from .errors import ProbeError
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
from .session import Session
from .storage import open_db
from .targets import ListWarning, TargetError, normalise, read_inputs

__all__ = [  # noqa: RUF022  (plain sorted order, checked by tests/test_docs.py)
    "ControlResult",
    "DnsQuery",
    "HttpHop",
    "ListWarning",
    "Observations",
    "ProbeError",
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
