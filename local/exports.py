"""Log Analytics exports: a JSON array of row objects (``az monitor log-analytics query``), the query API's
``{"tables": [...]}`` response, or CSV with a header row (``TimeGenerated [UTC]`` headers, UTF-8 BOM and the
portal's ``1/2/2026, 3:04:05.123 PM`` timestamps are accepted). Rows are validated in Python, then staged.

The table of a row comes from the caller (``--table``), a ``Type`` column, the file name, or the columns.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb

from local.staging import ImportFailure, convert, resolve_table, stage_rows, utf8_failure
from shared import schemas

Rows = Iterable[tuple[int, dict[str, Any]]]

# Python's csv module refuses fields over 128 KiB; a longer one (a 50 MB FailureMessage) is imported and cut
# to the string cap instead. The limit is process-wide; raising it affects no other reader's results.
csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))


def _table_for_row(
    row: dict[str, Any], forced: schemas.TableSchema | None, by_file: schemas.TableSchema | None
) -> schemas.TableSchema | None:
    if forced is not None:
        return forced
    for key, value in row.items():
        if key.lower() == "type" and isinstance(value, str) and value.strip():
            try:
                return resolve_table(value)
            except ValueError:
                return None
    return by_file


def _table_from_name(path: Path) -> schemas.TableSchema | None:
    name = path.name.lower()
    for table in schemas.TABLES:
        if table.name.lower() in name or table.category.lower() in name:
            return table
    for hint, table in (
        ("sendmail", schemas.SEND_MAIL),
        ("statusupdate", schemas.STATUS_UPDATE),
        ("engagement", schemas.ENGAGEMENT),
    ):
        if hint in name.replace("-", "").replace("_", ""):
            return table
    return None


def _table_from_columns(columns: Iterable[str]) -> schemas.TableSchema | None:
    names = {c.lower() for c in columns}
    if "deliverystatus" in names:
        return schemas.STATUS_UPDATE
    if "engagementtype" in names:
        return schemas.ENGAGEMENT
    if names & {"size", "torecipientscount", "uniquerecipientscount", "attachmentscount"}:
        return schemas.SEND_MAIL
    return None


def _clean_header(name: str) -> str:
    name = name.strip().lstrip("\ufeff").strip()
    return re.sub(r"\s*\[[^\]]*\]$", "", name).strip()


_LOOKUP = {
    table.name: {name.lower(): (name, kusto_type) for name, kusto_type in table.columns} for table in schemas.TABLES
}


def stage_export_rows(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    rows: Rows,
    columns: Sequence[str],
    forced: schemas.TableSchema | None,
    workdir: Path,
    line_word: str,
) -> None:
    """Validate and stage Log Analytics export rows; *rows* yields (line or row number, row)."""
    by_file = _table_from_name(path) or _table_from_columns(columns)
    staged: dict[str, list[dict[str, Any]]] = {}

    def failure(number: int, reason: str) -> ImportFailure:
        if line_word == "line":
            return ImportFailure(path, number, reason)
        return ImportFailure(path, None, f"{line_word} {number}: {reason}")

    for number, row in rows:
        table = _table_for_row(row, forced, by_file)
        if table is None:
            raise failure(number, "cannot tell which table this is; pass table= (e.g. ACSEmailStatusUpdateOperational)")
        out: dict[str, Any] = {}
        for key, value in row.items():
            found = _LOOKUP[table.name].get(_clean_header(str(key)).lower())
            if found is None:
                continue
            name, kusto_type = found
            try:
                out[name] = convert(value, kusto_type)
            except (ValueError, TypeError, OverflowError) as error:
                raise failure(number, f"{name}: {error}") from None
        if out.get("TimeGenerated") is None:
            raise failure(number, "missing TimeGenerated")
        for name, kusto_type in table.columns:
            out.setdefault(name, "" if kusto_type == "string" else None)
        out["Type"] = table.name
        staged.setdefault(table.name, []).append(out)
    for name, table_rows in staged.items():
        stage_rows(con, schemas.TABLES_BY_NAME[name], table_rows, workdir)


def csv_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    """The header of a CSV export (cleaned) and its non-blank rows, numbered by the line they start on."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise utf8_failure(path, data) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return [], iter(())
    except csv.Error as error:
        raise ImportFailure(path, 1, f"bad CSV: {error}") from None
    names = [_clean_header(h) for h in header]

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise ImportFailure(path, start, f"bad CSV: {error}") from None
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) > len(names) and any(c.strip() for c in cells[len(names) :]):
                raise ImportFailure(path, start, f"{len(cells)} fields, header has {len(names)}")
            yield start, dict(zip(names, cells, strict=False))

    return names, rows()


def json_document_rows(path: Path, document: Any) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """Rows of a LA export: a JSON array of objects, or the query API ``{"tables": [...]}`` response."""
    if isinstance(document, list):
        rows: list[tuple[int, dict[str, Any]]] = []
        columns: dict[str, None] = {}
        for index, item in enumerate(document, start=1):
            if not isinstance(item, dict):
                raise ImportFailure(path, None, f"row {index}: not a JSON object")
            columns.update(dict.fromkeys(item))
            rows.append((index, item))
        return list(columns), rows
    if isinstance(document, dict):
        tables = next((v for k, v in document.items() if k.lower() == "tables"), None)
        if isinstance(tables, list):
            return _query_api_rows(path, tables)
    raise ImportFailure(
        path, None, 'JSON document is neither an archive ({"records": [...]}), a row array, nor a query API response'
    )


def _query_api_rows(path: Path, tables: list[Any]) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """Rows of the query API's ``tables`` (columns of the last table named)."""
    rows: list[tuple[int, dict[str, Any]]] = []
    names: list[str] = []
    for table in tables:
        if not isinstance(table, dict):
            continue
        names = [str(c.get("name", "")) if isinstance(c, dict) else str(c) for c in table.get("columns", [])]
        for index, cells in enumerate(table.get("rows", []), start=len(rows) + 1):
            if not isinstance(cells, list) or len(cells) != len(names):
                raise ImportFailure(path, None, f"row {index}: expected {len(names)} cells")
            rows.append((index, dict(zip(names, cells, strict=False))))
    return names, rows
