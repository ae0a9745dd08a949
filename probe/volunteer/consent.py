"""Informed consent: the first interactive run explains the risks once; cron runs pass --accept-risk."""

from __future__ import annotations

import datetime as dt
import os

from .config import config_home

NOTICE = """\
Before you measure: please read this once.

probe connects, from your internet connection, to websites that may be blocked where you live, and records
how the connection fails. Your network operator (and anyone who watches your connection) can see which
sites you contact, as with any browsing. In some countries, testing or visiting blocked sites, or taking
part in censorship research, can carry legal or other risks. probe never stores your IP address in its
results, but sharing results can still reveal which network they came from.

Measure only if you understand and accept these risks for yourself.
"""


def marker():
    return config_home() / "accepted-risk"


def accepted() -> bool:
    return os.environ.get("PROBE_ACCEPT_RISK") == "1" or marker().exists()


def record() -> None:
    path = marker()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dt.datetime.now(dt.UTC).isoformat(timespec="seconds") + "\n")
