"""Deliverability benchmarks (quota, health, providers): each aggregate's KQL on the embedded store against a
hand-written DuckDB SQL of the same aggregate, side by side on the same store; goal ratio <= 2.

Registered in benchmarks/run.py (``python benchmarks/run.py quota health providers``).
"""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta
from typing import Any

from local.store import open_store
from shared.deliverability.health import health_query
from shared.deliverability.models import ProviderStatsParams, QuotaParams, SenderHealthParams
from shared.deliverability.quota import quota_queries
from shared.insights import Insights
from shared.kql.builder import Filters
from shared.kql.deliverability import build_provider_stats_query
from shared.kql.query import KqlQuery
from shared.providers import PROVIDER_TABLES, host_depths, provider_rows
from shared.settings import Settings

QUOTA_SQL = """
WITH sends AS (
  SELECT CorrelationId, _ResourceId, arg_min(TimeGenerated, TimeGenerated) AS SendTime,
         arg_min(UniqueRecipientsCount, TimeGenerated) AS Recipients
  FROM ACSEmailSendMailOperational WHERE TimeGenerated >= $from AND TimeGenerated < $to GROUP BY ALL),
pm AS (SELECT time_bucket(INTERVAL 1 minute, SendTime) AS T, count(*) AS M, sum(Recipients) AS R
  FROM sends GROUP BY ALL),
ph AS (SELECT time_bucket(INTERVAL 1 hour, T) AS T, sum(M) AS M, sum(R) AS R FROM pm GROUP BY ALL)
SELECT 'minute' AS kind, NULL::TIMESTAMP AS T, count(*) AS periods, max(M) AS M, max(R) AS R,
       quantile_disc(M, 0.95) AS p95m, quantile_disc(R, 0.95) AS p95r, count(*) FILTER (M > $minute) AS over,
       sum(M) AS tm, sum(R) AS tr FROM pm
UNION ALL
SELECT 'hour', NULL, count(*), max(M), max(R), quantile_disc(M, 0.95), quantile_disc(R, 0.95),
       count(*) FILTER (M > $hour), sum(M), sum(R) FROM ph
UNION ALL
(SELECT 'busiest', T, NULL, M, R, NULL, NULL, NULL, NULL, NULL FROM pm ORDER BY M DESC, T LIMIT 5)
UNION ALL
SELECT 'lastHour', T, NULL, M, R, NULL, NULL, NULL, NULL, NULL FROM pm WHERE T >= $last
"""


def _correlated_sql(hand_sql: str) -> str:
    """benchmarks/run.py's hand-written correlation (sends, finals, codes, bounce type), with the sender and the
    mail server host of each final status added."""
    head = hand_sql.split("SELECT Domain, count(*)")[0]
    added = (
        "arg_max(SmtpStatusCode, TimeGenerated) AS Smtp,\n"
        "         arg_max(SenderDomain, TimeGenerated) AS SenderDomain,"
        " arg_max(SenderUsername, TimeGenerated) AS SenderUsername,\n"
        "         arg_max(RecipientMailServerHostName, TimeGenerated) AS Host"
    )
    return head.replace("arg_max(SmtpStatusCode, TimeGenerated) AS Smtp", added)


HEALTH_TAIL = """
SELECT CASE WHEN SendTime >= $current THEN 'current' ELSE 'previous' END AS Period, lower(SenderDomain) AS SenderDomain,
       SenderUsername, count(*) AS Recipients, count(*) FILTER (Status = 'Delivered') AS Delivered,
       count(*) FILTER (Status IN ('Bounced', 'Failed') AND BounceType = 'Hard Bounce') AS HardBounces,
       count(*) FILTER (Status IN ('Quarantined', 'FilteredSpam')) AS Spam
FROM typed GROUP BY ALL ORDER BY 2, 3, 1
"""


