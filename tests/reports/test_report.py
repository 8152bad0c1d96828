"""The daily report: numbers from the persisted summaries (Azurite), failure reasons from one log query
(DuckDB), the HTML page rendered by headless Chromium, and the summaries' CSV export."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from local.embedded import DuckDbSource
from local.sample import fill_store
from local.store import open_store
from shared.api.render import summaries_csv, to_body
from shared.codes import explain_enhanced
from shared.insights import Insights
from shared.kql.query import KqlQuery
from shared.logs.source import LogQueryError, LogSource, QueryResult
from shared.models import SUMMARY_CSV_COLUMNS, DailyReport, StatsParams
from shared.report import build_daily_report, render_report, render_report_html
from shared.report.charts import VOLUME_COLOUR
from shared.report.daily import P50_MISSING_NOTE, STATUS_EXPLANATIONS
from shared.report.html import format_value
from shared.settings import Settings
from shared.summaries.job import run_daily_summary
from shared.summaries.table import SummaryStore

from report_data import Day, write_days

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2026, 11, 20)
#: The semantics fixture's send day (tests/fixtures/semantics/EXPECTED.md).
FIXTURE_DAY = date(2026, 3, 10)


@dataclass
class CountingSource:
    """A log source that counts the queries it runs (the report may run at most one)."""

    inner: LogSource
    name: str = "counting"
    queries: list[str] = field(default_factory=list)
    fail: bool = False

    def run(self, query: KqlQuery) -> QueryResult:
        self.queries.append(query.operation)
        if self.fail:
            raise LogQueryError("the log source is down")
        return self.inner.run(query)

    def check(self) -> tuple[bool, str]:
        return self.inner.check()

    def query_text(self, query: KqlQuery) -> str:
        return self.inner.query_text(query)


@pytest.fixture
def store(azurite_connection_string: str) -> Iterator[SummaryStore]:
    summary_store = SummaryStore.from_connection_string(azurite_connection_string, "Report" + uuid.uuid4().hex[:12])
    summary_store.ensure_table()
    yield summary_store
    summary_store.client.delete_table()
    summary_store.close()


# --------------------------------------------------------------------------- numbers, by hand

#: The report day, the day before, and two more days of the week before (the others have no summary).
HAND_DAYS = {
    DAY: Day(
        delivered=180,
        bounced=20,
        suppressed=5,
        pending=10,
        hard=12,
        soft=3,
        p50=2.0,
        p95=40.0,
        domains={
            "contoso.com": (120, 8, 1.5, 20.0),
            "fabrikam.com": (40, 4, 3.0, 90.0),
            "tiny.example": (3, 0, 9.0, 9.5),
        },
    ),
    DAY - timedelta(days=1): Day(delivered=140, bounced=10, suppressed=0, hard=6, soft=1, p50=None, p95=50.0),
    DAY - timedelta(days=3): Day(delivered=95, bounced=5, suppressed=3, hard=4, soft=0, p50=3.0, p95=60.0),
    DAY - timedelta(days=6): Day(delivered=80, bounced=0, suppressed=0, pending=4, hard=0, soft=2, p50=1.0, p95=20.0),
    DAY - timedelta(days=8): Day(delivered=999, bounced=0, hard=99),  # outside the 7-day average
}
NOW = datetime.combine(DAY + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=2)


def hand_report(store: SummaryStore, insights: Insights | None = None) -> DailyReport:
    write_days(store, HAND_DAYS, computed_at=NOW)
    return build_daily_report(store, insights, DAY, now=NOW)


def test_headline_numbers_compare_with_the_day_before_and_the_week_before(store: SummaryStore) -> None:
    report = hand_report(store)
    metrics = {m.name: m for m in report.metrics}
    day, before = HAND_DAYS[DAY], HAND_DAYS[DAY - timedelta(days=1)]
    week = [HAND_DAYS[DAY - timedelta(days=n)] for n in (1, 3, 6)]

    sent = metrics["sent"]
    assert sent.value == day.total + day.pending == 215
    assert sent.previous_day == before.total + before.pending
    assert sent.change == sent.value - sent.previous_day
    assert sent.seven_day_average == pytest.approx(sum(d.total + d.pending for d in week) / 3, abs=1e-3)

    delivered = metrics["deliveredPercent"]
    assert delivered.value == round(100 * day.delivered / day.total, 2)
    assert delivered.change == pytest.approx(delivered.value - round(100 * before.delivered / before.total, 2))
    assert (metrics["hardBounces"].value, metrics["hardBounces"].previous_day) == (day.hard, before.hard)
    assert metrics["softBounces"].seven_day_average == pytest.approx(sum(d.soft for d in week) / 3, abs=1e-3)
    assert metrics["suppressed"].value == day.suppressed
    # p50: the day before lacks it (a summary written before the median was recorded), so the average
    # covers the two days that have it, and the day before's change is unknown.
    p50 = metrics["p50Seconds"]
    assert (p50.value, p50.previous_day, p50.change) == (2.0, None, None)
    assert p50.seven_day_average == pytest.approx((3.0 + 1.0) / 2)
    assert metrics["p95Seconds"].change == day.p95 - before.p95  # type: ignore[operator]


def test_a_missing_median_is_said_not_hidden(store: SummaryStore) -> None:
    write_days(store, HAND_DAYS)
    report = build_daily_report(store, None, DAY - timedelta(days=1), now=NOW)
    p50 = next(m for m in report.metrics if m.name == "p50Seconds")
    assert p50.value is None and p50.note == P50_MISSING_NOTE
    assert "recompute the day" in render_report_html(report)


def test_history_domains_bounces_pending_and_completeness(store: SummaryStore) -> None:
    report = hand_report(store)

    assert [d.date for d in report.history] == [DAY - timedelta(days=n) for n in range(13, -1, -1)]
    summarised = {d.date for d in report.history if d.summarised}
    assert summarised == set(HAND_DAYS)
    assert report.completeness.days_summarised == len(HAND_DAYS)
    assert len(report.completeness.missing_days) == 14 - len(HAND_DAYS)

    assert [d.domain for d in report.domain_latency] == ["contoso.com", "fabrikam.com", "tiny.example"]
    assert (report.domain_latency[1].p50_seconds, report.domain_latency[1].p95_seconds) == (3.0, 90.0)
    assert report.hard_bounces.count == 12 and report.hard_bounces.previous_day == 6
    assert [(d.domain, d.count) for d in report.hard_bounces.top_domains] == [("contoso.com", 8), ("fabrikam.com", 4)]

    # The day's 10 pending recipients may still resolve (72 h window open at NOW); the 4 of DAY-6 cannot.
    assert (report.pending.still_pending, report.pending.expired) == (10, 4)
    assert report.pending.expired_days == [DAY - timedelta(days=6)] and report.pending.still_pending_days == [DAY]
    assert not report.completeness.day_final and report.completeness.log_queries == 0


def test_the_json_form_round_trips(store: SummaryStore) -> None:
    report = hand_report(store)
    body = to_body(report)
    assert body["metrics"][0]["sevenDayAverage"] == report.metrics[0].seven_day_average
    assert DailyReport.model_validate(body) == report


# --------------------------------------------------------------------------- the one log query


def test_failure_reasons_cost_exactly_one_log_query(store: SummaryStore, semantic_store: Path) -> None:
    source = CountingSource(DuckDbSource(semantic_store))
    insights = Insights(source)
    report = build_daily_report(store, insights, FIXTURE_DAY, now=NOW)
    assert source.queries == ["stats-failures"] and report.completeness.log_queries == 1

    start = datetime.combine(FIXTURE_DAY, datetime.min.time(), UTC)
    params = StatsParams.model_validate({"from": start, "to": start + timedelta(days=1), "top": 10})
    expected = insights.stats("failures", params).value  # the stats API's answer for the same day
    assert [(r.failure_reason, r.enhanced_smtp_status_code, r.count) for r in report.failure_reasons] == [
        (row["failureReason"], row["enhancedSmtpStatusCode"], row["count"]) for row in expected
    ]
    assert report.failure_reasons, "the fixture day has failures"
    for reason in report.failure_reasons:
        code = reason.enhanced_smtp_status_code
        if code and not code.startswith("2"):
            info = explain_enhanced(code)
            assert reason.explanation.startswith(info.meaning.split(" (")[0][:20]) and reason.remedy == info.remedy
        else:  # no code, or a success code on an undelivered recipient: the status explains it
            assert reason.explanation == STATUS_EXPLANATIONS[str(reason.final_delivery_status)]
            assert reason.remedy is None
    source.inner.close()  # type: ignore[attr-defined]


def test_a_failing_log_query_leaves_the_report_standing(store: SummaryStore, semantic_store: Path) -> None:
    source = CountingSource(DuckDbSource(semantic_store), fail=True)
    report = hand_report(store, Insights(source))
    assert report.completeness.failure_reasons_source == "unavailable" and report.failure_reasons == []
    assert any("failure reasons unavailable" in w for w in report.completeness.warnings)
    assert report.metrics[0].value == 215
    assert "could not be read from the logs" in render_report_html(report)
    source.inner.close()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- HTML for mail clients


def test_the_page_is_self_contained_and_mail_safe(store: SummaryStore) -> None:
    write_days(store, {DAY: Day(delivered=10, domains={'<script>alert("x")</script>.example': (10, 0, 1.0, 2.0)})})
    report = build_daily_report(store, None, DAY, now=NOW)
    page = render_report_html(report, images="inline-data")
    mail = render_report(report, images="cid")

    for html in (page, mail.html):
        assert "<script" not in html and "<link" not in html and "<style" not in html
        assert " class=" not in html and "@import" not in html
        assert not re.search(r'(src|href)="https?:', html), "no external assets"
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;.example" in html
        assert "<table" in html and 'role="presentation"' in html
    assert len(re.findall(r'src="data:image/png;base64,', page)) == len(mail.charts) == 2
    assert sorted(re.findall(r'src="cid:([^"]+)"', mail.html)) == sorted(c.content_id for c in mail.charts)


# --------------------------------------------------------------------------- CSV export


def test_summaries_csv_has_one_row_per_day_and_key_and_defuses_formulas(store: SummaryStore) -> None:
    write_days(
        store,
        {
            DAY: Day(
                delivered=7,
                bounced=1,
                hard=1,
                domains={"=HYPERLINK(1)": (3, 1, None, 2.0), "b.example": (4, 0, 1.0, 2.0)},
            )
        },
    )
    rows = store.read(DAY, DAY)
    text = summaries_csv(rows)
    parsed = list(csv.reader(io.StringIO(text)))
    assert tuple(parsed[0]) == SUMMARY_CSV_COLUMNS
    assert text.endswith("\r\n") and len(parsed) == 1 + len(rows) == 4
    by_key = {(r[0], r[1], r[2]): dict(zip(parsed[0], r, strict=True)) for r in parsed[1:]}
    assert set(by_key) == {
        (DAY.isoformat(), "total", "all"),
        (DAY.isoformat(), "domain", "'=HYPERLINK(1)"),
        (DAY.isoformat(), "domain", "b.example"),
    }
    total = by_key[(DAY.isoformat(), "total", "all")]
    assert (total["total"], total["delivered"], total["hardBounces"]) == ("8", "7", "1")
    assert by_key[(DAY.isoformat(), "domain", "'=HYPERLINK(1)")]["p50DurationSeconds"] == ""
    assert total["computedAt"].endswith("Z")


# --------------------------------------------------------------------------- rendered by Chromium


def chromium_binary() -> str:
    """Chromium on PATH, installed by tools/install-chromium.sh when missing; skips when it cannot be."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    try:
        subprocess.run(
            ["bash", str(ROOT / "tools" / "install-chromium.sh")], check=True, timeout=900, capture_output=True
        )
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(
            f"NOTICE: headless Chromium is not installed and could not be ({type(exc).__name__}); "
            "run tools/install-chromium.sh"
        )
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("NOTICE: headless Chromium is not available; run tools/install-chromium.sh")
    return path


