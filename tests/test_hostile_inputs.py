"""Every command that takes a file, given a wrong one: missing, unreadable, damaged, binary, huge, or on
read-only media. Each answer is one line (`error: ...` naming the file), exit status 1, and nothing on disk
created or changed (issue 23). Read commands on read-only media work: tests/test_databases.py."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_cli_run import PROBE
from tests.test_edges import one_line_error

KINDS = ["missing", "unreadable", "damaged", "binary", "huge"]
RUN = ["--no-control", "--no-vantage", "--no-system-resolver", "--resolver", "127.0.0.1:9", "--accept-risk"]
HELPER = ["helper", "serve", "--listen", "127.0.0.1:0", "--resolver", "127.0.0.1:9"]

# What a damaged file of each kind looks like: the start of a good one, then the rest of a failed download.
_GARBAGE = random.Random(23).randbytes(3000)
DAMAGED = {
    "list": b"url,category_code,category_description,date_added,source,notes\nhttp://a.test/,NEWS," + _GARBAGE,
    "pem": b"-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIUJ" + b"\n-----END CERTIFICATE-----\n",
    "json": b'{"claims": [{"key": "pta", "authority": "PTA", "da',
    "toml": b'[run]\nresolver = ["127.0.0.1:9"\nconcurrency = ',
    "pack": b'{"signatures": [{"id": "x", "pattern": ',
    "ooni": b'{"test_name": "web_connectivity", "measurement_start_time": "2025-',
    "db": b"SQLite format 3\x00" + _GARBAGE,
}

# command -> (kind of file, argv with FILE where the file goes). Each writes, if at all, into the test's own tmp.
COMMANDS: dict[str, tuple[str, list[str]]] = {
    "run-list": ("list", ["run", "--db", "{tmp}/r.db", *RUN, "FILE"]),
    "run-ca-file": ("pem", ["run", "--db", "{tmp}/r.db", *RUN, "--ca-file", "FILE", "http://a.test/"]),
    "run-signatures": ("pack", ["run", "--db", "{tmp}/r.db", *RUN, "--signatures", "FILE", "http://a.test/"]),
    "run-config": ("toml", ["--config", "FILE", "run", "--db", "{tmp}/r.db", *RUN, "http://a.test/"]),
    "run-db": ("db", ["run", "--db", "FILE", *RUN, "http://a.test/"]),
    "results-db": ("db", ["results", "--db", "FILE"]),
    "export-db": ("db", ["export", "--format", "parquet", "--db", "FILE", "-o", "{tmp}/parquet"]),
    "claims-import": ("json", ["claims", "import", "FILE", "--db", "{tmp}/c.db"]),
    "claims-compare-list": ("list", ["claims", "compare", "k", "--list", "FILE", "--db", "{tmp}/c.db"]),
    "import-ooni": ("ooni", ["import-ooni", "--db", "{tmp}/i.db", "FILE"]),
    "merge": ("db", ["merge", "FILE", "--into", "{tmp}/m.db"]),
    "reanalyze-signatures": ("pack", ["reanalyze", "--db", "FILE", "--signatures", "FILE"]),
    "helper-tls-cert": ("pem", [*HELPER, "--tls-cert", "FILE", "--tls-key", "FILE"]),
    "helper-ca-file": ("pem", [*HELPER, "--ca-file", "FILE"]),
    "schedule-config": ("toml", ["schedule", "--accept-risk", "--config", "FILE"]),
}


def _make(kind: str, file_kind: str, path: Path) -> None:
    if kind == "missing":
        return
    if kind == "huge":
        with path.open("wb") as f:
            f.truncate(3 << 30)  # 3 GB, sparse: it costs no room, and reading it would cost 3 GB of memory
        return
    path.write_bytes({"unreadable": DAMAGED[file_kind][:40], "damaged": DAMAGED[file_kind],
                      "binary": random.Random(kind).randbytes(5000)}[kind])
    if kind == "unreadable":
        path.chmod(0)


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_mode)
            for p in sorted(root.rglob("*"))}


def _as_a_user(cmd: list[str]) -> list[str]:
    """Root reads a file whatever its mode: in a user namespace of its own it is nobody, and mode 0 holds."""
    if os.geteuid() == 0:
        return ["unshare", "--user", *cmd]
    return cmd


# A missing --db is not a wrong file for `probe run`: it makes its database there (tests/test_cli_run.py).
CASES = [(c, k) for c in sorted(COMMANDS) for k in KINDS if (c, k) != ("run-db", "missing")]


@pytest.mark.parametrize(("command", "kind"), CASES)
def test_a_wrong_file_is_one_line_and_changes_nothing(command, kind, tmp_path):
    if kind == "unreadable" and os.geteuid() == 0 and shutil.which("unshare") is None:
        pytest.fail("unshare(1) is needed to read as a user other than root (util-linux)")
    file_kind, template = COMMANDS[command]
    work = tmp_path / "work"
    work.mkdir()
    target = work / f"input.{file_kind}"
    _make(kind, file_kind, target)
    argv = [a.replace("FILE", str(target)).replace("{tmp}", str(work)) for a in template]
    before = _snapshot(work)
    cmd = [*PROBE, *argv]
    proc = subprocess.run(_as_a_user(cmd) if kind == "unreadable" else cmd, capture_output=True, text=True,
                          timeout=120, cwd=work, stdin=subprocess.DEVNULL)
    one_line_error(proc, target.name)
    assert _snapshot(work) == before, "nothing created, nothing changed"


# -------------------------------------------------------------------------------------------- read-only media

def _on_read_only_media(tmp_path: Path, prepare: Callable[[Path], None], argv: list[str]):
    """A tmpfs prepared by `prepare`, remounted read-only, and probe run there; in a private mount namespace."""
    staging = tmp_path / "staging"
    staging.mkdir()
    prepare(staging)
    media = tmp_path / "media"
    media.mkdir()
    args = " ".join(f"'{a.replace('{media}', str(media))}'" for a in argv)
    script = (f"mount -t tmpfs -o size=16m tmpfs {media} && cp -a {staging}/. {media}/ && "
              f"mount -o remount,ro {media} && cd {media} && exec {' '.join(PROBE)} {args}")
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def _world(staging: Path) -> None:
    from tests import research_world

    research_world.build(staging / "k.db")
    (staging / "claims.json").write_text('{"claims": [{"key": "k2", "authority": "A", "date": "2025-01-01", '
                                         '"claimed_count": 3}]}')


WRITES_ON_MEDIA = {
    "run": (["run", "--db", "{media}/k.db", *RUN, "http://a.test/"], "{media}/k.db"),
    "run-new-db": (["run", "--db", "{media}/new/p.db", *RUN, "http://a.test/"], "{media}/new"),
    "run-log": (["run", "--db", "{media}/k.db", *RUN, "--log", "{media}/probe.log", "http://a.test/"],
                "{media}/probe.log"),
    "export-parquet": (["export", "--format", "parquet", "--all", "--db", "{media}/k.db", "-o", "{media}/pq"],
                       "{media}/pq"),
    "export-csv": (["export", "--format", "csv", "--db", "{media}/k.db", "-o", "{media}/x.csv"], "{media}/x.csv"),
    "report": (["report", "--db", "{media}/k.db", "--html", "{media}/r.html"], "{media}/r.html"),
    "claims-import": (["claims", "import", "{media}/claims.json", "--db", "{media}/k.db"], "{media}/k.db"),
    "merge-into": (["merge", "{media}/k.db", "--into", "{media}/all.db"], "{media}/all.db"),
    "datasette": (["datasette", "--db", "{media}/k.db", "--metadata", "{media}/m.json"], "{media}/m.json"),
    "reanalyze": (["reanalyze", "--db", "{media}/k.db"], "{media}/k.db"),
}


@pytest.mark.root("unshare", "mount")
@pytest.mark.parametrize("command", sorted(WRITES_ON_MEDIA))
def test_writing_onto_read_only_media_is_one_line(command, tmp_path):
    argv, named = WRITES_ON_MEDIA[command]
    proc = _on_read_only_media(tmp_path, _world, argv)
    one_line_error(proc, named.replace("{media}", str(tmp_path / "media")))


@pytest.mark.root("unshare", "mount")
def test_export_parquet_reads_a_database_on_read_only_media(tmp_path):
    out = tmp_path / "parquet"
    proc = _on_read_only_media(tmp_path, _world, ["export", "--format", "parquet", "--all", "--db", "{media}/k.db",
                                                  "-o", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert "measurements" in proc.stderr and (out / "measurements.parquet").stat().st_size > 0
