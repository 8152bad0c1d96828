"""The sample data generator: deterministic, realistic, and the same through the archive round trip."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from local import sample
from local.importers import import_paths
from local.store import open_store, quote, store_counts
from shared import schemas

END = date(2026, 1, 31)
SEND = schemas.SEND_MAIL_TABLE
STATUS = schemas.STATUS_UPDATE_TABLE


def content(con: duckdb.DuckDBPyConnection, table: schemas.TableSchema) -> list[tuple[Any, ...]]:
    columns = ", ".join(quote(c) for c in table.column_names)
    return con.execute(f"SELECT {columns} FROM {quote(table.name)} ORDER BY ALL").fetchall()


@pytest.fixture(scope="module")
def filled() -> duckdb.DuckDBPyConnection:
    con = open_store(":memory:")
    sample.fill_store(con, 20_000, 14, 42, END)
    return con


def test_same_seed_same_rows_different_seed_different_rows() -> None:
    a, b, c = (open_store(":memory:") for _ in range(3))
    sample.fill_store(a, 500, 3, 1, END)
    sample.fill_store(b, 500, 3, 1, END)
    sample.fill_store(c, 500, 3, 2, END)
    for table in (schemas.SEND_MAIL, schemas.STATUS_UPDATE):
        assert content(a, table) == content(b, table)
        assert content(a, table) != content(c, table)


def test_fill_twice_changes_nothing() -> None:
    con = open_store(":memory:")
    first = sample.fill_store(con, 300, 2, 5, END)
    assert first[SEND] == 300
    assert sample.fill_store(con, 300, 2, 5, END) == {SEND: 0, STATUS: 0, schemas.ENGAGEMENT_TABLE: 0}
    assert store_counts(con)[STATUS] == first[STATUS]


def test_generate_yields_the_same_rows() -> None:
    con = open_store(":memory:")
    sample.fill_store(con, 200, 2, 9, END)
    generated = [row for batch in sample.generate(200, 2, 9, END, batch_size=97) for row in batch]
    assert len(generated) == sum(store_counts(con).values())
    sends = sorted(tuple(r[c] for c in schemas.SEND_MAIL.column_names) for r in generated if r["Type"] == SEND)
    assert sends == content(con, schemas.SEND_MAIL)


def test_window_and_counts(filled: duckdb.DuckDBPyConnection) -> None:
    start, stop = sample.window(14, END)
    assert (start, stop) == (datetime(2026, 1, 18), datetime(2026, 2, 1))
    low, high, n = filled.execute(
        f'SELECT min("TimeGenerated"), max("TimeGenerated"), count(*) FROM "{SEND}"'
    ).fetchall()[0]
    assert start <= low and high < stop and n == 20_000
    per_message = store_counts(filled)[STATUS] / n
    assert 2.0 < per_message < 3.0


def test_every_status_and_size_category(filled: duckdb.DuckDBPyConnection) -> None:
    statuses = dict(
        filled.execute(
            f'SELECT "DeliveryStatus", count(*) FROM "{STATUS}" WHERE "RecipientId" <> \'\' GROUP BY ALL'
        ).fetchall()
    )
    assert set(statuses) == {"Delivered", "Bounced", "Failed", "Suppressed", "Quarantined", "FilteredSpam", "Expanded"}
    assert statuses["Delivered"] > 0.8 * sum(statuses.values())
    message_level = dict(
        filled.execute(
            f'SELECT "DeliveryStatus", count(*) FROM "{STATUS}" WHERE "RecipientId" = \'\' GROUP BY ALL'
        ).fetchall()
    )
    assert set(message_level) == {"OutForDelivery", "Failed"}
    sizes = {
        r[0]
        for r in filled.execute(
            f"""SELECT CASE WHEN "Size" < 0.1 THEN 'tiny' WHEN "Size" < 1 THEN 'small' WHEN "Size" < 5 THEN 'medium'
                   WHEN "Size" < 10 THEN 'large' ELSE 'very large' END FROM "{SEND}" """
        ).fetchall()
    }
    assert sizes == {"tiny", "small", "medium", "large", "very large"}


def test_codes_are_consistent_with_status(filled: duckdb.DuckDBPyConnection) -> None:
    combos = filled.execute(
        f'SELECT DISTINCT "DeliveryStatus", "EnhancedSmtpStatusCode", lower("IsHardBounce") FROM "{STATUS}"'
    ).fetchall()
    for status, enhanced, hard in combos:
        if status == "Bounced":
            assert enhanced.startswith("5.") and hard == "true"
        elif status == "Failed" and enhanced:
            assert enhanced.startswith("4.") and hard in ("false", "")
        elif status == "Delivered":
            assert enhanced in ("", "2.6.0") and hard in ("false", "")
    hard_values = {r[0] for r in filled.execute(f'SELECT DISTINCT "IsHardBounce" FROM "{STATUS}"').fetchall()}
    assert {"True", "true", "False", ""} <= hard_values


def test_realistic_details(filled: duckdb.DuckDBPyConnection) -> None:
    q = filled.execute
    # Mixed-case recipients, known mail servers, Internet message ids, multi-recipient messages.
    assert q(f"""SELECT count(*) FROM "{STATUS}" WHERE "RecipientId" <> lower("RecipientId")""").fetchall()[0][0] > 0
    hosts = {r[0] for r in q(f'SELECT DISTINCT "RecipientMailServerHostName" FROM "{STATUS}"').fetchall()}
    assert {
        "gmail-smtp-in.l.google.com",
        "contoso-com.mail.protection.outlook.com",
        "mta7.am0.yahoodns.net",
        "",
    } <= hosts
    assert q(f"""SELECT bool_and("InternetMessageId" LIKE '<%@%>') FROM "{STATUS}"
                 WHERE "InternetMessageId" <> ''""").fetchall()[0][0]
    assert q(
        f'SELECT max("UniqueRecipientsCount"), bool_and("UniqueRecipientsCount" <= "ToRecipientsCount" + '
        f'"CcRecipientsCount" + "BccRecipientsCount") FROM "{SEND}"'
    ).fetchall()[0] >= (20, True)
    # Latency: median seconds, a tail of hours; some clock skew; some pending recipients.
    latency = q(f"""
        WITH f AS (SELECT s."TimeGenerated" AS sent, u."TimeGenerated" AS t
                   FROM "{SEND}" s JOIN "{STATUS}" u USING ("CorrelationId")
                   WHERE u."DeliveryStatus" = 'Delivered')
        SELECT median(epoch(t) - epoch(sent)), max(epoch(t) - epoch(sent)), count_if(t < sent) FROM f""").fetchall()[0]
    assert 1 < latency[0] < 10 and latency[1] > 3600 and latency[2] > 0
    pending = q(f"""SELECT count(*) FROM "{SEND}" s WHERE "UniqueRecipientsCount" > (
        SELECT count(DISTINCT "RecipientId") FROM "{STATUS}" u WHERE u."CorrelationId" = s."CorrelationId"
        AND u."RecipientId" <> '' AND u."DeliveryStatus" IN {schemas.FINAL_STATUSES})""").fetchall()[0][0]
    assert pending > 0


def test_archive_round_trip_equals_fill_store(tmp_path: Path) -> None:
    files = sample.write_archive(tmp_path / "archive", 1500, 3, 11, END)
    assert files and all(f.name == "PT1H.json" for f in files)
    rel = files[0].relative_to(tmp_path / "archive").as_posix()
    assert rel.startswith("insights-logs-email")
    assert "/resourceId=/SUBSCRIPTIONS/" in "/" + rel and "/m=00/PT1H.json" in rel
    first = json.loads(files[0].read_text().splitlines()[0])
    assert first["time"].endswith("0Z") and len(first["time"].split(".")[1]) == 8  # 7 digits + Z
    casing = {k for f in files for line in f.read_text().splitlines() for k in json.loads(line)["properties"]}
    assert "DeliveryStatus" in casing and "deliverystatus" in casing

    imported = open_store(tmp_path / "imported.duckdb")
    report = import_paths(imported, [tmp_path / "archive"])
    assert report.files == len(files) and report.duplicates == 0
    reference = open_store(":memory:")
    sample.fill_store(reference, 1500, 3, 11, END)
    for table in (schemas.SEND_MAIL, schemas.STATUS_UPDATE):
        assert content(imported, table) == content(reference, table)
    # Importing the archive into the filled store adds nothing.
    assert import_paths(reference, [tmp_path / "archive"]).inserted == 0


def test_engagement_only_for_delivered_mail_of_tracked_sender_domains(filled: duckdb.DuckDBPyConnection) -> None:
    kinds = dict(
        filled.execute(
            f"SELECT EngagementType, count(*) FROM {schemas.ENGAGEMENT_TABLE} GROUP BY EngagementType"
        ).fetchall()
    )
    assert kinds["View"] > kinds["Click"] > 0
    # every engagement row belongs to a Delivered recipient of a tracked sender domain, after its delivery
    orphans = filled.execute(f"""
        SELECT count(*) FROM {schemas.ENGAGEMENT_TABLE} e WHERE NOT EXISTS (
            SELECT 1 FROM {schemas.STATUS_UPDATE_TABLE} s
            WHERE s.CorrelationId = e.CorrelationId AND s.RecipientId = e.RecipientId
              AND s.DeliveryStatus = 'Delivered' AND s.TimeGenerated < e.TimeGenerated
              AND s.SenderDomain IN {(*sample.TRACKED_SENDER_DOMAINS, "")})
    """).fetchall()[0][0]
    assert orphans == 0
    clicks = filled.execute(
        f"SELECT EngagementContext, UserAgent FROM {schemas.ENGAGEMENT_TABLE} WHERE EngagementType = 'Click'"
    ).fetchall()
    assert all(url.startswith("https://www.contoso.com/") and agent for url, agent in clicks)
    views = filled.execute(
        f"SELECT count(*) FROM {schemas.ENGAGEMENT_TABLE} WHERE EngagementType = 'View' AND EngagementContext <> ''"
    ).fetchall()[0][0]
    assert views == 0
