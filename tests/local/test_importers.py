"""Importers on a real DuckDB store, with tiny hand-checkable files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from local.importers import ImportFailure, import_paths, parse_time
from local.store import INGESTED_AT, RECORD_KEY, open_store, store_counts
from shared import schemas

SEND = schemas.SEND_MAIL_TABLE
STATUS = schemas.STATUS_UPDATE_TABLE
RID = (
    "/SUBSCRIPTIONS/11111111-2222-3333-4444-555555555555/RESOURCEGROUPS/RG/PROVIDERS/"
    "MICROSOFT.COMMUNICATION/COMMUNICATIONSERVICES/ACS1"
)
BLOB = "resourceId=" + RID + "/y=2026/m=01/d=02/h=03/m=00/PT1H.json"


@pytest.fixture()
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    return open_store(tmp_path / "store" / "logs.duckdb")


def send_record(cid: str, time: str = "2026-01-02T03:04:05.1234567Z", **props: Any) -> dict[str, Any]:
    properties = {
        "Size": 0.25,
        "AttachmentsCount": 1,
        "ToRecipientsCount": 2,
        "CcRecipientsCount": 0,
        "BccRecipientsCount": 0,
        "UniqueRecipientsCount": 2,
        "TrafficSource": "Email Python SDK",
    }
    properties.update(props)
    return {
        "time": time,
        "resourceId": RID,
        "operationName": "SendMail",
        "operationVersion": "2023-03-31",
        "category": "EmailSendMailOperational",
        "correlationId": cid,
        "location": "global",
        "level": "Informational",
        "properties": properties,
    }


def status_record(
    cid: str, recipient: str, status: str, time: str = "2026-01-02T03:04:07.5Z", **props: Any
) -> dict[str, Any]:
    properties = {
        "RecipientId": recipient,
        "DeliveryStatus": status,
        "SmtpStatusCode": "",
        "EnhancedSmtpStatusCode": "",
        "IsHardBounce": "False",
        "SenderDomain": "notify.contoso.com",
        "SenderUsername": "DoNotReply",
        "RecipientMailServerHostName": "gmail-smtp-in.l.google.com",
        "InternetMessageId": "<abc@notify.contoso.com>",
    }
    properties.update(props)
    return {
        "time": time,
        "resourceId": RID,
        "operationName": "DeliveryStatusUpdate",
        "category": "EmailStatusUpdateOperational",
        "correlationId": cid,
        "properties": properties,
    }


def write_lines(path: Path, records: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def rows(con: duckdb.DuckDBPyConnection, table: str, columns: str) -> list[tuple[Any, ...]]:
    return con.execute(f'SELECT {columns} FROM "{table}" ORDER BY ALL').fetchall()


def test_store_has_exactly_the_schema_columns(con: duckdb.DuckDBPyConnection) -> None:
    for table in schemas.TABLES:
        names = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index", [table.name]
            ).fetchall()
        ]
        assert names == [*table.column_names, INGESTED_AT]  # the schema's, then the store-side arrival time
    assert con.execute("SELECT current_setting('TimeZone')").fetchall() == [("UTC",)]


def test_store_of_an_earlier_version_with_record_keys_still_imports(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    old = duckdb.connect(str(path))
    for statement in schemas.duckdb_create_statements():
        old.execute(statement)
    for table in schemas.TABLES:
        old.execute(f'ALTER TABLE "{table.name}" ADD COLUMN "{RECORD_KEY}" VARCHAR')
    old.close()
    con = open_store(path)
    blob = write_lines(tmp_path / "a" / "PT1H.json", [send_record("m1"), send_record("m2")])
    assert import_paths(con, [blob]).inserted == 2
    assert (import_paths(con, [blob]).inserted, import_paths(con, [blob]).duplicates) == (0, 2)
    assert con.execute(f'SELECT "CorrelationId", "{RECORD_KEY}" FROM "{SEND}" ORDER BY 1').fetchall() == [
        ("m1", None),
        ("m2", None),
    ]
    # The arrival column was added on open and stamped on the rows imported since.
    stamps = con.execute(f'SELECT DISTINCT "{INGESTED_AT}" IS NOT NULL FROM "{SEND}"').fetchall()
    assert stamps == [(True,)]
    con.close()


def test_a_store_without_the_arrival_column_gets_it_filled_with_each_rows_time(tmp_path: Path) -> None:
    path = tmp_path / "older.duckdb"
    old = duckdb.connect(str(path))
    for statement in schemas.duckdb_create_statements():
        old.execute(statement)
    old.execute(f'INSERT INTO "{SEND}" ("TimeGenerated", "CorrelationId") VALUES (\'2026-03-10 10:00:00\', \'m0\')')
    old.close()
    open_store(path, read_only=True).close()  # a read-only open accepts it as it is
    con = open_store(path)
    assert rows(con, SEND, f'"CorrelationId", "TimeGenerated" = "{INGESTED_AT}"') == [("m0", True)]
    blob = write_lines(tmp_path / "a" / "PT1H.json", [send_record("m1")])
    assert import_paths(con, [blob]).inserted == 1
    (stamp,) = con.execute(f'SELECT "{INGESTED_AT}" FROM "{SEND}" WHERE "CorrelationId" = \'m1\'').fetchall()[0]
    assert abs(stamp - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=10)
    con.close()


def test_duplicates_within_one_import_count_once_nulls_included(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    # Absent numbers are NULL; two records equal but for both lacking Size are still exact duplicates.
    bare = {k: v for k, v in send_record("m1").items() if k != "properties"}
    bare["properties"] = {k: v for k, v in send_record("m1")["properties"].items() if k != "Size"}
    blob = write_lines(tmp_path / "a" / "PT1H.json", [bare, bare, send_record("m2"), send_record("m2")])
    report = import_paths(con, [blob])
    assert (report.read, report.inserted, report.duplicates) == (4, 2, 2)
    assert rows(con, SEND, '"CorrelationId", "Size"') == [("m1", None), ("m2", 0.25)]
    # Equal in time, message, recipient and status but not in a detail: two records, both kept.
    twins = [status_record("m3", "a@b.com", "Bounced"), status_record("m3", "a@b.com", "Bounced", FailureMessage="x")]
    report = import_paths(con, [write_lines(tmp_path / "b" / "PT1H.json", twins)])
    assert (report.read, report.inserted, report.duplicates) == (2, 2, 0)


def test_archive_json_lines_mapping(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    blob = tmp_path / "insights-logs-emailsendmailoperational" / BLOB
    write_lines(blob, [send_record("m1")])
    status_blob = tmp_path / "insights-logs-emailstatusupdateoperational" / BLOB
    write_lines(
        status_blob,
        [
            status_record("m1", "", "OutForDelivery", RecipientMailServerHostName=""),
            status_record("m1", "a@gmail.com", "Delivered"),
        ],
    )
    report = import_paths(con, [tmp_path])
    assert report.files == 2
    assert report.tables[SEND].inserted == 1 and report.tables[STATUS].inserted == 2

    got = con.execute(f'SELECT * EXCLUDE ("{INGESTED_AT}") FROM "{SEND}"').fetchall()
    assert got == [
        (
            datetime(2026, 1, 2, 3, 4, 5, 123456),
            "m1",
            0.25,
            1,
            2,
            0,
            0,
            2,
            "Email Python SDK",
            "SendMail",
            "2023-03-31",
            "EmailSendMailOperational",
            "global",
            RID.lower(),
            "11111111-2222-3333-4444-555555555555",
            "",
            "Azure",
            SEND,
            "",
            None,
        )
    ]
    assert rows(con, STATUS, '"TimeGenerated", "RecipientId", "DeliveryStatus", "IsHardBounce", "Type"') == [
        (datetime(2026, 1, 2, 3, 4, 7, 500000), "", "OutForDelivery", "False", STATUS),
        (datetime(2026, 1, 2, 3, 4, 7, 500000), "a@gmail.com", "Delivered", "False", STATUS),
    ]


def test_archive_values_padded_with_spaces(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    padded = send_record("m1", Size=" 12.5 ", ToRecipientsCount="  3")
    padded["resourceId"] = "  " + RID + " "
    padded["category"] = " EmailSendMailOperational  "
    write_lines(tmp_path / "a" / "PT1H.json", [padded])
    import_paths(con, [tmp_path / "a"])
    assert rows(con, SEND, '"Size", "ToRecipientsCount", "_ResourceId", "_SubscriptionId", "Category"') == [
        (12.5, 3, RID.lower(), "11111111-2222-3333-4444-555555555555", " EmailSendMailOperational  ")
    ]
    write_lines(tmp_path / "b" / "PT1H.json", [send_record("m2", Size=" 1 2 ")])
    with pytest.raises(ImportFailure, match="Size is not a number:  1 2 "):
        import_paths(con, [tmp_path / "b"])


def test_archive_key_casing_varies_and_unknown_properties_ignored(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    lower = status_record("m1", "", "")
    lower["properties"] = {
        "recipientid": "B@Contoso.COM",
        "deliverystatus": "Bounced",
        "smtpstatuscode": 550,
        "ENHANCEDSMTPSTATUSCODE": "5.1.1",
        "isHardBounce": "true",
        "SomethingNew": {"x": 1},
    }
    upper = send_record("m2")
    upper["properties"] = {"SIZE": "12.5", "toRecipientsCount": "3", "uniquerecipientscount": 3}
    upper["Location"] = "global"  # envelope keys are matched case-insensitively too
    write_lines(tmp_path / "PT1H.json", [lower, upper])
    import_paths(con, [tmp_path / "PT1H.json"])
    assert rows(
        con,
        STATUS,
        '"RecipientId", "DeliveryStatus", "SmtpStatusCode", "EnhancedSmtpStatusCode", '
        '"IsHardBounce", "RecipientMailServerHostName", "InternetMessageId"',
    ) == [
        ("B@Contoso.COM", "Bounced", "550", "5.1.1", "true", "", ""),
    ]
    assert rows(
        con,
        SEND,
        '"Size", "ToRecipientsCount", "UniqueRecipientsCount", "CcRecipientsCount", "TrafficSource", "Location"',
    ) == [(12.5, 3, 3, None, "", "global")]


def test_legacy_records_object(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "PT1H.json"
    path.write_text(json.dumps({"records": [send_record("m1"), status_record("m1", "x@y.com", "Delivered")]}, indent=2))
    report = import_paths(con, [path])
    assert store_counts(con)[SEND] == 1 and store_counts(con)[STATUS] == 1
    assert report.read == 2


def test_seven_fractional_digits_and_offsets() -> None:
    assert parse_time("2026-01-02T03:04:05.1234567Z") == datetime(2026, 1, 2, 3, 4, 5, 123456)
    assert parse_time("2026-01-02T03:04:05+02:00") == datetime(2026, 1, 2, 1, 4, 5)
    assert parse_time("1/2/2026, 3:04:05.120 PM") == datetime(2026, 1, 2, 15, 4, 5, 120000)
    assert parse_time("1/2/2026, 12:00:00.000 AM") == datetime(2026, 1, 2, 0, 0, 0)


def test_reimport_changes_nothing_and_overlaps_are_skipped(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    a = write_lines(tmp_path / "a" / "PT1H.json", [send_record("m1"), send_record("m2")])
    b = write_lines(tmp_path / "b" / "PT1H.json", [send_record("m2"), send_record("m3"), send_record("m3")])
    first = import_paths(con, [a])
    assert (first.read, first.inserted, first.duplicates) == (2, 2, 0)
    again = import_paths(con, [a])
    assert (again.read, again.inserted, again.duplicates) == (2, 0, 2)
    overlap = import_paths(con, [b])
    # m2 is already stored; m3 appears twice in the file (an exact duplicate) and is stored once.
    assert (overlap.read, overlap.inserted, overlap.duplicates) == (3, 1, 2)
    assert rows(con, SEND, '"CorrelationId"') == [("m1",), ("m2",), ("m3",)]
    # A record differing in one property is not a duplicate.
    c = write_lines(tmp_path / "c" / "PT1H.json", [send_record("m1", Size=0.26)])
    assert import_paths(con, [c]).inserted == 1


@pytest.mark.parametrize(
    ("third_line", "reason"),
    [
        ('{"time": "2026-01-02T03:04:05Z", "category": ', "invalid JSON"),
        (json.dumps({k: v for k, v in send_record("m3").items() if k != "time"}), "missing time"),
        (json.dumps(send_record("m3", time="2026-13-45T99:00:00Z")), "bad timestamp"),
        (json.dumps(send_record("m3", Size="large")), "Size is not a number"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_broken_file_names_file_and_line_and_imports_nothing(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, third_line: str, reason: str
) -> None:
    good = write_lines(tmp_path / "a" / "PT1H.json", [send_record("g1")])
    bad = write_lines(tmp_path / "b" / "PT1H.json", [send_record("m1"), send_record("m2"), third_line])
    with pytest.raises(ImportFailure) as caught:
        import_paths(con, [good, bad])
    assert caught.value.file == str(bad)
    assert caught.value.line == 3
    assert reason in caught.value.reason
    assert f"{bad}:3" in str(caught.value)
    assert store_counts(con)[SEND] == 0
    # The connection is usable afterwards (the transaction was rolled back).
    assert import_paths(con, [good]).inserted == 1


def test_legacy_failure_names_record(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "PT1H.json"
    path.write_text(json.dumps({"records": [send_record("m1"), {"category": "EmailSendMailOperational"}]}))
    with pytest.raises(ImportFailure, match="record 2: missing time"):
        import_paths(con, [path])
    assert store_counts(con)[SEND] == 0


def test_other_categories_are_skipped(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    chat = send_record("c1")
    chat["category"] = "ChatOperational"
    path = write_lines(tmp_path / "PT1H.json", [chat, send_record("m1")])
    report = import_paths(con, [path])
    assert report.skipped_other_categories == 1 and report.inserted == 1


LA_STATUS_ROWS = [
    {
        "TableName": "PrimaryResult",
        "TimeGenerated": "2026-01-02T03:04:07.1234567Z",
        "CorrelationId": "m1",
        "RecipientId": "a@gmail.com",
        "DeliveryStatus": "Bounced",
        "SmtpStatusCode": "550",
        "EnhancedSmtpStatusCode": "5.1.1",
        "IsHardBounce": "True",
        "_BilledSize": "1234.0",
        "Type": "ACSEmailStatusUpdateOperational",
    },
    {
        "TimeGenerated": "2026-01-02T03:05:00Z",
        "CorrelationId": "m1",
        "RecipientId": "",
        "DeliveryStatus": "OutForDelivery",
        "Type": "ACSEmailStatusUpdateOperational",
    },
]


def test_log_analytics_json_export(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(LA_STATUS_ROWS, indent=1))
    report = import_paths(con, [path])
    assert report.tables[STATUS].inserted == 2
    assert rows(
        con, STATUS, '"TimeGenerated", "DeliveryStatus", "IsHardBounce", "_BilledSize", "RecipientMailServerHostName"'
    ) == [
        (datetime(2026, 1, 2, 3, 4, 7, 123456), "Bounced", "True", 1234.0, ""),
        (datetime(2026, 1, 2, 3, 5), "OutForDelivery", "", None, ""),
    ]
    assert import_paths(con, [path]).inserted == 0


def test_log_analytics_csv_with_utc_headers(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "query_data.csv"
    path.write_bytes(
        "\ufeffTimeGenerated [UTC],CorrelationId,Size,ToRecipientsCount,UniqueRecipientsCount,TrafficSource\r\n"
        '"1/2/2026, 3:04:05.123 PM",m1,0.5,2,2,"Email .NET SDK, v1"\r\n'
        "2026-01-02T15:05:00.0000000Z,m2,11.25,1,1,\r\n".encode()
    )
    report = import_paths(con, [path], table="ACSEmailSendMailOperational")
    assert report.tables[SEND].inserted == 2
    assert rows(
        con,
        SEND,
        '"TimeGenerated", "CorrelationId", "Size", "ToRecipientsCount", "TrafficSource", "AttachmentsCount", "Type"',
    ) == [
        (datetime(2026, 1, 2, 15, 4, 5, 123000), "m1", 0.5, 2, "Email .NET SDK, v1", None, SEND),
        (datetime(2026, 1, 2, 15, 5), "m2", 11.25, 1, "", None, SEND),
    ]
    # Without table=, the columns tell it is a send table; the rows are already there.
    assert import_paths(con, [path]).duplicates == 2


def test_csv_bad_timestamp_names_line(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "ACSEmailStatusUpdateOperational.csv"
    path.write_text(
        "TimeGenerated [UTC],CorrelationId,DeliveryStatus\n2026-01-02T03:04:05Z,m1,Delivered\nyesterday,m2,Delivered\n"
    )
    with pytest.raises(ImportFailure) as caught:
        import_paths(con, [path])
    assert caught.value.line == 3 and "TimeGenerated" in caught.value.reason
    assert store_counts(con)[STATUS] == 0


def test_missing_path_is_an_error(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    with pytest.raises(ImportFailure, match="no such file"):
        import_paths(con, [tmp_path / "nope.json"])
