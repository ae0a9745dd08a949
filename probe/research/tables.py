"""The columnar tables `probe export --format parquet` writes and `--format clickhouse-schema` declares.

One list of columns per table is the single source of both, so the Parquet files and the ClickHouse tables
cannot drift apart: same names, same order (`INSERT INTO t SELECT * FROM file(...)` is positional), and
types that map one to one. Kinds are named here without importing pyarrow, so printing the schema needs
nothing beyond probe itself.

Unknown vantage ASN and country are 0 and 'ZZ' (OONI's convention) rather than NULL: they are sort keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["string", "lc", "date", "int", "uint16", "uint32", "float", "bool", "time", "strings", "headers",
               "late_answers", "certs"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    name: str
    kind: Kind
    sql: str  # the SQLite expression that reads it (m: measurements, r: runs, o: the observation table)
    nullable: bool = True
    doc: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    source: str  # the SQLite table rows come from
    order_by: tuple[str, ...]
    doc: str = ""
    by_measurement: bool = True  # rows belong to measurements: --run/--since select them, month partitions

    def from_sql(self) -> str:
        if self.source == "measurements":
            return "measurements m join runs r on r.id = m.run_id"
        if self.by_measurement:
            return (f"{self.source} o join measurements m on m.id = o.measurement_id "
                    "join runs r on r.id = m.run_id")
        if self.source == "claim_items":
            return "claim_items o join claims c on c.id = o.claim_id"
        return f"{self.source} o"

    def order_sql(self) -> str:
        return "m.id" if self.source == "measurements" else "o.rowid"


def _c(name: str, kind: Kind, sql: str | None = None, *, null: bool = True, doc: str = "") -> Column:
    return Column(name=name, kind=kind, sql=sql or f"o.{name}", nullable=null, doc=doc)


_MEASURED_AT = "coalesce(nullif(m.started, ''), r.started)"
# Every observation row carries its measurement's UUID, time and vantage, so each table partitions by month
# and sorts like `measurements`, and a query on one table needs no join to filter by network or time.
_KEYS = (
    _c("measurement_uuid", "string", "m.uuid", null=False),
    _c("measured_at", "time", _MEASURED_AT, null=False),
    _c("vantage_asn", "uint32", "coalesce(r.vantage_asn, 0)", null=False),
    _c("vantage_country", "lc", "coalesce(nullif(r.vantage_country, ''), 'ZZ')", null=False),
    _c("hostname", "string", "coalesce(m.hostname, '')", null=False),
)
_OBS_ORDER = ("vantage_country", "vantage_asn", "hostname", "measured_at", "measurement_uuid")

MEASUREMENTS = Table(name="measurements", source="measurements", doc="one row per URL per run, with its run",
                     order_by=("vantage_country", "vantage_asn", "hostname", "measured_at"), columns=(
    _c("measurement_uuid", "string", "m.uuid", null=False),
    _c("run_uuid", "string", "r.uuid", null=False),
    _c("measured_at", "time", _MEASURED_AT, null=False, doc="when the URL's measurement started (UTC)"),
    _c("url", "string", "m.url", null=False),
    _c("hostname", "string", "coalesce(m.hostname, '')", null=False),
    _c("category", "lc", "coalesce(m.category, '')", null=False),
    _c("status", "lc", "m.status", null=False),
    _c("layer", "lc", "m.layer"),
    _c("detail", "lc", "m.detail"),
    _c("fingerprint", "lc", "m.fingerprint"),
    _c("control", "lc", "m.control"),
    _c("rule", "lc", "m.rule"),
    _c("rules_version", "lc", "m.rules_version"),
    _c("runtime_s", "float", "m.runtime_s"),
    _c("evidence", "string", "m.evidence"),
    _c("run_started", "time", "r.started", null=False),
    _c("software_version", "lc", "r.software_version"),
    _c("vantage_asn", "uint32", "coalesce(r.vantage_asn, 0)", null=False, doc="0 when unknown"),
    _c("vantage_network", "lc", "r.vantage_network"),
    _c("vantage_country", "lc", "coalesce(nullif(r.vantage_country, ''), 'ZZ')", null=False,
       doc="ISO 3166 code, ZZ when unknown"),
))

DNS_QUERIES = Table(name="dns_queries", source="dns_queries", order_by=_OBS_ORDER, doc="probe and DoH control queries",
                    columns=(*_KEYS,
    _c("resolver", "lc", null=False), _c("engine", "lc", null=False), _c("query_hostname", "string", "o.hostname"),
    _c("query_type", "lc", null=False), _c("answers", "strings", null=False), _c("cnames", "strings", null=False),
    _c("ttl", "int"), _c("rcode", "lc"), _c("failure", "lc"), _c("late_answers", "late_answers", null=False),
    _c("control", "bool", null=False), _c("t0", "float"), _c("t", "float"),
))

TCP_CONNECTS = Table(name="tcp_connects", source="tcp_connects", order_by=_OBS_ORDER, doc="one row per connection",
                     columns=(*_KEYS,
    _c("ip", "string", null=False), _c("port", "uint16", null=False), _c("origin", "lc", null=False),
    _c("failure", "lc"), _c("t0", "float"), _c("t", "float"),
))

TLS_HANDSHAKES = Table(name="tls_handshakes", source="tls_handshakes", order_by=_OBS_ORDER,
                       doc="one row per handshake", columns=(*_KEYS,
    _c("ip", "string", null=False), _c("port", "uint16", null=False), _c("sni", "string", null=False),
    _c("decoy", "bool", null=False), _c("failure", "lc"), _c("first_failure", "lc"), _c("version", "lc"),
    _c("cipher", "lc"), _c("alpn", "lc"), _c("peer_chain", "certs", null=False), _c("t0", "float"),
    _c("t", "float"),
))

HTTP_HOPS = Table(name="http_hops", source="http_hops", order_by=_OBS_ORDER, doc="one row per request of a chain",
                  columns=(*_KEYS,
    _c("url", "string", null=False), _c("ip", "string"), _c("status", "uint16"), _c("headers", "headers", null=False),
    _c("location", "string"), _c("body_length", "int"), _c("body_sha256", "string"),
    _c("body_truncated", "bool", null=False), _c("title", "string"), _c("failure", "lc"), _c("stopped", "lc"),
    _c("t0", "float"), _c("t", "float"),
))

TTL_PROBES = Table(name="ttl_probes", source="ttl_probes", order_by=_OBS_ORDER,
                   doc="one row per TTL-limited ClientHello of the locate step (issue 20)", columns=(*_KEYS,
    _c("ip", "string", null=False), _c("port", "uint16", null=False), _c("sni", "string", null=False),
    _c("ttl", "uint16", null=False), _c("failure", "lc"), _c("failed_step", "lc"), _c("reply_bytes", "int"),
    _c("router", "string", doc="who answered a UDP datagram with that TTL (a public router as its /24)"),
    _c("icmp", "lc"), _c("t0", "float"), _c("t", "float"),
))

# Regulators' claims travel with the measurements they are compared with (all of them, whatever the selection).
CLAIMS = Table(name="claims", source="claims", order_by=("claim_key",), by_measurement=False,
               doc="a regulator's announcement", columns=(
    _c("claim_key", "string", "o.key", null=False), _c("authority", "lc", null=False), _c("date", "date"),
    _c("claimed_count", "int"), _c("covers", "string"), _c("source", "string"), _c("source_url", "string"),
))

CLAIM_ITEMS = Table(name="claim_items", source="claim_items", order_by=("claim_key", "url"), by_measurement=False,
                    doc="an item of a claim's published list", columns=(
    _c("claim_key", "string", "c.key", null=False), _c("url", "string", "coalesce(o.url, '')", null=False),
    _c("kind", "lc"), _c("date_published", "string"), _c("authority", "lc"),
))

TABLES = (MEASUREMENTS, DNS_QUERIES, TCP_CONNECTS, TLS_HANDSHAKES, HTTP_HOPS, TTL_PROBES, CLAIMS, CLAIM_ITEMS)
