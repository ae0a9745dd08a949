"""probe: website-blocking measurement from a volunteer's vantage point.

The library comes first; `probe.cli` is a thin layer over it. The public API is what `__all__` lists.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .analysis import RULES_VERSION, analyse  # noqa: E402
from .models import (  # noqa: E402
    ControlResult,
    DnsQuery,
    HttpHop,
    Observations,
    Target,
    TcpConnect,
    TlsHandshake,
    Verdict,
)
from .runner import RunOptions, RunSummary, run_async  # noqa: E402
from .storage import open_db  # noqa: E402
from .targets import ListWarning, TargetError, normalise, read_inputs  # noqa: E402

__all__ = [
    "RULES_VERSION",
    "ControlResult",
    "DnsQuery",
    "HttpHop",
    "ListWarning",
    "Observations",
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
