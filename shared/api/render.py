"""Rendering results: JSON bodies (the contract), CSV, and problem+json documents."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from shared.models import BOUNCE_CSV_COLUMNS, SUMMARY_CSV_COLUMNS, BounceList, DailySummary, contract_body


def to_body(model: BaseModel) -> dict[str, Any]:
    return contract_body(model)


def to_json(model: BaseModel, *, indent: int | None = None) -> str:
    return json.dumps(to_body(model), indent=indent, ensure_ascii=False)


def bounces_csv(bounces: BounceList) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(BOUNCE_CSV_COLUMNS)
    for row in bounces.value:
        values = row.model_dump(mode="json", by_alias=True)
        writer.writerow(["" if values[column] is None else _safe_cell(values[column]) for column in BOUNCE_CSV_COLUMNS])
    return buffer.getvalue()


def summaries_csv(rows: Iterable[DailySummary]) -> str:
    """Daily summaries as CSV: one row per day and dimension key, columns ``SUMMARY_CSV_COLUMNS``.

    Empty cells for nulls; datetimes as ISO 8601 UTC; keys (domains, senders, mail servers come from
    the logs) defused against formula injection like every text cell.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(SUMMARY_CSV_COLUMNS)
    for row in rows:
        values = row.model_dump(mode="json", by_alias=True)
        writer.writerow(
            ["" if values[column] is None else _safe_cell(values[column]) for column in SUMMARY_CSV_COLUMNS]
        )
    return buffer.getvalue()


def _safe_cell(value: Any) -> Any:
    """Defuse spreadsheet formula injection in text cells (a bounce reason is remote-controlled text)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def problem(status: int, title: str, detail: str, *, type_: str = "about:blank", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    body.update({key: value for key, value in extra.items() if value is not None})
    return body
