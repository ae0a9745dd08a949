"""The helper on the open internet: hostile requests are refused with a reason and it keeps answering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile_helper import run

ROOT = Path(__file__).resolve().parents[1]


async def test_hostile_requests_local_targets():
    result = await run(extended=False)
    assert result["sent"] >= 30
    assert result["problems"] == []


@pytest.mark.lab
@pytest.mark.root("unshare", "ip")  # inside a private network namespace
def test_hostile_requests_private_targets_in_a_private_namespace():
    # Loopback only: a helper that wrongly dialled 10.0.0.1 would get "network unreachable", not a packet out.
    cmd = ["unshare", "--net", "sh", "-c",
           f"ip link set lo up && exec {sys.executable} -m tests.hostile_helper --extended"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["sent"] >= 50
    assert result["problems"] == []
