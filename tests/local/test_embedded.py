"""The embedded engine: its SQL rewrite for indexed message lookups changes no answer, and it uses the index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local import embedded
from local.embedded import DuckDbSource, drop_json_branches, index_equalities, optimise_sql
from shared.api.render import to_body
from shared.insights import Insights
from shared.models import BouncesParams, SearchParams, StatsParams, TraceParams

from conftest import FIXTURE_NOW

DAY = {"from": "2026-03-10T00:00:00Z", "to": "2026-03-11T00:00:00Z"}


def answers(insights: Insights) -> list[Any]:
    out: list[Any] = [
        to_body(insights.trace(TraceParams(message_id=m)))
        for m in ("msg-01-final", "msg-02-pending", "msg-04-nosend", "msg-99")
    ]
    for filters in (
        {},
        {"messageId": "msg-07-bounces"},
        {"internetMessageId": "<msg-01-final@contoso.com>"},
        {"recipientDomain": "fabrikam.com", "status": "Bounced"},
    ):
        out.append(to_body(insights.search(SearchParams.model_validate({**DAY, **filters}))))
    out += [to_body(insights.stats(kind, StatsParams.model_validate(DAY))) for kind in ("domains", "failures")]
    out.append(to_body(insights.bounces(BouncesParams.model_validate(DAY))))
    return out


@pytest.mark.slow  # waits on purpose or runs the Kusto language service: CI, not test-fast
def test_rewrite_changes_no_answer(semantic_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    optimised = DuckDbSource(semantic_store)
    expected = answers(Insights(optimised, clock=lambda: FIXTURE_NOW))
    optimised.close()
    monkeypatch.setattr(embedded, "optimise_sql", lambda sql: sql)
    plain = DuckDbSource(semantic_store)
    assert answers(Insights(plain, clock=lambda: FIXTURE_NOW)) == expected
    plain.close()


def test_index_rewrite_targets_message_lookups_only(semantic_insights: Insights) -> None:
    source = semantic_insights.source
    assert isinstance(source, DuckDbSource)
    trace = source.translate(semantic_insights.trace_query(TraceParams(message_id="m")).embedded_text())
    rewritten = index_equalities(str(trace))
    # the send row, the events and the engagement rows: each looked up by message first, in a stage of its own
    assert rewritten.count('AS MATERIALIZED (SELECT * FROM _s0 WHERE ("CorrelationId" = CAST($kqlp') == 3
    assert len(rewritten) < len(str(trace))
    stats = str(source.translate(semantic_insights.stats_query("domains", StatsParams()).embedded_text()))
    assert index_equalities(stats) == stats


def test_every_json_guard_of_our_queries_is_dropped(semantic_insights: Insights) -> None:
    source = semantic_insights.source
    assert isinstance(source, DuckDbSource)
    queries = [
        semantic_insights.trace_query(TraceParams(message_id="m")),
        semantic_insights.search_query(SearchParams.model_validate({"recipient": "a@b.com", "bounceType": "hard"})),
        *(semantic_insights.stats_query(kind, StatsParams()) for kind in ("domains", "senders", "failures")),
        semantic_insights.bounces_query(BouncesParams()),
    ]
    for query in queries:
        translated = str(source.translate(query.embedded_text()))
        assert "= 'JSON' THEN" in translated
        optimised = optimise_sql(translated)
        assert "= 'JSON' THEN" not in optimised, query.operation
        assert len(optimised) < len(translated)


def test_json_branch_rewrite_keeps_the_other_branch_whole() -> None:
    guarded = (
        "SELECT CASE WHEN typeof(\"a\") = 'JSON' THEN (CASE WHEN x THEN 'END' ELSE ')' END) "
        "ELSE CASE WHEN \"a\" = 'it''s ELSE' THEN 1 ELSE 2 END END AS k, "
        "CASE WHEN typeof(\"b\") = 'JSON' THEN 1 ELSE CASE WHEN typeof(\"c\") = 'JSON' THEN 2 ELSE 3 END END AS j "
        "FROM t"
    )
    assert drop_json_branches(guarded) == (
        "SELECT (CASE WHEN \"a\" = 'it''s ELSE' THEN 1 ELSE 2 END) AS k, ((3)) AS j FROM t"
    )
    # A guard on anything but a column, or one this rewrite cannot read to its END, is left alone.
    assert drop_json_branches("SELECT CASE WHEN typeof(1) = 'JSON' THEN 1 ELSE 2 END") == (
        "SELECT CASE WHEN typeof(1) = 'JSON' THEN 1 ELSE 2 END"
    )
    assert drop_json_branches("SELECT CASE WHEN typeof(\"a\") = 'JSON' THEN 1 END") == (
        "SELECT CASE WHEN typeof(\"a\") = 'JSON' THEN 1 END"
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda i: i.trace_query(TraceParams(message_id="msg-01-final")),
        lambda i: i.search_query(SearchParams.model_validate({**DAY, "messageId": "msg-01-final"})),
        # a window over part of the rows stored, so the optimiser cannot drop the time filter as always true
        lambda i: i.search_query(
            SearchParams.model_validate(
                {"from": "2026-03-10T12:00:00Z", "to": "2026-03-11T00:00:00Z", "messageId": "msg-07-bounces"}
            )
        ),
    ],
    ids=["trace", "search", "search-part-of-the-rows"],
)
def test_message_lookups_probe_the_index(semantic_store: Path, make: Any) -> None:
    from duckdb_kql.params import bind

    source = DuckDbSource(semantic_store)
    insights = Insights(source, clock=lambda: FIXTURE_NOW)
    query = make(insights)
    translated = source.translate(query.embedded_text())
    bound, _ = bind(list(translated.declarations), query.embedded_parameters())
    cursor, _ = source._thread_state()
    sql = optimise_sql(str(translated))
    plan = "\n".join(row[1] for row in cursor.execute("EXPLAIN ANALYZE " + sql, bound).fetchall())
    plain = "\n".join(row[1] for row in cursor.execute("EXPLAIN ANALYZE " + str(translated), bound).fetchall())
    source.close()
    # Both tables are probed through the CorrelationId index (the index is chosen when the scan starts,
    # so only the analyzed plan shows it); the translation as it comes scans them instead.
    assert plan.count("Index Scan") == 2, plan
    assert plain.count("Index Scan") == 0, plain
