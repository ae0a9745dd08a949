"""A session: one `probe run` against one database, from taking its lock to folding its WAL back in.

The session owns what must hold across the kills and resumes of a run: the lock (one run at a time per
database), the run's options (stored with the run and reused by `--resume`, so one run has one configuration),
the signatures those options name, and what an offline session leaves behind (nothing: see runner.py). The CLI
only parses options into a `RunOptions`, asks for a new run or a resume, and prints the `RunSummary`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlite_utils
import trio

from .. import signatures, storage
from ..analysis import Matcher
from ..errors import DatabaseError, NothingToResume, OptionConflict
from ..models import Target
from .lock import DbLock
from .runner import Progress, RunOptions, RunSummary, run_async

# Options that belong to one session, not to the run: where the database is now, this session's limits, and
# how many processes this machine measures with.
# A resumed run takes them from the command line; every other option comes from the run as stored.
SESSION_FIELDS = frozenset({"db_path", "max_runtime", "min_free_mb", "workers"})

# How the CLI spells each run option, for messages that tell the user what to drop.
OPTION_FLAGS: dict[str, str] = {
    "resolvers": "--resolver", "system_resolver": "--no-system-resolver", "helper": "--helper", "doh": "--doh",
    "no_control": "--no-control", "ca_file": "--ca-file", "concurrency": "--concurrency", "timeout": "--timeout",
    "dns_timeout": "--dns-timeout", "late_window": "--late-window", "allow_net": "--allow-net",
    "decoy_sni": "--decoy-sni", "keep_bodies": "--keep-bodies", "signatures": "--no-signatures",
    "signature_packs": "--signatures", "data_dir": "--data-dir", "body_cap": "body_cap",
    "ip_service": "--ip-service/--no-vantage", "quic": "--no-quic", "locate": "--no-locate",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedRun:
    """What a session is about to measure: a new run (run_id None) or the rest of a stored one."""

    run_id: int | None
    targets: list[Target]
    options: RunOptions
    url_count: int  # the whole run's list


def _plain(value: Any) -> Any:
    """Options as they compare after a trip through JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def stored_options(run: Mapping[str, Any]) -> RunOptions:
    """A run's options as stored; fields added since the run was made keep their defaults."""
    stored = json.loads(run.get("options") or "{}")
    known = {f.name for f in dataclasses.fields(RunOptions)}
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in known}
    return RunOptions(**values)


class Session:
    """`with Session(db_path) as s: s.measure(s.new_run(targets, options))` — or `s.resume(...)`."""

    def __init__(self, db_path: str | Path, *, wait_lock: float = 0.0, create: bool = True) -> None:
        self.db_path = Path(db_path).absolute()
        self.wait_lock = wait_lock
        self.create = create  # False for a resume: a missing database has nothing to resume
        self.signature_warnings: list[str] = []
        self._lock: DbLock | None = None
        self._db: sqlite_utils.Database | None = None

    @property
    def db(self) -> sqlite_utils.Database:
        assert self._db is not None, "use the session in a with block"
        return self._db

    def __enter__(self) -> Session:
        checked = False
        if self.db_path.exists():
            # Before the lock file: a wrong --db gets nothing new beside it. The full check runs once a day.
            checked = storage.check_database(self.db_path)
        elif not self.create:
            raise DatabaseError(f"no database at {self.db_path}; nothing to resume (is --db right?)")
        lock = DbLock(str(self.db_path), self.wait_lock)
        try:
            lock.__enter__()
        except OSError as e:
            raise DatabaseError(f"cannot lock {lock.path}: {e.strerror or e}") from None
        self._lock = lock
        try:
            self._db = storage.open_db(self.db_path, checked=True)
            if checked:
                storage.record_check(self._db)
        except BaseException:
            lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self._db is not None:
            storage.close(self._db)
            self._db = None
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def new_run(self, targets: list[Target], options: RunOptions) -> PlannedRun:
        options = dataclasses.replace(options, db_path=str(self.db_path))
        return PlannedRun(run_id=None, targets=targets, options=options, url_count=len(targets))

    def resume(self, run_id: int | None, given: Mapping[str, Any]) -> PlannedRun:
        """The rest of an unfinished run, with its stored options.

        `given` holds the options named again for this session (RunOptions field -> value): session options
        replace the stored ones; any other must equal the run's own, else `OptionConflict`.
        """
        run = storage.resumable_run(self.db, run_id)
        if run is None:
            raise NothingToResume(f"no unfinished run to resume in {self.db_path}" if run_id is None else
                                  f"no run {run_id} in {self.db_path}")
        if run["status"] not in storage.RESUMABLE:
            raise NothingToResume(f"run {run['id']} in {self.db_path} is {run['status']}: nothing to resume")
        options = stored_options(run)
        # Fields the run's release did not store are unknown, not the default: what is given now decides them.
        unknown = {f.name for f in dataclasses.fields(RunOptions)} - set(json.loads(run.get("options") or "{}"))
        options = dataclasses.replace(options, **{k: v for k, v in given.items() if k in unknown})
        for name, value in given.items():
            if name in SESSION_FIELDS or name in unknown:
                continue
            if _plain(value) != _plain(getattr(options, name)):
                flag = OPTION_FLAGS.get(name, name)
                raise OptionConflict(
                    f"run {run['id']} was measured with {name} = {_plain(getattr(options, name))!r}, not "
                    f"{_plain(value)!r} (option {flag}): a run keeps one configuration; resume without {flag}, or"
                    " start a new run")
        # This session's limits are its own: as given now, else the defaults (never the last session's).
        fresh = RunOptions()
        session = {k: given.get(k, getattr(fresh, k)) for k in SESSION_FIELDS}
        options = dataclasses.replace(options, **session)
        options = dataclasses.replace(options, db_path=str(self.db_path))
        for flag, path in (("--ca-file", options.ca_file), *(("--signatures", p) for p in options.signature_packs)):
            if path and not Path(path).is_file():
                raise OptionConflict(f"run {run['id']} was measured with {flag} {path}, which is no longer there: "
                                     "put it back to resume the run, or start a new run")
        targets = storage.remaining_targets(self.db, run["id"])
        return PlannedRun(run_id=run["id"], targets=targets, options=options, url_count=run["url_count"] or 0)

    def matcher(self, options: RunOptions) -> Matcher | None:
        """The signatures the options name; broken rows become `signature_warnings`."""
        if not options.signatures:
            return None
        cache = signatures.cache_dir(Path(options.data_dir)) if options.data_dir else None
        sigset, self.signature_warnings = signatures.load(
            cache=cache, packs=tuple(Path(p) for p in options.signature_packs))
        return sigset.hits

    def measure(self, plan: PlannedRun, *, emit: Callable[[str], None] | None = None,
                progress: Progress | None = None,
                warn: Callable[[list[str]], None] | None = None) -> RunSummary:
        """Measure the plan (a resumed run is reopened first); returns what was stored.

        `warn` gets the signature loader's warnings (broken rows) before measuring starts.
        """
        matcher = self.matcher(plan.options)
        if warn and self.signature_warnings:
            warn(self.signature_warnings)
        if plan.run_id is not None:
            storage.reopen_run(self.db, plan.run_id)
        summary = trio.run(lambda: run_async(self.db, plan.targets, plan.options, run_id=plan.run_id, emit=emit,
                                             progress=progress, matcher=matcher))
        return summary
