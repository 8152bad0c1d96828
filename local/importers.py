"""Idempotent importers of ACS email logs into the embedded DuckDB store.

Formats (detected per file by extension and content):

* Diagnostic-settings storage archive blobs (``PT1H.json``): JSON Lines, one record per line, or the
  legacy ``{"records": [...]}`` object; see :mod:`local.archives`. Parsed by DuckDB, not per record
  in Python.
* Log Analytics exports: a JSON array of row objects, the query API's ``{"tables": [...]}`` response, or
  CSV with a header row; see :mod:`local.exports`.

Every call is one transaction: all files are validated and staged first (:mod:`local.staging`); any
bad record raises :class:`ImportFailure` (file, line, reason) and the store is left unchanged. Exact
duplicates of stored records (and repeats within the import) are skipped, so importing the same files again
changes nothing. Records of categories other than the ACS email ones are skipped and counted.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

import duckdb

from local.archives import legacy_records, stage_archive_lines, stage_legacy_records
from local.exports import csv_rows, json_document_rows, stage_export_rows
from local.replacement import WAIT_SECONDS, writing_store
from local.staging import (
    ImportFailure,
    ImportReport,
    TableCounts,
    create_staging,
    drop_staging,
    parse_time,
    resolve_table,
    staged_relation,
)
from local.store import ensure_tables, store_staged
from shared import schemas

__all__ = [
    "ARCHIVE_SUFFIXES",
    "BATCH_BYTES",
    "CSV_SUFFIXES",
    "ImportFailure",
    "ImportReport",
    "TableCounts",
    "expand_paths",
    "import_into_store",
    "import_paths",
    "parse_time",
    "resolve_table",
]

#: File name endings walked in folders.
ARCHIVE_SUFFIXES = (".json", ".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)
#: JSON Lines input handed to DuckDB per statement (bytes).
BATCH_BYTES = 256 * 1024 * 1024


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named, plus archive/CSV files found recursively in folders named (sorted)."""
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = [
                p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(ARCHIVE_SUFFIXES + CSV_SUFFIXES)
            ]
            files.extend(sorted(found))
        elif path.is_file():
            files.append(path)
        else:
            raise ImportFailure(path, None, "no such file or folder")
    return files


def _sniff(path: Path) -> str:
    """'csv', 'jsonl', 'json' (a whole JSON document) or 'empty'."""
    if path.name.lower().endswith(CSV_SUFFIXES):
        return "csv"
    with path.open("rb") as handle:
        head = handle.read(65536)
        first_line = head.split(b"\n", 1)[0]
        if len(first_line) == len(head) and len(head) == 65536:
            first_line += handle.readline()
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if not text:
        return "empty"
    if text[0] == "[":
        return "json"
    if text[0] != "{":
        raise ImportFailure(path, 1, "not JSON (expected '{' or '[') or CSV")
    try:
        first = json.loads(first_line.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        return "json"  # a pretty-printed document (or a bad first line, reported by the JSON parser)
    if isinstance(first, dict) and ("records" in first or "tables" in first) and "time" not in first:
        return "json"
    return "jsonl"


def import_paths(con: duckdb.DuckDBPyConnection, paths: Iterable[str | Path], table: str | None = None) -> ImportReport:
    """Import files and folders into the store; all or nothing (see module docs).

    *table* names the target table of Log Analytics exports (name or category); without it the
    table comes from a ``Type`` column, the file name, or the columns. Archive records are always
    routed by their ``category``.
    """
    forced = resolve_table(table) if table else None
    files = expand_paths(paths)
    report = ImportReport(files=len(files))
    con.execute("SET TimeZone='UTC'")
    ensure_tables(con)
    # Staging order does not matter (rows are sorted by time when stored), and letting DuckDB write
    # staged rows in any order lets both cores convert at once: about a third faster.
    preserve_order = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
    try:
        con.execute("SET preserve_insertion_order = false")
        create_staging(con)
        with tempfile.TemporaryDirectory(prefix="acs-import-") as tmp:
            _stage_files(con, files, forced, Path(tmp), report)
        con.execute(f"SET preserve_insertion_order = {bool(preserve_order)}")
        # Everything is validated and staged (in connection-local temp tables): store it atomically.
        stored = store_staged(con, [(schema, staged_relation(schema)) for schema in schemas.TABLES])
        for name, (read, inserted) in stored.items():
            if read:
                report.tables[name] = TableCounts(read=read, inserted=inserted)
    finally:
        con.execute(f"SET preserve_insertion_order = {bool(preserve_order)}")
        drop_staging(con)
    return report


def import_into_store(
    store: str | Path, paths: Iterable[str | Path], table: str | None = None, wait_seconds: float = WAIT_SECONDS
) -> ImportReport:
    """Import into the store file at *store* while it may be served: :func:`import_paths` on the next version
    of the file, renamed into place when it succeeds (see :mod:`local.replacement`).

    Raises :class:`ImportFailure` (bad files; exit 2), ``InvalidInput`` (unknown *table*; exit 2),
    ``StoreBusy`` (another import holds the store for *wait_seconds*) or ``StoreInaccessible``.
    """
    paths = list(paths)
    if table:
        resolve_table(table)
    expand_paths(paths)  # bad paths fail before the store is copied
    with writing_store(store, wait_seconds) as con:
        return import_paths(con, paths, table=table)


def _stage_files(
    con: duckdb.DuckDBPyConnection,
    files: list[Path],
    forced: schemas.TableSchema | None,
    workdir: Path,
    report: ImportReport,
) -> None:
    """Validate and stage every file: JSON Lines archives in batches of :data:`BATCH_BYTES`, others one by one."""
    batch: list[str] = []
    batch_bytes = 0
    for path in files:
        kind = _sniff(path)
        if kind == "jsonl":
            size = path.stat().st_size
            if batch and batch_bytes + size > BATCH_BYTES:
                stage_archive_lines(con, batch, report)
                batch, batch_bytes = [], 0
            batch.append(str(path))
            batch_bytes += size
        elif kind == "csv":
            columns, rows = csv_rows(path)
            stage_export_rows(con, path, rows, columns, forced, workdir, "line")
        elif kind == "json":
            _stage_json_document(con, path, forced, workdir, report)
    if batch:
        stage_archive_lines(con, batch, report)


def _stage_json_document(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    forced: schemas.TableSchema | None,
    workdir: Path,
    report: ImportReport,
) -> None:
    try:
        document = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise ImportFailure(path, None, f"not UTF-8: {error}") from None
    except json.JSONDecodeError as error:
        raise ImportFailure(path, error.lineno, f"invalid JSON: {error.msg}") from None
    records = legacy_records(document)
    if records is not None:
        # Legacy archive blob: hand the records to the archive parser as JSON Lines.
        stage_legacy_records(con, path, records, workdir, report)
        return
    columns, rows = json_document_rows(path, document)
    stage_export_rows(con, path, rows, columns, forced, workdir, "row")
