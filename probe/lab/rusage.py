"""Run a command and report its own CPU time and peak memory (for benchmarks and the hostile-input tests).

Linux hands a child the peak RSS of the process that forked it: at exec the old address space's high-water
mark is kept in the child's `ru_maxrss`. A probe started from a 300 MB pytest process would therefore "use"
300 MB before it ran a line. So the command is started from a small launcher process, whose own footprint
(a bare interpreter, ~10 MB) is the floor of what can be reported. `ru_maxrss` is the largest single process
(the probe or one of its workers; their CPU time adds up in the launcher's figure); the launcher also samples
the sum over the whole process tree, for `--workers`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_LAUNCHER = """
import json, os, subprocess, sys, threading, time
proc = subprocess.Popen(sys.argv[2:])
peak_sum = 0

def tree_rss(pid):
    total = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            total = next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                total += sum(tree_rss(int(c)) for c in f.read().split())
    except (OSError, ValueError):
        pass
    return total

def sample():
    global peak_sum
    while proc.returncode is None:
        peak_sum = max(peak_sum, tree_rss(proc.pid))
        time.sleep(0.02)

threading.Thread(target=sample, daemon=True).start()
_, status, usage = os.wait4(proc.pid, 0)
proc.returncode = status
with open(sys.argv[1], "w") as out:
    json.dump({"code": os.waitstatus_to_exitcode(status), "cpu_s": usage.ru_utime + usage.ru_stime,
               "sys_s": usage.ru_stime, "rss_kb": usage.ru_maxrss, "rss_sum_kb": peak_sum}, out)
"""


@dataclass(frozen=True, slots=True)
class Measured:
    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float  # the largest single process (the probe's own, or one of its workers)
    stdout: str
    stderr: str
    # The largest sum of the resident sets of the probe and every process under it (its workers), sampled
    # every 20 ms; shared pages count once per process, so this errs high.
    peak_rss_sum_mb: float = 0.0
    sys_s: float = 0.0  # the part of cpu_s spent in the kernel (on a lab's veths: the namespaces' packet path too)


def run_measured(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, capture_stdout: bool = False,
                 timeout: float | None = None) -> Measured:
    """Run `cmd` to completion; stderr is always captured (a failing run should say why)."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as result:
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", _LAUNCHER, result.name, *cmd], env=env, text=True,
                              stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout)
        wall = time.monotonic() - t0
        raw = result.read()
    if not raw:  # the launcher itself failed
        return Measured(proc.returncode, wall, 0.0, 0.0, proc.stdout or "", proc.stderr)
    figures = json.loads(raw)
    return Measured(figures["code"], wall, figures["cpu_s"], figures["rss_kb"] / 1024, proc.stdout or "",
                    proc.stderr, max(figures["rss_sum_kb"], figures["rss_kb"]) / 1024, figures["sys_s"])

