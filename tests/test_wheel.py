"""The wheel a volunteer installs works on its own: built from this tree, installed into a fresh environment and
run from a directory far from the checkout, every command finds what it needs inside the package.

Nothing reaches the package index: the wheel is built without build isolation (setuptools comes with the test
extras) and installed with --no-index --no-deps; its dependencies are this interpreter's, seen through a plain
path in a .pth file, so no other .pth there runs (an editable install of this checkout would otherwise shadow
the wheel). The test checks that `probe` is imported from the new environment before believing anything else.
CI does the same with dependencies from the index (.ci/run).
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import probe
from probe.lab.topology import missing_requirements

ROOT = Path(__file__).resolve().parents[1]
LAB_PREFIX = os.environ.get("PROBE_TEST_LAB_PREFIX", "plt")[:-1] + "w"  # machine-wide names: one per checkout
SKIP = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "results", "*.whl")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment (no pip, no system site) with the wheel in it; returns its bin directory."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=SKIP, symlinks=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True, text=True)
    (wheel,) = (tmp / "dist").glob("blockprobe-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                                   "print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True,
                                  text=True).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    (purelib / "deps.pth").write_text("".join(f"{p}\n" for p in sorted(ours) if Path(p).is_dir()))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-index", "--no-deps", str(wheel)], check=True, capture_output=True, text=True)
    return venv / "bin"


def _probe(bin_dir: Path, *args: str, cwd: Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    # PROBE_RESOLV_CONF and PROBE_IP_SERVICE stay as conftest set them (loopback only, no lookup)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env |= {"HOME": str(cwd), "XDG_CONFIG_HOME": str(cwd / "config"), "PROBE_DATA_DIR": str(cwd / "data")}
    return subprocess.run([*prefix, str(bin_dir / "probe"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_the_repository_list_is_the_packaged_list():
    """lists/default.txt (what README examples and old scripts name) is a link to the copy the wheel carries."""
    assert (ROOT / "lists" / "default.txt").resolve() == (Path(probe.__file__).parent / "data" / "default.txt")


def test_wheel_installs_and_runs_outside_the_checkout(installed: Path, tmp_path: Path):
    where = subprocess.run([str(installed / "python"), "-c", "import probe; print(probe.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout.strip()
    assert where.startswith(str(installed.parent)), where  # the wheel's copy, not this checkout
    version = _probe(installed, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.split()[-1] == probe.__version__, version
    with zipfile.ZipFile(next((installed.parent.parent / "dist").glob("*.whl"))) as wheel:
        names = set(wheel.namelist())
    assert {"probe/data/default.txt", "probe/research/claims.json", "probe/signatures/builtin.json"} <= names
    imported = _probe(installed, "claims", "import", "--builtin", "--db", str(tmp_path / "c.db"), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    claims = _probe(installed, "claims", "list", "--db", str(tmp_path / "c.db"), cwd=tmp_path)
    assert claims.returncode == 0, claims.stderr
    assert claims.stdout.strip(), claims  # the regulator's claims, from package data


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root and unshare(1) for a private network namespace")
def test_the_wheels_default_job_runs_offline_outside_the_checkout(installed: Path, tmp_path: Path):
    """With no network at all every URL of the packaged list is tried, nothing answers, and the run ends
    "offline" (exit 3), not on a missing file."""
    offline = _probe(installed, "run", "--accept-risk", "--no-vantage", "--quiet", "--db", str(tmp_path / "r.db"),
                     cwd=tmp_path, prefix=("unshare", "-n"))
    assert offline.returncode == 3, offline.stderr
    assert "offline" in offline.stderr and "cannot read" not in offline.stderr
    listed = [line for line in (ROOT / "lists" / "default.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert f"nothing was stored for the {len(listed)} URLs it tried" in offline.stderr, offline.stderr


@pytest.mark.lab
@pytest.mark.skipif(bool(missing_requirements()), reason="; ".join(missing_requirements()))
def test_wheel_runs_the_lab(installed: Path, tmp_path: Path):
    """`probe lab run` from the wheel: the lab's servers and the client are the installed package's modules."""
    lab = _probe(installed, "lab", "run", "--prefix", LAB_PREFIX, "--down", "--scenario", "dns-nxdomain",
                 "--scenario", "snirst", cwd=tmp_path)
    assert lab.returncode == 0, lab.stdout + lab.stderr
    assert "accuracy: 2/2" in lab.stdout
