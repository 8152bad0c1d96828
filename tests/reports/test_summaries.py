"""Daily summaries: the job and the Table Storage layout, against a real Azurite and a real DuckDB store.

Azurite comes from ``tools/azurite`` (``npm ci --prefix tools/azurite``), started once per session
by :mod:`tests.azurite` (or reused from ``AZURITE_TABLE_ENDPOINT``). Log rows are inserted with SQL
into an embedded store and aggregated by the real ``Insights.daily_summary`` KQL (duckdb-kql).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from local.embedded import DuckDbSource
from local.store import open_store
from shared import schemas
from shared.insights import Insights
from shared.logs.source import LogQueryError
from shared.settings import Settings
from shared.summaries.job import plan_days, run_daily_summary, summarize_one_day
from shared.summaries.table import (
    NONE_MARKER,
    SummaryStore,
    SummaryStoreError,
    SummaryStoreUnavailable,
    escape_key,
    row_key,
    unescape_key,
)

import azurite as azurite_helper

RESOURCE = (
    "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000001/RESOURCEGROUPS/RG/PROVIDERS/"
    "MICROSOFT.COMMUNICATION/COMMUNICATIONSERVICES/ACS-TEST"
)
FIXTURE = Path(__file__).parents[1] / "fixtures" / "semantics"
#: The account key of the "wrong key" tests: must never show up in a message.
WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5VGVzdA=="


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def table_name() -> str:
    return "Summaries" + uuid.uuid4().hex[:12]


@pytest.fixture
def store(azurite_connection_string: str, table_name: str) -> Iterator[SummaryStore]:
    summary_store = SummaryStore.from_connection_string(azurite_connection_string, table_name)
    summary_store.ensure_table()
    yield summary_store
    summary_store.client.delete_table()
    summary_store.close()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    """One writable embedded store for the module; each test uses days of its own."""
    con = open_store(tmp_path_factory.mktemp("summaries") / "logs.duckdb")
    yield con
    con.close()


@pytest.fixture(scope="module")
def insights(logs: duckdb.DuckDBPyConnection) -> Insights:
    # Sharing the writable connection: rows inserted later are seen by the next query.
    return Insights(DuckDbSource(":memory:", connection=logs))


def settings(**overrides: Any) -> Settings:
    return dataclasses.replace(Settings.from_env(), **overrides)


# --------------------------------------------------------------------------- log rows


def _insert(con: duckdb.DuckDBPyConnection, table: schemas.TableSchema, values: dict[str, Any]) -> None:
    row = {name: ("" if kusto_type == "string" else None) for name, kusto_type in table.columns}
    row.update({"_ResourceId": RESOURCE, "Type": table.name, "Category": table.category}, **values)
    columns = ", ".join(f'"{name}"' for name in row)
    con.execute(f'INSERT INTO "{table.name}" ({columns}) VALUES ({", ".join("?" for _ in row)})', list(row.values()))


def send(con: duckdb.DuckDBPyConnection, message_id: str, at: datetime, recipients: int) -> None:
    _insert(
        con,
        schemas.SEND_MAIL,
        {
            "TimeGenerated": at,
            "CorrelationId": message_id,
            "Size": 0.05,
            "AttachmentsCount": 0,
            "ToRecipientsCount": recipients,
            "CcRecipientsCount": 0,
            "BccRecipientsCount": 0,
            "UniqueRecipientsCount": recipients,
        },
    )


def status(
    con: duckdb.DuckDBPyConnection,
    message_id: str,
    at: datetime,
    recipient: str,
    delivery_status: str,
    *,
    mail_server: str = "mx.example.net",
    smtp: str = "",
    enhanced: str = "",
    hard: str = "",
    sender: str = "DoNotReply",
    sender_domain: str = "contoso.com",
) -> None:
    _insert(
        con,
        schemas.STATUS_UPDATE,
        {
            "TimeGenerated": at,
            "CorrelationId": message_id,
            "RecipientId": recipient,
            "DeliveryStatus": delivery_status,
            "SmtpStatusCode": smtp,
            "EnhancedSmtpStatusCode": enhanced,
            "IsHardBounce": hard,
            "SenderDomain": sender_domain,
            "SenderUsername": sender,
            "RecipientMailServerHostName": mail_server,
        },
    )


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second)


def entities(store: SummaryStore, day: date) -> dict[str, dict[str, Any]]:
    found = store.client.query_entities("PartitionKey eq @pk", parameters={"pk": day.isoformat()})
    return {str(entity["RowKey"]): dict(entity) for entity in found}


def by_key(store: SummaryStore, day: date) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(s.dimension, s.key): s.model_dump(by_alias=False) for s in store.read(day, day)}


def total_row(**counts: Any) -> dict[str, Any]:
    row = {
        "Dimension": "total",
        "Key": "all",
        "Total": 0,
        "Delivered": 0,
        "Bounced": 0,
        "Failed": 0,
        "Suppressed": 0,
        "Quarantined": 0,
        "FilteredSpam": 0,
        "Pending": 0,
        "HardBounces": 0,
        "SoftBounces": 0,
        "SuccessRate": 0.0,
        "AvgDurationSeconds": None,
        "P95DurationSeconds": None,
    }
    row.update(counts)
    return row


def dimension_row(dimension: str, key: str | None, total: int = 1) -> dict[str, Any]:
    return total_row(
        Dimension=dimension,
        Key=key,
        Total=total,
        Delivered=total,
        SuccessRate=100.0,
        AvgDurationSeconds=1.5,
        P95DurationSeconds=2.0,
    )


# --------------------------------------------------------------------------- keys (no Azurite)


NASTY_KEYS = [
    "a/b",
    "back\\slash",
    "hash#tag",
    "what?",
    "100%",
    "%41",
    "pipe|pipe",
    "tab\there",
    "nul\x00",
    "del\x7f",
    "c1\x85\x9f",
    "ünïcødé.例え.jp",
    "emoji😀@example.org",
    "~tilde~7C",
    "it's",
    "(none)",
    "(none",
    " spaced ",
    "a~",
    "~~",
    "mx/1.example.net",
]


@pytest.mark.parametrize("key", [*NASTY_KEYS, None])
def test_escape_round_trips_and_avoids_forbidden_characters(key: str | None) -> None:
    escaped = escape_key(key)
    assert unescape_key(escaped) == key
    assert not any(ch in "/\\#?%|'" or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in escaped)


def test_empty_and_missing_keys_share_the_none_marker() -> None:
    assert escape_key("") == escape_key(None) == NONE_MARKER
    assert escape_key("(none)") != NONE_MARKER
    assert len({escape_key(key) for key in NASTY_KEYS}) == len(NASTY_KEYS)


def test_over_long_keys_are_shortened_uniquely() -> None:
    first, second = "a" * 600 + "1", "a" * 600 + "2"
    assert row_key("domain", first) != row_key("domain", second)
    assert len(row_key("domain", first)) <= 512


def test_plan_recomputes_lookback_and_backfills_gaps() -> None:
    today = date(2026, 5, 20)
    present = {date(2026, 5, 17), date(2026, 5, 15)}
    plan = plan_days(today, 2, 6, present)
    assert plan == {
        date(2026, 5, 14): "backfill",
        date(2026, 5, 16): "backfill",
        date(2026, 5, 18): "recompute",
        date(2026, 5, 19): "recompute",
    }


# --------------------------------------------------------------------------- Azurite


@pytest.mark.azurite
def test_job_is_idempotent(store: SummaryStore, insights: Insights, logs: duckdb.DuckDBPyConnection) -> None:
    day = date(2026, 1, 5)
    send(logs, "idem-1", at(day, 9), 3)
    status(logs, "idem-1", at(day, 9, 0, 2), "ann@contoso.com", "Delivered", mail_server="mx1.contoso.com")
    status(
        logs,
        "idem-1",
        at(day, 9, 0, 4),
        "ben@fabrikam.com",
        "Bounced",
        smtp="550",
        enhanced="5.1.1",
        hard="true",
        mail_server="",
    )
    status(logs, "idem-1", at(day, 9, 0, 5), "cy@fabrikam.com", "Delivered", mail_server="mx.fabrikam.com")

    first = run_daily_summary(settings(), [day], insights=insights, store=store)
    snapshot = entities(store, day)
    second = run_daily_summary(settings(), [day], insights=insights, store=store)
    again = entities(store, day)

    assert first["ok"] and second["ok"]
    assert first["requested"] == second["requested"] == [day.isoformat()]
    assert second["entitiesDeleted"] == 0 and second["entitiesWritten"] == first["entitiesWritten"] == len(snapshot)

    def strip(found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {key: {k: v for k, v in entity.items() if k != "ComputedAt"} for key, entity in found.items()}

    assert strip(again) == strip(snapshot)
    assert set(snapshot) == {
        "total|all",
        "domain|contoso.com",
        "domain|fabrikam.com",
        "sender|DoNotReply@contoso.com",
        "status|Delivered",
        "status|Bounced",
        "mailServer|mx1.contoso.com",
        "mailServer|mx.fabrikam.com",
        "mailServer|(none)",
    }
    total = snapshot["total|all"]
    assert (total["Total"], total["Delivered"], total["Bounced"], total["HardBounces"], total["Pending"]) == (
        3,
        2,
        1,
        1,
        0,
    )
    assert total["SuccessRate"] == pytest.approx(66.67)
    assert total["SchemaVersion"] == 1 and total["Dimension"] == "total" and total["Key"] == "all"
    assert "Key" not in snapshot["mailServer|(none)"]

    read = by_key(store, day)
    assert read[("mailServer", None if _nullable_key() else "")]["total"] == 1
    assert read[("domain", "fabrikam.com")]["hard_bounces"] == 1
    assert read[("domain", "contoso.com")]["avg_duration_seconds"] == pytest.approx(2.0)
    assert read[("total", "all")]["computed_at"].tzinfo is not None


def _nullable_key() -> bool:
    from shared.summaries.table import _key_is_nullable

    return _key_is_nullable()


@pytest.mark.azurite
def test_late_events_change_a_recomputed_day(
    store: SummaryStore, insights: Insights, logs: duckdb.DuckDBPyConnection
) -> None:
    day = date(2026, 1, 12)
    send(logs, "late-1", at(day, 10), 2)
    status(
        logs,
        "late-1",
        at(day, 10, 0, 10),
        "dora@contoso.com",
        "Failed",
        smtp="451",
        enhanced="4.4.1",
        mail_server="mx.slow.example",
    )
    status(logs, "late-1", at(day, 10, 0, 3), "eli@contoso.com", "Delivered", mail_server="mx.contoso.com")
    send(logs, "late-2", at(day, 11), 1)  # no final status yet: pending

    first = run_daily_summary(settings(), [day], insights=insights, store=store)
    before = entities(store, day)
    assert before["status|Failed"]["Failed"] == 1
    assert before["total|all"]["Pending"] == 1
    assert first["days"][0]["recipients"] == 2

    # The retry succeeds an hour later, and the pending recipient is delivered the next morning.
    status(logs, "late-1", at(day, 11, 0, 10), "dora@contoso.com", "Delivered", mail_server="mx.contoso.com")
    status(
        logs, "late-2", at(day + timedelta(days=1), 8), "finn@fabrikam.com", "Delivered", mail_server="mx.fabrikam.com"
    )
    second = run_daily_summary(settings(), [day], insights=insights, store=store)
    after = entities(store, day)

    assert "status|Failed" not in after and "mailServer|mx.slow.example" not in after
    assert second["entitiesDeleted"] == 2
    total = after["total|all"]
    assert (total["Total"], total["Delivered"], total["Failed"], total["Pending"], total["SuccessRate"]) == (
        3,
        3,
        0,
        0,
        100.0,
    )
    assert after["domain|fabrikam.com"]["Delivered"] == 1
    assert after["status|Delivered"]["Total"] == 3


@pytest.mark.azurite
def test_missed_days_are_backfilled(store: SummaryStore, insights: Insights, logs: duckdb.DuckDBPyConnection) -> None:
    today = date(2026, 2, 10)
    for offset in range(1, 8):
        day = today - timedelta(days=offset)
        send(logs, f"gap-{offset}", at(day, 12), 1)
        status(logs, f"gap-{offset}", at(day, 12, 0, 1), f"user{offset}@contoso.com", "Delivered")
    # Earlier runs summarised Feb 4 and Feb 6; Feb 3, 5 (and the lookback days) are missing.
    early = run_daily_summary(settings(), [date(2026, 2, 4), date(2026, 2, 6)], insights=insights, store=store)
    assert early["ok"]
    computed_at_feb4 = entities(store, date(2026, 2, 4))["total|all"]["ComputedAt"]

    config = settings(summary_lookback_days=3, summary_backfill_days=7)
    report = run_daily_summary(config, insights=insights, store=store, today=today)

    assert report["ok"] and report["today"] == "2026-02-10"
    assert report["recomputed"] == ["2026-02-07", "2026-02-08", "2026-02-09"]
    assert report["backfilled"] == ["2026-02-03", "2026-02-05"]
    assert [entry["reason"] for entry in report["days"]] == [
        "backfill",
        "backfill",
        "recompute",
        "recompute",
        "recompute",
    ]
    assert store.days_present(date(2026, 2, 1), date(2026, 2, 10)) == {
        date(2026, 2, 3) + timedelta(days=i) for i in range(7)
    }
    # Feb 4 was present and outside the lookback: left alone.
    assert entities(store, date(2026, 2, 4))["total|all"]["ComputedAt"] == computed_at_feb4
    for iso in ("2026-02-03", "2026-02-05"):
        assert entities(store, date.fromisoformat(iso))["total|all"]["Delivered"] == 1
    assert isinstance(report["seconds"], float)
    json.dumps(report)  # JSON-able as is


class _FlakyInsights(Insights):
    """Real Insights whose answers for some days fail or come back partial (as Log Analytics can)."""

    def __init__(self, base: Insights, *, failing: set[date], partial: set[date]) -> None:
        super().__init__(base.source)
        self.failing, self.partial = failing, partial

    def daily_summary(self, day: date) -> tuple[list[dict[str, Any]], str | None]:
        if day in self.failing:
            raise LogQueryError("the workspace is unreachable")
        rows, warning = super().daily_summary(day)
        if day in self.partial:
            return rows[:1], "PartialError: query limits exceeded"
        return rows, warning


@pytest.mark.azurite
def test_failed_and_partial_days_are_reported(
    store: SummaryStore, insights: Insights, logs: duckdb.DuckDBPyConnection
) -> None:
    days = [date(2026, 2, 20), date(2026, 2, 21), date(2026, 2, 22)]
    for index, day in enumerate(days):
        send(logs, f"flaky-{index}", at(day, 8), 1)
        status(logs, f"flaky-{index}", at(day, 8, 0, 1), f"u{index}@contoso.com", "Delivered")
    run_daily_summary(settings(), days[:1], insights=insights, store=store)
    complete = entities(store, days[0])

    flaky = _FlakyInsights(insights, failing={days[1]}, partial={days[0], days[2]})
    report = run_daily_summary(settings(), days, insights=flaky, store=store)

    assert not report["ok"]
    assert report["failed"] == [{"date": "2026-02-21", "error": "the workspace is unreachable"}]
    assert [w["date"] for w in report["partialWarnings"]] == ["2026-02-20", "2026-02-22"]
    assert [entry["status"] for entry in report["days"]] == ["skipped", "failed", "written"]
    assert entities(store, days[0]) == complete  # a partial result never replaces a complete summary
    assert store.days_present(days[0], days[2]) == {days[0], days[2]}  # a partial day beats a gap


@pytest.mark.azurite
def test_a_send_before_midnight_counts_on_its_send_day(
    store: SummaryStore, insights: Insights, logs: duckdb.DuckDBPyConnection
) -> None:
    day = date(2026, 1, 20)
    send(logs, "midnight-1", datetime(2026, 1, 20, 23, 59, 0, 123456), 1)
    status(
        logs,
        "midnight-1",
        datetime(2026, 1, 21, 0, 1, 0, 123456),
        "late@night.example",
        "Delivered",
        mail_server="mx.night.example",
    )

    summary = summarize_one_day(insights, store, day, today=day + timedelta(days=5))
    rows = {(s.dimension, s.key): s for s in summary.value}
    assert rows[("total", "all")].total == 1 and rows[("total", "all")].delivered == 1
    assert rows[("domain", "night.example")].avg_duration_seconds == pytest.approx(120.0)
    assert rows[("total", "all")].pending == 0

    next_day = summarize_one_day(insights, store, day + timedelta(days=1), today=day + timedelta(days=5))
    assert [(s.dimension, s.key, s.total) for s in next_day.value] == [("total", "all", 0)]


@pytest.mark.azurite
def test_escaped_keys_round_trip(store: SummaryStore) -> None:
    day = date(2026, 3, 1)
    rows = [total_row(Total=len(NASTY_KEYS), Delivered=len(NASTY_KEYS), SuccessRate=100.0)]
    for dimension in ("domain", "sender", "mailServer"):
        rows += [dimension_row(dimension, key) for key in NASTY_KEYS]
        rows.append(dimension_row(dimension, None))
    computed_at = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)

    result = store.replace_day(day, rows, computed_at)
    assert result.written == len(rows) and result.deleted == 0

    read = store.read(day, day)
    assert len(read) == len(rows)
    none_key = None if _nullable_key() else ""
    for dimension in ("domain", "sender", "mailServer"):
        keys = [s.key for s in read if s.dimension == dimension]
        assert sorted(keys, key=lambda k: k or "") == sorted([*NASTY_KEYS, none_key], key=lambda k: k or "")
    assert [s.dimension for s in store.read(day, day, "mailServer")] == ["mailServer"] * (len(NASTY_KEYS) + 1)
    assert all(s.computed_at == computed_at and s.schema_version == 1 for s in read)
    # RowKeys decode to the same keys (and hold no forbidden characters)
    stored = entities(store, day)
    for rk, entity in stored.items():
        dimension, _, escaped = rk.partition("|")
        assert entity["Dimension"] == dimension
        assert unescape_key(escaped) == entity.get("Key")
    # a second write with the same keys changes nothing; dropping keys deletes exactly those
    assert store.replace_day(day, rows, computed_at).deleted == 0
    fewer = [row for row in rows if row["Dimension"] != "sender"]
    assert store.replace_day(day, fewer, computed_at).deleted == len(NASTY_KEYS) + 1
    assert store.read(day, day, "sender") == []


@pytest.mark.azurite
def test_batches_over_100_entities(store: SummaryStore) -> None:
    day = date(2026, 3, 5)
    rows = [total_row(Total=250)] + [dimension_row("domain", f"d{i:03d}.example") for i in range(250)]
    result = store.replace_day(day, rows, datetime.now(UTC))
    assert (result.entities, result.written, result.deleted) == (251, 251, 0)
    assert len(store.read(day, day, "domain")) == 250

    result = store.replace_day(day, rows[:121], datetime.now(UTC))  # total + 120 domains
    assert (result.written, result.deleted) == (121, 130)
    assert [s.key for s in store.read(day, day, "domain")] == [f"d{i:03d}.example" for i in range(120)]
    assert store.days_present(day, day) == {day}
    # neighbouring days are untouched by the range filters
    assert store.read(day + timedelta(days=1), day + timedelta(days=30)) == []


@pytest.mark.azurite
def test_read_range_is_inclusive_and_sorted(store: SummaryStore) -> None:
    days = [date(2026, 4, 1), date(2026, 4, 2), date(2026, 4, 3)]
    for day in reversed(days):
        store.replace_day(
            day,
            [
                total_row(),
                dimension_row("status", "Delivered"),
                dimension_row("domain", "b"),
                dimension_row("domain", "a"),
            ],
            datetime.now(UTC),
        )
    read = store.read(days[0], days[1])
    assert [(s.date, s.dimension, s.key) for s in read] == [
        (d, dim, key)
        for d in days[:2]
        for dim, key in (("total", "all"), ("domain", "a"), ("domain", "b"), ("status", "Delivered"))
    ]
    assert store.days_present(days[0], days[2]) == set(days)
    assert store.days_present(days[1], days[1]) == {days[1]}


@pytest.mark.azurite
def test_replace_day_refuses_rows_without_a_total(store: SummaryStore) -> None:
    day = date(2026, 4, 10)
    store.replace_day(day, [total_row()], datetime.now(UTC))
    with pytest.raises(ValueError, match="no total row"):
        store.replace_day(day, [], datetime.now(UTC))
    assert store.days_present(day, day) == {day}


@pytest.mark.azurite
def test_semantics_fixture_day(store: SummaryStore, tmp_path: Path) -> None:
    importers = pytest.importorskip("local.importers")
    con = open_store(tmp_path / "fixture.duckdb")
    try:
        importers.import_paths(con, [FIXTURE])
        summary = summarize_one_day(
            Insights(DuckDbSource(":memory:", connection=con)), store, date(2026, 3, 10), today=date(2026, 3, 12)
        )
    finally:
        con.close()
    rows = {(s.dimension, s.key): s for s in summary.value}
    assert (rows[("domain", "contoso.com")].total, rows[("domain", "contoso.com")].delivered) == (4, 3)
    assert (rows[("domain", "fabrikam.com")].total, rows[("domain", "fabrikam.com")].hard_bounces) == (5, 2)
    assert rows[("domain", "example.org")].avg_duration_seconds == pytest.approx(120.0)  # msg-08, midnight


# --------------------------------------------------------------------------- configuration


@pytest.mark.azurite
def test_from_settings_development_storage(azurite_server: azurite_helper.Azurite, table_name: str) -> None:
    proxy = f"http://{azurite_server.host}:{azurite_server.port}"
    env = {"SUMMARY_TEST_CONN": f"UseDevelopmentStorage=true;DevelopmentStorageProxyUri={proxy}"}
    store = SummaryStore.from_settings(settings(summary_storage="SUMMARY_TEST_CONN", summary_table=table_name), env)
    try:
        store.ensure_table()
        day = date(2026, 4, 20)
        store.replace_day(day, [total_row(Total=7)], datetime.now(UTC))
        assert [s.total for s in store.read(day, day)] == [7]
        assert store.check()[0] is True
    finally:
        store.client.delete_table()
    plain = SummaryStore.from_settings(settings(), {"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert plain.client.url.startswith("http://127.0.0.1:10002/devstoreaccount1")
    assert plain.client.account_name == "devstoreaccount1"


@pytest.mark.azurite
def test_from_settings_full_connection_string(azurite_connection_string: str, table_name: str) -> None:
    env = {"MyStorage": azurite_connection_string}
    store = SummaryStore.from_settings(settings(summary_storage="MyStorage", summary_table=table_name), env)
    ok, detail = store.check()
    assert ok and "created by the first summary run" in detail
    store.ensure_table()
    ok, detail = store.check()
    assert ok and table_name in detail
    assert azurite_helper.DEV_KEY not in detail
    store.client.delete_table()


def test_from_settings_identity_based() -> None:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    env = {
        "Summaries__accountName": "acsinsightsstore",
        "Summaries__credential": "managedidentity",
        "Summaries__clientId": "11111111-2222-3333-4444-555555555555",
    }
    store = SummaryStore.from_settings(settings(summary_storage="Summaries"), env)
    assert store.client.url.startswith("https://acsinsightsstore.table.core.windows.net")
    assert isinstance(store.client.credential, ManagedIdentityCredential)

    env = {"Summaries__tableServiceUri": "https://other.table.core.windows.net/"}
    store = SummaryStore.from_settings(settings(summary_storage="Summaries"), env)
    assert store.client.url.startswith("https://other.table.core.windows.net")
    assert isinstance(store.client.credential, DefaultAzureCredential)

    with pytest.raises(SummaryStoreUnavailable, match="tableServiceUri"):
        SummaryStore.from_settings(settings(summary_storage="Summaries"), {"Summaries__tableServiceUri": "ftp://nope"})


def test_nothing_configured_is_a_clear_error() -> None:
    with pytest.raises(SummaryStoreUnavailable) as info:
        SummaryStore.from_settings(settings(summary_storage="NoSuchStorage"), {})
    assert "NoSuchStorage" in info.value.detail and "UseDevelopmentStorage=true" in info.value.detail
    assert info.value.status == 503


def test_malformed_connection_string_does_not_echo_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for value in (f"AccountKey={WRONG_KEY};Nonsense", f"DefaultEndpointsProtocol=https;AccountKey={WRONG_KEY}"):
        with pytest.raises(SummaryStoreUnavailable) as info:
            SummaryStore.from_settings(settings(summary_storage="Bad"), {"Bad": value})
        assert WRONG_KEY not in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__
    assert WRONG_KEY not in caplog.text


@pytest.mark.azurite
def test_errors_never_leak_the_account_key(
    azurite_server: azurite_helper.Azurite, table_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = azurite_helper.connection_string(azurite_server.endpoint, key=WRONG_KEY)
    store = SummaryStore.from_settings(
        settings(summary_storage="WrongKey", summary_table=table_name), {"WrongKey": wrong}
    )
    ok, detail = store.check()
    assert not ok and ("403" in detail or "authentication" in detail.lower()), detail
    assert WRONG_KEY not in detail
    with pytest.raises(SummaryStoreError) as info:
        store.ensure_table()
    assert WRONG_KEY not in str(info.value)
    with pytest.raises(SummaryStoreError) as info:
        store.replace_day(date(2026, 4, 25), [total_row()], datetime.now(UTC))
    assert WRONG_KEY not in str(info.value)
    with pytest.raises(SummaryStoreError) as info:
        run_daily_summary(settings(), [date(2026, 4, 25)], insights=_no_logs(), store=_ready(store))
    assert "AuthorizationFailure" in str(info.value) and WRONG_KEY not in str(info.value)
    assert WRONG_KEY not in caplog.text

    # nothing listening: unreachable, said without the key
    port = azurite_helper._free_port("127.0.0.1")
    gone = azurite_helper.connection_string(f"http://127.0.0.1:{port}/devstoreaccount1", key=WRONG_KEY)
    ok, detail = SummaryStore.from_connection_string(gone, table_name).check()
    assert not ok and "cannot reach" in detail and WRONG_KEY not in detail


def _ready(store: SummaryStore) -> SummaryStore:
    store._table_ready = True  # skip ensure_table, so the failure happens per day
    return store


def _no_logs() -> Insights:
    return Insights(DuckDbSource(":memory:", connection=open_store(":memory:")))