def chromium(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory, azurite_connection_string: str) -> Iterator[DailyReport]:
    """A report over 14 days of generated sample logs, summarised by the job into Azurite."""
    directory = tmp_path_factory.mktemp("report")
    con = open_store(directory / "logs.duckdb")
    fill_store(con, messages=3000, days=14, seed=7, end=DAY)
    con.close()
    store = SummaryStore.from_connection_string(azurite_connection_string, "Sample" + uuid.uuid4().hex[:12])
    source = DuckDbSource(directory / "logs.duckdb")
    insights = Insights(source)
    run = run_daily_summary(
        Settings.from_env(), [DAY - timedelta(days=n) for n in range(14)], insights=insights, store=store
    )
    assert run["ok"], run["failed"]
    yield build_daily_report(store, insights, DAY, now=NOW)
    source.close()
    store.client.delete_table()
    store.close()


def test_chromium_renders_the_page_with_its_numbers_and_charts(sample_report: DailyReport, tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    binary = chromium_binary()
    page = tmp_path / "report.html"
    page.write_text(render_report_html(sample_report), encoding="utf-8")
    shot = tmp_path / "report.png"
    chromium(binary, "--window-size=700,1400", f"--screenshot={shot}", page.as_uri())
    dom = chromium(binary, "--dump-dom", page.as_uri()).stdout

    image = Image.open(shot).convert("RGB")
    assert image.size == (700, 1400)
    assert max(ImageStat.Stat(image.convert("L")).stddev) > 20, "the screenshot is (nearly) blank"
    volume = tuple(int(VOLUME_COLOUR[i : i + 2], 16) for i in (1, 3, 5))
    colours = image.getcolors(maxcolors=1 << 24) or []
    bars = sum(n for n, pixel in colours if all(abs(a - b) <= 6 for a, b in zip(pixel, volume, strict=True)))
    assert bars > 2000, "the volume chart (a data: URI PNG) was not drawn"

    metrics = {m.name: m for m in sample_report.metrics}
    assert metrics["sent"].value and metrics["sent"].value > 0
    for name, metric in metrics.items():
        shown = re.search(rf'data-metric="{name}"[^>]*>([^<]*)<', dom)
        assert shown is not None and shown.group(1) == format_value(metric.value, metric.unit)
    assert f">{sample_report.hard_bounces.count:,}<" in dom
    assert "Top failure reasons" in dom and sample_report.failure_reasons


def test_the_function_app_starts_without_the_report_dependencies() -> None:
    """matplotlib and the ACS SDK load only when a report is rendered or sent (cold start, benchmarks/run.py)."""
    heavy = ("matplotlib", "numpy", "PIL", "azure.communication", "shared.report")
    probe = f"import sys, function_app; print(sorted(m for m in sys.modules if m.startswith({heavy!r})))"
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=ROOT)
    assert loaded.stdout.strip() == "[]"
