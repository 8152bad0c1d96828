"""The committed workbook and alert queries are the builder's output, valid KQL, and answer correctly."""

from __future__ import annotations

from datetime import UTC, datetime

from shared import monitoring
from shared.insights import Insights
from shared.kql import builder
from shared.kql.builder import Window

from kusto_check import assert_valid_kql


def test_committed_queries_match_the_builder() -> None:
    files = monitoring.render_all()
    assert set(files) == {path.name for path in monitoring.QUERIES_DIR.glob("*.kql")}
    for name, text in files.items():
        committed = (monitoring.QUERIES_DIR / name).read_text(encoding="utf-8")
        assert committed == text, f"{name} drifted from the builder: run `python -m shared.monitoring --write`"
    assert monitoring.main(["--check"]) == 0


def test_committed_queries_pass_the_kusto_language_service() -> None:
    texts = [path.read_text(encoding="utf-8") for path in sorted(monitoring.QUERIES_DIR.glob("*.kql"))]
    assert_valid_kql(texts)
    for text in texts:
        assert "ago(" in text and "datetime(2000" not in text


def test_alert_queries_fit_a_log_alert_rule() -> None:
    for name in monitoring.ALERTS:
        assert len((monitoring.QUERIES_DIR / name).read_bytes()) < 60_000, name


def test_alert_queries_answer_on_the_fixture(semantic_insights: Insights) -> None:
    window = Window(datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC))
    (hard,) = semantic_insights.run_query(builder.build_hard_bounce_rate_query(window)).records()
    assert (hard["HardBounceRate"], hard["HardBounces"], hard["Total"]) == (20.0, 2, 10)
    (latency,) = semantic_insights.run_query(builder.build_p95_latency_query(window)).records()
    # delivered, not skewed: alice 3 s, carol 5 s, henry 30 s, weird 120 s -> p95 is the largest
    assert latency["Delivered"] == 4 and latency["P95DurationSeconds"] == 120.0
