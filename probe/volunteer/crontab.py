"""`probe schedule`: a crontab line, or a systemd service and timer, that runs probe unattended, and their
installation. (Not to be confused with slots.py, which schedules the URLs of one run.)

Jitter spreads volunteers' runs (and hides the schedule from the network a little): cron gets a random minute
and `probe run --jitter`, systemd gets RandomizedDelaySec. Paths are absolute (the program, `--config`, `--db`,
list files and path options given after `--`), and the systemd service has a WorkingDirectory: cron and
systemd start in a bare environment, from a directory that is not the one `probe schedule` ran in.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ProbeError

MARKER = "# probe: scheduled measurement"
_UNITS = {"m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, *, zero_ok: bool = False) -> int:
    if zero_ok and text.strip() == "0":
        return 0
    m = re.fullmatch(r"\s*(\d+)\s*([mhd])\s*", text)
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 6h, 1d)")
    return int(m.group(1)) * _UNITS[m.group(2)]


def probe_command() -> list[str]:
    exe = shutil.which("probe")
    return [str(Path(exe).resolve())] if exe else [str(Path(sys.executable).resolve()), "-m", "probe"]


# `probe run` options whose value is a path, made absolute even when the file does not exist yet (a log).
_PATH_OPTIONS = {"--log", "--ca-file", "--signatures", "--data-dir"}


def absolute_args(args: tuple[str, ...]) -> list[str]:
    """The run's own arguments with relative paths made absolute: cron starts in $HOME, systemd elsewhere.

    A path option's value always; a bare argument (a list file) when it names a file here. URLs stay as they are.
    """
    out: list[str] = []
    after_path_option = False
    for arg in args:
        if after_path_option:
            out.append(str(Path(arg).resolve()))
        elif "=" in arg and arg.split("=", 1)[0] in _PATH_OPTIONS:
            name, value = arg.split("=", 1)
            out.append(f"{name}={Path(value).resolve()}")
        elif not arg.startswith("-") and "://" not in arg and Path(arg).exists():
            out.append(str(Path(arg).resolve()))
        else:
            out.append(arg)
        after_path_option = arg in _PATH_OPTIONS
    return out


@dataclass(frozen=True, slots=True)
class Schedule:
    every: int  # seconds
    jitter: int  # seconds
    run_args: tuple[str, ...]
    config: str | None = None
    db: str | None = None  # made absolute here; None leaves it to `probe run` (not advised)
    workdir: str | None = None  # the systemd service's WorkingDirectory (default: the current directory)

    def command(self, *, cron: bool) -> list[str]:
        config = ["--config", str(Path(self.config).resolve())] if self.config else []
        db = ["--db", str(Path(self.db).resolve())] if self.db else []
        cmd = [*probe_command(), *config, "run", "--quiet", "--accept-risk", *db, *absolute_args(self.run_args)]
        if cron and self.jitter:
            cmd += ["--jitter", str(self.jitter)]
        return cmd

    def cron_line(self, rng: random.Random | None = None) -> str:
        rng = rng or random.Random()
        minute = rng.randrange(60)
        if self.every < 3600:
            if 3600 % self.every:
                raise ValueError("minute intervals must divide an hour (e.g. 10m, 15m, 30m)")
            when = f"*/{self.every // 60} * * * *"
        elif self.every < 86400:
            hours = self.every // 3600
            if self.every % 3600 or 24 % hours:
                raise ValueError("hour intervals must divide a day (e.g. 1h, 6h, 12h)")
            when = f"{minute} */{hours} * * *"
        else:
            if self.every % 86400:
                raise ValueError("day intervals must be whole days")
            days = self.every // 86400
            when = f"{minute} {rng.randrange(24)} */{days} * *" if days > 1 else f"{minute} {rng.randrange(24)} * * *"
        return f"{when} {shlex.join(self.command(cron=True))} {MARKER}"

    def systemd_units(self) -> dict[str, str]:
        service = ("[Unit]\nDescription=probe: measure website blocking from this network\n"
                   "Wants=network-online.target\nAfter=network-online.target\n\n"
                   f"[Service]\nType=oneshot\nWorkingDirectory={Path(self.workdir or Path.cwd()).resolve()}\n"
                   f"ExecStart={shlex.join(self.command(cron=False))}\n"
                   "Nice=10\n")
        timer = ("[Unit]\nDescription=Run probe regularly\n\n"
                 f"[Timer]\nOnBootSec=5min\nOnUnitActiveSec={self.every}s\nRandomizedDelaySec={self.jitter}s\n"
                 "Persistent=true\n\n[Install]\nWantedBy=timers.target\n")
        return {"probe.service": service, "probe.timer": timer}


def install_crontab(line: str, current: str) -> str:
    """The new crontab: the old one without probe's line, plus the new one."""
    kept = [x for x in current.splitlines() if not x.rstrip().endswith(MARKER)]
    return "\n".join([*kept, line]) + "\n"


class InstallError(ProbeError):
    """The crontab or the unit files could not be installed; nothing was changed."""


def install_cron(line: str) -> None:
    """Replace probe's line in the user's crontab (or add it), keeping every other line."""
    try:
        current = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
        done = subprocess.run(["crontab", "-"], input=install_crontab(line, current.stdout if current.returncode == 0
                                                                        else ""), capture_output=True, text=True)
    except OSError as e:
        raise InstallError(f"crontab: {e.strerror or e} (is cron installed?)") from None
    if done.returncode != 0:
        raise InstallError(f"crontab: {done.stderr.strip()}")


def install_units(units: dict[str, str], unit_dir: str | None) -> tuple[Path, str]:
    """Write the units where systemd finds them: (the directory, the systemctl command that enables them)."""
    default = "/etc/systemd/system" if os.geteuid() == 0 else str(Path.home() / ".config/systemd/user")
    target = Path(unit_dir or default)
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name, text in units.items():
            (target / name).write_text(text)
    except OSError as e:
        raise InstallError(f"cannot write the units into {target}: {e.strerror or e}") from None
    user = "" if os.geteuid() == 0 and not unit_dir else " --user"
    return target, f"systemctl{user} enable --now probe.timer"
