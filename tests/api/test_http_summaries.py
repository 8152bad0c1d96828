"""Summaries over HTTP and the timer through the local host, against real Azurite and the semantics fixture."""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.insights import Insights
from shared.services import Services
from shared.settings import APP_SETTINGS, Settings
from shared.summaries.table import SummaryStore

from apphost import serve, settings


def call(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, method=method, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as response:
            raw = response.read()
            return response.status, dict(response.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, dict(error.headers), json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def table() -> str:
    return "Summaries" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def base_url(semantic_insights: Insights, azurite_connection_string: str, table: str) -> Iterator[str]:
    patch = pytest.MonkeyPatch()
    patch.setenv("AzureWebJobsStorage", azurite_connection_string)
    config = settings(summary_table=table, summary_lookback_days=2, summary_backfill_days=4)
    with serve(Services(config, insights=semantic_insights)) as host:
        yield host.base_url
    patch.undo()


def test_recompute_then_read_a_day(base_url: str) -> None:
    status, _, body = call(f"{base_url}/api/summaries/daily/2026-03-10", "POST")
    assert status == 200, body
    rows = {(row["dimension"], row["key"]): row for row in body["value"]}
    total = rows[("total", "all")]
    assert (total["total"], total["delivered"], total["pending"], total["successRate"]) == (10, 5, 2, 50.0)
    assert rows[("domain", "example.org")]["delivered"] == 1
    assert total["date"] == "2026-03-10" and total["schemaVersion"] == 1

    status, _, again = call(f"{base_url}/api/summaries/daily/2026-03-10", "POST")
    assert status == 200
    strip = [{k: v for k, v in row.items() if k != "computedAt"} for row in again["value"]]
    assert strip == [{k: v for k, v in row.items() if k != "computedAt"} for row in body["value"]]

    status, _, domains = call(f"{base_url}/api/summaries/daily?from=2026-03-09&to=2026-03-11&dimension=domain")
    assert status == 200
    assert [row["key"] for row in domains["value"]] == ["contoso.com", "example.org", "fabrikam.com"]


def test_health_is_ok_with_table_storage(base_url: str) -> None:
    status, _, body = call(f"{base_url}/api/health")
    assert status == 200, body
    assert body["status"] == "ok" and body["tableStore"]["reachable"] is True
    assert "AccountKey" not in json.dumps(body)


def test_timer_runs_through_the_admin_endpoint(base_url: str, azurite_connection_string: str, table: str) -> None:
    status, _, _ = call(f"{base_url}/admin/functions/daily_summary", "POST", b"{}")
    assert status == 202
    store = SummaryStore.from_connection_string(azurite_connection_string, table)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    present = store.days_present(yesterday - timedelta(days=3), yesterday)
    # SUMMARY_BACKFILL_DAYS=4: the four days up to yesterday now all have a summary
    assert present == {yesterday - timedelta(days=n) for n in range(4)}


def test_local_settings_sample_lists_every_setting() -> None:
    from pathlib import Path

    sample = json.loads((Path(__file__).parents[2] / "local.settings.sample.json").read_text(encoding="utf-8"))
    values = sample["Values"]
    assert {spec.name for spec in APP_SETTINGS} <= set(values)
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert values["PYTHON_THREADPOOL_THREAD_COUNT"] == "32"  # as deployed (infra/app/api.bicep)
    for spec in APP_SETTINGS:
        assert values[spec.name] == (spec.default or ""), spec.name
    assert Settings.from_env().summary_table


def test_summaries_as_csv_by_format_and_by_accept(base_url: str) -> None:
    assert call(f"{base_url}/api/summaries/daily/2026-03-10", "POST")[0] == 200
    url = f"{base_url}/api/summaries/daily?from=2026-03-10&to=2026-03-10&dimension=total"
    for request in (
        urllib.request.Request(url + "&format=csv"),
        urllib.request.Request(url, headers={"Accept": "text/csv"}),
    ):
        with urllib.request.urlopen(request) as response:
            assert response.headers.get_content_type() == "text/csv"
            rows = list(csv.DictReader(io.StringIO(response.read().decode())))
        assert [(row["date"], row["dimension"], row["key"], row["delivered"]) for row in rows] == [
            ("2026-03-10", "total", "all", "5")
        ]


def test_daily_report_page_and_json(base_url: str) -> None:
    assert call(f"{base_url}/api/summaries/daily/2026-03-10", "POST")[0] == 200
    status, _, body = call(f"{base_url}/api/reports/daily/2026-03-10?format=json")
    assert status == 200, body
    assert body["date"] == "2026-03-10"
    with urllib.request.urlopen(f"{base_url}/api/reports/daily/2026-03-10") as response:
        assert response.headers.get_content_type() == "text/html"
        page = response.read().decode()
    assert page.lstrip().lower().startswith("<!doctype html") and "2026-03-10" in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # no external assets
    assert call(f"{base_url}/api/reports/daily/2026-13-10")[0] == 400
