"""Canned queries so that `datasette results/probe.db --metadata probe-metadata.json` answers the research
questions at once: what is blocked here now, what changed, how it compares with the regulator's claims."""

from __future__ import annotations

from typing import Any

LATEST_PER_NETWORK = """
with latest as (
  select coalesce(vantage_asn, 0) as asn, max(id) as run_id from runs where status != 'running' group by 1
)
"""

QUERIES: dict[str, dict[str, str]] = {
    "blocked_now": {
        "title": "What is blocked now (latest run of each network)",
        "sql": LATEST_PER_NETWORK + """
select r.vantage_asn, r.vantage_network, m.url, m.category, m.status, m.detail, m.fingerprint, m.evidence
from latest join runs r on r.id = latest.run_id join measurements m on m.run_id = r.id
where m.status in ('blocked', 'anomaly') order by r.vantage_asn, m.status, m.url""",
    },
    "verdicts_by_network": {
        "title": "Verdicts by network and status (latest run of each network)",
        "sql": LATEST_PER_NETWORK + """
select r.vantage_asn, r.vantage_network, m.status, count(*) as urls
from latest join runs r on r.id = latest.run_id join measurements m on m.run_id = r.id
group by 1, 2, 3 order by 1, 4 desc""",
    },
    "methods": {
        "title": "Blocking methods (layer/reason) across all runs",
        "sql": """select substr(detail, 1, instr(detail || ':', ':') - 1) as method, count(*) as measurements,
count(distinct url) as urls from measurements where status in ('blocked', 'anomaly') group by 1 order by 2 desc""",
    },
    "blocked_over_time": {
        "title": "Blocked URLs per run, per network",
        "sql": """select r.id as run, r.started, r.vantage_asn, r.vantage_network,
sum(m.status = 'blocked') as blocked, sum(m.status = 'anomaly') as anomalies, count(*) as measured
from runs r join measurements m on m.run_id = r.id group by r.id order by r.started""",
    },
    "changes": {
        "title": "URLs whose verdict changed between consecutive runs of one network",
        "sql": """with v as (
  select m.url, r.vantage_asn as asn, r.id as run, m.status, m.detail,
         lag(m.status) over (partition by coalesce(r.vantage_asn, 0), m.url order by r.id) as previous_status,
         lag(m.detail) over (partition by coalesce(r.vantage_asn, 0), m.url order by r.id) as previous_detail
  from measurements m join runs r on r.id = m.run_id
)
select * from v where previous_status is not null and (previous_status != status or previous_detail != detail)
order by asn, url, run""",
    },
    "claims_vs_measured": {
        "title": "Regulators' claims next to what probe measured",
        "sql": """select c.key, c.authority, c.date, c.claimed_count, c.breakdown,
(select count(distinct url) from measurements) as urls_measured,
(select count(distinct url) from measurements where status = 'blocked') as urls_blocked,
(select count(distinct url) from measurements where status = 'anomaly') as urls_anomalous
from claims c order by c.date""",
    },
}


def metadata(db_name: str = "probe") -> dict[str, Any]:
    return {
        "title": "probe: website blocking measurements",
        "description": "Verdicts with their evidence; see the README's data model.",
        "databases": {db_name: {"queries": QUERIES}},
    }
