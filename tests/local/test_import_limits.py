"""Imports under hostile input: strings over the cap are stored cut (not rejected), failures stay one line."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from test_importers import STATUS, status_record, write_lines

from local import archives
from local.importers import ImportFailure, import_paths
from local.staging import MAX_REASON_CHARS, MAX_STRING_CHARS, TRUNCATION_MARKER
from local.store import open_store
from shared import schemas

#: A FailureMessage of 50 MB (the size once accepted, which made a 100 MB trace answer).
HUGE = ("550 5.1.1 " + "x" * 990) * 50_000


@pytest.fixture()
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    return open_store(tmp_path / "store" / "logs.duckdb")


def stored_messages(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute(f'SELECT "FailureMessage" FROM "{STATUS}" ORDER BY "CorrelationId"').fetchall()]


def expected_cut(text: str) -> str:
    return text[: MAX_STRING_CHARS - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def test_a_50_mb_failure_message_in_an_archive_is_stored_capped(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(HUGE) == 50_000_000
    # Read on the fast path (again, with room for the long record), not line by line.
    monkeypatch.setattr(archives, "_stage_numbered_lines", None)
    blob = write_lines(
        tmp_path / "a" / "PT1H.json",
        [
            status_record("m1", "a@b.com", "Bounced", FailureMessage=HUGE),
            status_record("m2", "a@b.com", "Bounced", FailureMessage="short"),
        ],
    )
    assert import_paths(con, [blob]).inserted == 2
    huge, short = stored_messages(con)
    assert huge == expected_cut(HUGE) and len(huge) == MAX_STRING_CHARS
    assert short == "short"
    # Importing the same file again changes nothing: the cut value is what duplicates are compared on.
    assert import_paths(con, [blob]).inserted == 0


def test_long_values_in_every_string_column_are_capped(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    long = "y" * (MAX_STRING_CHARS * 3)
    record = status_record(
        "m1", long, "Delivered", SenderDomain=long, InternetMessageId=long, RecipientMailServerHostName=long
    )
    record["resourceId"] = "/SUBSCRIPTIONS/" + long
    import_paths(con, [write_lines(tmp_path / "PT1H.json", [record])])
    columns = [name for name, kusto_type in schemas.STATUS_UPDATE.columns if kusto_type == "string"]
    lengths = con.execute("SELECT " + ", ".join(f'length("{c}")' for c in columns) + f' FROM "{STATUS}"').fetchall()[0]
    assert max(lengths) == MAX_STRING_CHARS
    assert dict(zip(columns, lengths, strict=True))["_SubscriptionId"] == MAX_STRING_CHARS


def test_the_cap_counts_characters_not_bytes(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    at_cap = "é" * MAX_STRING_CHARS  # twice as many bytes as the cap, exactly the cap in characters
    over = "é" * (MAX_STRING_CHARS + 1)
    records = [
        status_record("m1", "a@b.com", "Bounced", FailureMessage=at_cap),
        status_record("m2", "a@b.com", "Bounced", FailureMessage=over),
    ]
    import_paths(con, [write_lines(tmp_path / "PT1H.json", records)])
    assert stored_messages(con) == [at_cap, expected_cut(over)]


def test_a_50_mb_failure_message_in_exports_is_stored_capped(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    csv_path = tmp_path / "ACSEmailStatusUpdateOperational.csv"
    csv_path.write_text(
        f'TimeGenerated,CorrelationId,DeliveryStatus,FailureMessage\n2026-01-02T03:04:05Z,m1,Bounced,"{HUGE}"\n'
    )
    json_path = tmp_path / "export.json"
    row = {"TimeGenerated": "2026-01-02T03:04:06Z", "CorrelationId": "m2", "FailureMessage": HUGE, "Type": STATUS}
    json_path.write_text(json.dumps([row]))
    assert import_paths(con, [csv_path, json_path]).inserted == 2
    assert stored_messages(con) == [expected_cut(HUGE)] * 2


def test_a_failure_quoting_a_huge_value_is_one_short_line(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    bad_time = "not a time\n" * 1_000_000
    blob = write_lines(tmp_path / "PT1H.json", [status_record("m1", "a@b.com", "Bounced", time=bad_time)])
    with pytest.raises(ImportFailure) as caught:
        import_paths(con, [blob])
    assert caught.value.line == 1 and caught.value.reason.startswith("bad timestamp in time: not a time\\n")
    assert len(caught.value.reason) == MAX_REASON_CHARS and "\n" not in str(caught.value)
