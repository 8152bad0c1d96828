"""The embedded engine: its SQL rewrite for indexed message lookups changes no answer, and it uses the index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.api.render import to_body
from shared.insights import Insights
from shared.logs import embedded
from shared.logs.embedded import DuckDbSource, optimise_sql
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


def test_rewrite_changes_no_answer(semantic_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    optimised = DuckDbSource(semantic_store)
    expected = answers(Insights(optimised, clock=lambda: FIXTURE_NOW))
    optimised.close()
    monkeypatch.setattr(embedded, "optimise_sql", lambda sql: sql)
    plain = DuckDbSource(semantic_store)
    assert answers(Insights(plain, clock=lambda: FIXTURE_NOW)) == expected
    plain.close()


def test_rewrite_targets_message_lookups_only(semantic_insights: Insights) -> None:
    source = semantic_insights.source
    assert isinstance(source, DuckDbSource)
    trace = source.translate(semantic_insights.trace_query(TraceParams(message_id="m")).embedded_text())
    rewritten = optimise_sql(str(trace))
    assert rewritten.count('WHERE ("CorrelationId" = CAST($kqlp') == 2  # the send row and the events
    assert len(rewritten) < len(str(trace))
    stats = str(source.translate(semantic_insights.stats_query("domains", StatsParams()).embedded_text()))
    assert optimise_sql(stats) == stats


def test_message_lookup_is_pushed_into_the_scan(semantic_store: Path) -> None:
    from duckdb_kql.params import bind

    source = DuckDbSource(semantic_store)
    insights = Insights(source, clock=lambda: FIXTURE_NOW)
    query = insights.trace_query(TraceParams(message_id="msg-01-final"))
    translated = source.translate(query.embedded_text())
    bound, _ = bind(list(translated.declarations), query.embedded_parameters())
    cursor, _ = source._thread_state()
    plan = "\n".join(row[1] for row in cursor.execute("EXPLAIN " + optimise_sql(str(translated)), bound).fetchall())
    source.close()
    # both tables are scanned with the equality as a table filter (no COALESCE wrapper left around it)
    assert plan.count("CorrelationId='msg-01-final'") + plan.count("CorrelationId = 'msg-01-final'") >= 2, plan
