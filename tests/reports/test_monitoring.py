"""The committed workbook and alert queries (both forms) and workspace functions are the builder's output,
valid KQL, small enough for where they go, and answer correctly."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared import monitoring
from shared.insights import Insights
from shared.kql import builder
from shared.kql.builder import Window

from kusto_check import assert_valid_kql

#: What a log alert rule's query may hold (bytes), and our own bound for the form that calls the functions.
LOG_ALERT_QUERY_LIMIT = 64 * 1024
ALERT_QUERY_BOUND_WITH_FUNCTIONS = 16 * 1024
#: Workbook tiles that call the workspace functions stay as small as the service's queries.
TILE_BOUND_WITH_FUNCTIONS = 8 * 1024


def _committed(directory: Path) -> dict[str, str]:
    return {
        path.relative_to(directory).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(directory.rglob("*.kql"))
    }


def test_committed_queries_match_the_builder() -> None:
    files = monitoring.render_all()
    assert files == _committed(monitoring.QUERIES_DIR), "run `python -m shared.monitoring --write`"
    assert monitoring.render_functions() == _committed(monitoring.FUNCTIONS_DIR)
    assert monitoring.main(["--check"]) == 0


def test_check_reports_a_drifted_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, text in monitoring.render_functions().items():
        (tmp_path / name).write_text(text + ("// edited by hand\n" if "Smtp" in name else ""), encoding="utf-8")
    monkeypatch.setattr(monitoring, "FUNCTIONS_DIR", tmp_path)
    assert monitoring.main(["--check"]) == 1


def test_every_catalog_query_has_a_function_form() -> None:
    files = monitoring.render_all()
    inline = {name for name in files if "/" not in name}
    with_functions = {name.split("/", 1)[1] for name in files if name.startswith(f"{monitoring.WITH_FUNCTIONS}/")}
    assert with_functions == {name for name in inline if "CodeCatalog = datatable(" in files[name]}
    for name in with_functions:
        text = files[f"{monitoring.WITH_FUNCTIONS}/{name}"]
        assert "datatable(" not in text and "AcsEmailInsights_SmtpCodeCatalog()" in text


@pytest.mark.slow  # the Kusto parser over every query: make test runs it, make test-fast does not
def test_committed_queries_pass_the_kusto_language_service() -> None:
    """Both forms; the function form against the workspace functions declared to the analyzer."""
    texts = list(_committed(monitoring.QUERIES_DIR).values())
    assert_valid_kql(texts)
    for text in texts:
        assert "ago(" in text and "datetime(2000" not in text


def test_workspace_function_bodies_pass_the_kusto_language_service() -> None:
    assert_valid_kql(list(_committed(monitoring.FUNCTIONS_DIR).values()))


def test_alert_queries_fit_a_log_alert_rule() -> None:
    files = monitoring.render_all()
    for name in monitoring.ALERTS:
        assert len(files[name].encode()) < LOG_ALERT_QUERY_LIMIT, name
        small = files.get(f"{monitoring.WITH_FUNCTIONS}/{name}", files[name])
        assert len(small.encode()) <= ALERT_QUERY_BOUND_WITH_FUNCTIONS, name
    for name in monitoring.WORKBOOK:
        small = files.get(f"{monitoring.WITH_FUNCTIONS}/{name}", files[name])
        assert len(small.encode()) <= TILE_BOUND_WITH_FUNCTIONS, name


def test_alert_queries_answer_on_the_fixture(semantic_insights: Insights) -> None:
    window = Window(datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC))
    (hard,) = semantic_insights.run_query(builder.build_hard_bounce_rate_query(window)).records()
    assert (hard["HardBounceRate"], hard["HardBounces"], hard["Total"]) == (20.0, 2, 10)
    (latency,) = semantic_insights.run_query(builder.build_p95_latency_query(window)).records()
    # delivered, not skewed: alice 3 s, carol 5 s, henry 30 s, weird 120 s -> p95 is the largest
    assert latency["Delivered"] == 4 and latency["P95DurationSeconds"] == 120.0
