"""Canned queries so that `datasette results/probe.db --metadata probe-metadata.json` answers the research
questions at once: what is blocked here now, what is anomalous, what changed, how it compares with the
regulator's claims. Status columns and words come from probe.verdicts: "blocked" is strong evidence only, and
anomalies have queries and columns of their own."""

from __future__ import annotations

from typing import Any

from ..verdicts import MEANING, STATUSES

LATEST_PER_NETWORK = """
with latest as (
  select coalesce(vantage_asn, 0) as asn, max(id) as run_id from runs where status != 'running' group by 1
)
"""
# One column per status, counting the rows of `m` (a measurements alias) with it: "sum(m.status = 'ok') as ok".
STATUS_COLUMNS = ", ".join(f"sum(m.status = '{s}') as {s}" for s in STATUSES)
WORDS = "; ".join(f"{s}: {MEANING[s]}" for s in STATUSES)


def _now(status: str) -> str:
    return LATEST_PER_NETWORK + f"""
select r.vantage_asn, r.vantage_network, r.id as run, r.started, m.url, m.category, m.detail, m.fingerprint,
m.evidence
from latest join runs r on r.id = latest.run_id join measurements m on m.run_id = r.id
where m.status = '{status}' order by r.vantage_asn, m.url"""


QUERIES: dict[str, dict[str, str]] = {
    "blocked_now": {
        "title": "What is blocked now, with strong evidence (latest run of each network)",
        "description": MEANING["blocked"] + ". Anomalies are in anomalies_now.",
        "sql": _now("blocked"),
    },
    "anomalies_now": {
        "title": "What is anomalous now, not attributable with confidence (latest run of each network)",
        "description": MEANING["anomaly"] + ".",
        "sql": _now("anomaly"),
    },
    "verdicts_by_network": {
        "title": "URLs per verdict and network (latest run of each network)",
        "description": WORDS,
        "sql": LATEST_PER_NETWORK + f"""
select r.vantage_asn, r.vantage_network, r.id as run, count(*) as urls, {STATUS_COLUMNS}
from latest join runs r on r.id = latest.run_id join measurements m on m.run_id = r.id
group by r.id order by r.vantage_asn""",
    },
    "methods": {
        "title": "Blocking methods (layer/reason), blocked and anomalous apart (latest run of each network)",
        "description": WORDS,
        "sql": LATEST_PER_NETWORK + """
select r.vantage_asn, r.vantage_network, substr(m.detail, 1, instr(m.detail || ':', ':') - 1) as method,
sum(m.status = 'blocked') as blocked, sum(m.status = 'anomaly') as anomaly
from latest join runs r on r.id = latest.run_id join measurements m on m.run_id = r.id
where m.status in ('blocked', 'anomaly') group by r.id, 3 order by r.vantage_asn, 4 desc, 5 desc""",
    },
    "blocked_over_time": {
        "title": "URLs per verdict in each run, per network",
        "description": WORDS,
        "sql": f"""select r.id as run, r.started, r.vantage_asn, r.vantage_network, count(*) as urls, {STATUS_COLUMNS}
from runs r join measurements m on m.run_id = r.id group by r.id order by r.started""",
    },
    "changes": {
        "title": "URLs whose verdict changed between consecutive runs of one network",
        "description": "`probe diff` names each change (newly blocked, newly anomalous, unblocked, ...). "
                       "method_changed is 1 where the two runs measured differently (rules version, signatures, "
                       "control, resolvers, timeouts: runs.method): such a change is probe's, not evidence of a "
                       "change in censorship (`probe diff` calls it our-method-changed).",
        "sql": """with v as (
  select m.url, r.vantage_asn as asn, r.id as run, m.status, m.detail,
         lag(m.status) over (partition by coalesce(r.vantage_asn, 0), m.url order by r.id) as previous_status,
         lag(m.detail) over (partition by coalesce(r.vantage_asn, 0), m.url order by r.id) as previous_detail,
         coalesce(r.rules_version, '') || ' ' || coalesce(r.method, r.options, '') as how,
         lag(coalesce(r.rules_version, '') || ' ' || coalesce(r.method, r.options, ''))
           over (partition by coalesce(r.vantage_asn, 0), m.url order by r.id) as previous_how
  from measurements m join runs r on r.id = m.run_id
)
select url, asn, run, status, detail, previous_status, previous_detail, how != previous_how as method_changed
from v where previous_status is not null and (previous_status != status or previous_detail != detail)
order by asn, url, run""",
    },
    "claims_vs_measured": {
        "title": "Regulators' claims next to what probe measured of their published items (latest run of each "
                 "network)",
        "description": "Only a claim's published items count as measured; a claim without a list has nothing "
                       "measured to compare with (see `probe claims compare KEY --list FILE`). " + WORDS,
        "sql": LATEST_PER_NETWORK + f""",
listed as (select claim_id, count(*) as n from claim_items group by 1)
select c.key, c.authority, c.date, c.claimed_count, coalesce(listed.n, 0) as items_listed,
r.vantage_asn, r.vantage_network, r.id as run,
case when listed.n is null then 'no: no list published' else 'yes: its published items' end as comparable,
case when listed.n is null then null else count(m.id) end as measured, {STATUS_COLUMNS}
from claims c cross join latest join runs r on r.id = latest.run_id left join listed on listed.claim_id = c.id
left join claim_items i on i.claim_id = c.id left join measurements m on m.run_id = r.id and m.url = i.url
group by c.id, r.id order by c.date, c.key, r.vantage_asn""",
    },
}


def metadata(db_name: str = "probe") -> dict[str, Any]:
    return {
        "title": "probe: website blocking measurements",
        "description": "Verdicts with their evidence; see the README's data model. " + WORDS,
        "databases": {db_name: {"queries": QUERIES}},
    }