def _providers_tail() -> str:
    joins = "\n".join(
        f"  LEFT JOIN hosts{d} h{d} ON h{d}.s = regexp_extract(lower(t.Host), '([^.]+{'[.][^.]+' * (d - 1)})[.]?$', 1)"
        for d in host_depths()
    )
    chosen = ", ".join(f"h{d}.p" for d in host_depths())
    return f""",
prov AS (
  SELECT t.*, coalesce({chosen}, dp.p,
         CASE WHEN coalesce(t.Host, '') <> '' THEN 'Other' ELSE 'Unknown' END) AS Provider
  FROM typed t
{joins}
  LEFT JOIN provider_domains dp ON dp.s = t.Domain)
SELECT 'provider' AS kind, Provider, NULL AS Status, NULL AS Smtp, NULL AS Enhanced, count(*) AS n,
       count(*) FILTER (Status = 'Delivered') AS Delivered,
       count(*) FILTER (Status IN ('Bounced', 'Failed') AND BounceType = 'Hard Bounce') AS HardBounces,
       count(*) FILTER (Status IN ('Quarantined', 'FilteredSpam')) AS Spam,
       count(*) FILTER (Status IN ('Bounced', 'Failed')) AS Bounced,
       quantile_disc(Latency, 0.5) AS P50, quantile_disc(Latency, 0.95) AS P95
FROM prov GROUP BY Provider
UNION ALL
SELECT 'code', Provider, Status, Smtp, Enhanced, count(*), NULL, NULL, NULL, NULL, NULL, NULL
FROM prov WHERE Status <> 'Delivered' GROUP BY ALL
"""


def _load_provider_tables(con: Any) -> None:
    for name in PROVIDER_TABLES:
        target = "provider_domains" if name == "MailboxProviderDomains" else "hosts" + name[-1]
        con.execute(f"CREATE OR REPLACE TEMP TABLE {target}(s VARCHAR, p VARCHAR)")
        con.executemany(f"INSERT INTO {target} VALUES (?, ?)", provider_rows(name))


def _naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None)


def compare(
    name: str,
    insights: Insights,
    query: KqlQuery,
    sql: str,
    values: dict[str, Any],
    store: Any,
    timer: Any,
    load: Any,
) -> dict[str, Any]:
    insights.run_query(query)  # translate once
    ours = timer(lambda: insights.run_query(query), 5)
    con = open_store(store, read_only=True)
    load(con)
    _load_provider_tables(con)
    hand = timer(lambda: con.execute(sql, values).fetchall(), 5)
    ours_rows, hand_rows = len(insights.run_query(query).records()), len(con.execute(sql, values).fetchall())
    con.close()
    return {
        "oursMs": round(statistics.median(ours)),
        "handSqlMs": round(statistics.median(hand)),
        "ratio": round(statistics.median(ours) / statistics.median(hand), 2),
        "rows": [ours_rows, hand_rows],
        "kqlBytesWithFunctions": len(query.log_analytics_text(catalog_functions=True).encode()),
        "goal": "ratio <= 2, <= 8192 bytes",
    }


def bench(kind: str, insights: Insights, start: datetime, end: datetime, hand_sql: str, **tools: Any) -> dict[str, Any]:
    window = {"from": start.isoformat(), "to": end.isoformat()}
    grace = insights.status_grace
    if kind == "quota":
        settings = Settings.from_env({})
        query = quota_queries(insights, QuotaParams.model_validate(window), settings)[0]
        values = {
            "from": _naive(start),
            "to": _naive(end),
            "minute": settings.send_limit_per_minute,
            "hour": settings.send_limit_per_hour,
            "last": _naive(end - timedelta(hours=1)),
        }
        return compare(kind, insights, query, QUOTA_SQL, values, **tools)
    if kind == "health":
        # 24 h and the 24 h before: the correlation reads two days of sends.
        query = health_query(insights, SenderHealthParams.model_validate({"to": end.isoformat()}))
        values = {
            "from": _naive(end - timedelta(days=2)),
            "to": _naive(end),
            "status_to": _naive(end + grace),
            "current": _naive(end - timedelta(days=1)),
        }
        return compare(kind, insights, query, _correlated_sql(hand_sql) + HEALTH_TAIL, values, **tools)
    params = ProviderStatsParams.model_validate(window)
    query = build_provider_stats_query(Filters.from_scope(params), insights.send_window(params))
    values = {"from": _naive(start), "to": _naive(end), "status_to": _naive(end + grace)}
    sql = _correlated_sql(hand_sql).rstrip().rstrip(")") + ")" + _providers_tail()
    return compare(kind, insights, query, sql, values, **tools)
