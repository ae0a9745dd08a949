"""The verdict vocabulary, in one place: what each status means, how it is said, drawn and exported.

Analysis keeps `blocked` (strong evidence) apart from `anomaly` (inconsistent, not attributable) and `down`
(unreachable for the control too). Every research output (results, diff, claims, report, export, Datasette)
takes its words, groupings and colours from here, so that "blocked" means the same thing everywhere and no
output quietly adds anomalies to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, get_args

from .models import Status

# In the order outputs list them: strong evidence first, then weaker, then what says nothing about censorship.
STATUSES: Final[tuple[Status, ...]] = ("blocked", "anomaly", "filtered", "down", "ok", "error")
assert set(STATUSES) == set(get_args(Status))

# Said in sentences and summaries only where there are some: most networks have no opt-in filter at all.
SAID_WHEN_SOME: Final[tuple[Status, ...]] = ("filtered",)


def said(counts: Mapping[str, int | None]) -> list[Status]:
    """The statuses a sentence about these counts names, in order."""
    return [s for s in STATUSES if s not in SAID_WHEN_SOME or counts.get(s)]


# Interference of any strength, strong first: for what lists both (apart) and the few places where a sum is wanted
# at all (the lab's scoring); never to be reported as "blocked".
INTERFERENCE: Final[tuple[Status, ...]] = ("blocked", "anomaly")

# What each status means, in words a researcher can publish next to the number.
MEANING: Final[dict[str, str]] = {
    "blocked": "blocked with strong evidence (a blockpage or censor address, or a failure the control and the decoy "
               "do not show)",
    "anomaly": "anomalous: inconsistent with the control, but not attributable to a censor with confidence",
    "filtered": "filtered by an opt-in filter that the subscriber chose (e.g. Nayatel's Safeweb): not state or ISP "
                "blocking, and never counted with it",
    "down": "down: the control cannot reach it either",
    "ok": "reachable and consistent with the control",
    "error": "not measured: a local fault, no control, or an interrupted run",
}
# The same, short, for labels and sentences ("3 blocked, 1 anomalous").
SHORT: Final[dict[str, str]] = {"blocked": "blocked", "anomaly": "anomalous", "filtered": "filtered (opt-in)",
                                "down": "down", "ok": "reachable", "error": "not measured"}
COLORS: Final[dict[str, str]] = {"blocked": "#c0392b", "anomaly": "#e67e22", "filtered": "#2c3e91",
                                 "down": "#7f8c8d", "ok": "#27ae60", "error": "#8e44ad"}

# How the verdict of one URL changed between two runs of one network (research/diff.py decides which applies).
CHANGES: Final[dict[str, str]] = {
    "newly-blocked": "now blocked with strong evidence (was reachable or only anomalous)",
    "unblocked": "no longer blocked with strong evidence (now reachable or only anomalous)",
    "newly-anomalous": "now anomalous (was reachable)",
    "anomaly-cleared": "no longer anomalous (now reachable)",
    "method-changed": "still blocked or anomalous, at another layer (e.g. DNS -> TLS)",
    "blockpage-changed": "still blocked or anomalous, with another blockpage or censor signature",
    "detail-changed": "still blocked or anomalous, at the same layer, for another reason",
    "status-changed": "changed to or from down or not measured: says nothing about blocking",
    "our-method-changed": "changed between runs that measured differently (rules, signatures, control, resolvers or "
                          "timeouts): not evidence of a change in censorship (--across-methods classifies it anyway)",
}


class VerdictError(ValueError):
    """A status name outside the vocabulary."""


def parse_status(text: str) -> Status:
    """A status named by a user, checked: an unknown name is an error naming the accepted ones."""
    value = text.strip().lower()
    for status in STATUSES:
        if value == status:
            return status
    raise VerdictError(f"unknown status {text!r}: use one of {', '.join(STATUSES)}")


# OONI Web Connectivity's verdict keys (ts-017): `blocking` is false, null (analysis failed) or the layer string;
# `accessible` is true, false or null. OONI files TLS failures under "http-failure" and a page that differs
# (a blockpage included) under "http-diff".
OoniBlocking = str | bool | None


# Rules that judge a redirect target's failure: OONI's client follows the redirect inside its HTTP request, so
# it files whatever fails there (a lookup, a connect, a handshake) under "http-failure".
_HOP_RULES = {"redirect-blocked", "redirect-unverified"}


def ooni_blocking(status: str, layer: str | None, detail: str,
                  rule: str | None = None) -> tuple[OoniBlocking, bool | None]:
    """(`blocking`, `accessible`) for one of our verdicts."""
    if status == "ok":
        return False, True
    if status == "down":  # OONI's website-down case: nothing blocks it, and nobody reaches it
        return False, False
    if status in (*INTERFERENCE, "filtered"):  # an opt-in filter blocks too, in OONI's terms
        blocking = "http-failure" if rule in _HOP_RULES and layer != "dns" else _ooni_layer(layer, detail)
        return blocking, False if blocking is not None else None
    return None, None  # error: we could not measure, which OONI says with nulls


def _ooni_layer(layer: str | None, detail: str) -> str | None:
    if layer == "dns":
        return "dns"
    if layer == "tcp":
        return "tcp_ip"
    if layer == "tls":
        return "http-failure"
    if layer == "http":
        reason = detail.split("/", 1)[1].split(":", 1)[0] if "/" in detail else ""
        return "http-diff" if reason in ("diff", "blockpage", "server-side") else "http-failure"
    return None  # interference that no layer explains: OONI has no word for it other than "analysis undecided"
