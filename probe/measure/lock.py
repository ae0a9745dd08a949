"""One run at a time per database: an advisory lock next to it (`<db>.lock`), held for the whole run.

flock is released by the kernel when the process dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from ..errors import DatabaseBusy


class LockBusy(DatabaseBusy):
    """Another run holds the lock (exit 4)."""


class DbLock:
    def __init__(self, db_path: str, wait: float = 0.0) -> None:
        self.path = Path(f"{db_path}.lock")
        self.wait = wait
        self._fd: int | None = None

    def __enter__(self) -> DbLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise LockBusy(f"another probe run (pid {holder}) is using {self.path.with_suffix('')}; "
                                   f"waited {self.wait:g}s (--wait-lock)") from None
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
