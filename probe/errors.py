"""Domain errors: one base class, each with the exit code the CLI maps it to (in one place, `cli.ProbeGroup`).

The library raises these with a one-line message that names the value at fault and says what to do; the CLI
prints `error: <message>` and exits with `exit_code`. Nothing here is ever a traceback for the user.
"""

from __future__ import annotations

EXIT_USAGE, EXIT_PARTIAL, EXIT_OFFLINE, EXIT_LOCKED, EXIT_CAPTIVE = 1, 2, 3, 4, 5
# `probe results` of a run that stored no verdict: an empty answer is not "nothing blocked" (after upload.py's 6).
EXIT_NOTHING_MEASURED = 7


class ProbeError(Exception):
    """Something the user can fix: bad input, a missing or damaged database, a conflicting option."""

    exit_code = EXIT_USAGE


class DatabaseError(ProbeError):
    """A database that is missing, not SQLite, damaged, or cannot be opened where it is."""


class OptionConflict(ProbeError):
    """An option given to `--resume` that differs from the run's own configuration."""


class NothingToResume(ProbeError):
    """`--resume` found no unfinished run."""


class DatabaseBusy(ProbeError):
    """Another run holds the database's lock."""

    exit_code = EXIT_LOCKED


class NothingMeasured(ProbeError):
    """A run asked about that stored no verdict (offline, stopped before its first result, or still going)."""

    exit_code = EXIT_NOTHING_MEASURED
