"""What machine the figures came from, and how fast its Python is, so figures from two machines can be compared.

The same commit measured 2.7x more CPU per URL on one 2-core VM than on another of the same nominal size: the
interpreter speed below is printed with every benchmark so a reader can tell a slower machine from a regression.
"""

from __future__ import annotations

import os
import platform
import time


def python_speed() -> float:
    """Millions of simple bytecode loop iterations per second (best of three, so noise only slows it down)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i & 7
        best = min(best, time.perf_counter() - t0)
    return 2.0 / best


def machine() -> dict[str, object]:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpus": os.cpu_count(), "memory_gib": round(mem, 1), "python": platform.python_version(),
            "python_mloops_per_s": round(python_speed(), 1)}
