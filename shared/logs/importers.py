"""Idempotent importers of ACS email logs into the embedded DuckDB store.

Formats (detected per file by extension and content):

* Diagnostic-settings storage archive blobs (``PT1H.json``): JSON Lines, one record per line, or the
  legacy ``{"records": [...]}`` object. ``category`` picks the table; the table's own columns come
  from ``properties`` (keys matched case-insensitively). Parsed by DuckDB, not per record in Python.
* Log Analytics exports: a JSON array of row objects (``az monitor log-analytics query``), the query
  API's ``{"tables": [...]}`` response, or CSV with a header row (``TimeGenerated [UTC]`` headers,
  UTF-8 BOM and the portal's ``1/2/2026, 3:04:05.123 PM`` timestamps are accepted).

Every call is one transaction: all files are validated and staged first; any bad record raises
:class:`ImportFailure` (file, line, reason) and the store is left unchanged. Exact duplicates of stored
records (and repeats within the import) are skipped, so importing the same files again changes nothing.
Records of categories other than the ACS email ones are skipped and counted.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from shared import schemas
from shared.errors import InvalidInput, ParameterError
from shared.logs.store import ensure_indexes, ensure_tables, insert_staged, quote

#: File name endings walked in folders.
ARCHIVE_SUFFIXES = (".json", ".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)
#: JSON Lines input handed to DuckDB per statement (bytes).
BATCH_BYTES = 256 * 1024 * 1024

#: Archive envelope key (lowercase) -> column it fills (properties may also carry these columns).
_ENVELOPE = {
    "time": "TimeGenerated",
    "resourceid": "_ResourceId",
    "correlationid": "CorrelationId",
    "operationname": "OperationName",
    "operationversion": "OperationVersion",
    "category": "Category",
    "location": "Location",
    "tenantid": "TenantId",
}
#: Columns never read from ``properties`` (derived or set by the workspace).
_DERIVED = frozenset(
    {
        "TimeGenerated",
        "Type",
        "_ResourceId",
        "_SubscriptionId",
        "SourceSystem",
        "_IsBillable",
        "_BilledSize",
        "Category",
    }
)
_SOURCE_SYSTEM = "Azure"


class ImportFailure(InvalidInput):
    """A file could not be imported; nothing from the call was stored."""

    def __init__(self, file: str | Path, line: int | None, reason: str) -> None:
        self.file = str(file)
        self.line = line
        self.reason = reason
        where = f"{self.file}:{line}" if line is not None else self.file
        super().__init__(f"{where}: {reason}", [ParameterError("paths", f"{where}: {reason}")])


@dataclass
class TableCounts:
    read: int = 0
    inserted: int = 0

    @property
    def duplicates(self) -> int:
        """Records skipped because an exact duplicate was already stored (or earlier in the import)."""
        return self.read - self.inserted


@dataclass
class ImportReport:
    files: int = 0
    tables: dict[str, TableCounts] = field(default_factory=dict)
    #: Archive records of categories that are not ACS email tables (e.g. chat, SMS logs).
    skipped_other_categories: int = 0

    @property
    def read(self) -> int:
        return sum(c.read for c in self.tables.values())

    @property
    def inserted(self) -> int:
        return sum(c.inserted for c in self.tables.values())

    @property
    def duplicates(self) -> int:
        return sum(c.duplicates for c in self.tables.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "tables": {
                name: {"read": c.read, "inserted": c.inserted, "duplicates": c.duplicates}
                for name, c in self.tables.items()
            },
            "skipped_other_categories": self.skipped_other_categories,
        }


# --------------------------------------------------------------------------------------------- files


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


def resolve_table(name: str) -> schemas.TableSchema:
    """A table by name or category, case-insensitively (``ACSEmailSendMailOperational``/category)."""
    wanted = name.strip().lower()
    for table in schemas.TABLES:
        if wanted in (table.name.lower(), table.category.lower()):
            return table
    raise ValueError(f"unknown table {name!r}; expected one of {[t.name for t in schemas.TABLES]}")


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


# ------------------------------------------------------------------------------------- conversions

_PORTAL_TIME = re.compile(
    r"^(\d{1,2})/(\d{1,2})/(\d{4}),?\s+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?\s*([AaPp][Mm])?$"
)
_ISO_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?\s*(Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_time(value: Any) -> datetime:
    """A timestamp as naive UTC: ISO 8601 (up to 7+ fractional digits, Z or offset) or the portal's M/D/YYYY form."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    text = value.strip()
    match = _ISO_TIME.match(text)
    if match:
        year, month, day, hour, minute, second, fraction, zone = match.groups()
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        result = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micro)
        if zone and zone.upper() != "Z":
            sign = 1 if zone[0] == "+" else -1
            digits = zone[1:].replace(":", "")
            offset_min = sign * (int(digits[:2]) * 60 + int(digits[2:]))
            result = datetime.fromtimestamp(result.replace(tzinfo=UTC).timestamp() - offset_min * 60, UTC).replace(
                tzinfo=None, microsecond=micro
            )
        return result
    match = _PORTAL_TIME.match(text)
    if match:
        month, day, year, hour, minute, second, fraction, ampm = match.groups()
        h = int(hour)
        if ampm:
            if not 1 <= h <= 12:
                raise ValueError(f"not a timestamp: {value!r}")
            h = h % 12 + (12 if ampm.lower() == "pm" else 0)
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        return datetime(int(year), int(month), int(day), h, int(minute), int(second or 0), micro)
    raise ValueError(f"not a timestamp: {value!r}")


def _convert(value: Any, kusto_type: str) -> Any:
    """A JSON/CSV cell as the column's Python value; '' and None mean absent."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return "" if kusto_type == "string" else None
    if kusto_type == "string":
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if kusto_type == "datetime":
        return parse_time(value)
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if kusto_type == "real":
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            raise ValueError(f"not a finite number: {value!r}")
        return number
    if kusto_type in ("int", "long"):
        number = float(value) if isinstance(value, str) else value
        if isinstance(number, float):
            if not math.isfinite(number):
                raise ValueError(f"not an integer: {value!r}")
            number = round(number)
        return int(number)
    raise ValueError(f"unsupported type {kusto_type}")


# ------------------------------------------------------------------- staging (shared by all formats)

#: Every column of every table, with its DuckDB type (same-named columns agree on type).
_UNION: dict[str, str] = {}
for _table in schemas.TABLES:
    for _name, _type in _table.columns:
        assert _UNION.setdefault(_name, schemas.DUCKDB_TYPES[_type]) == schemas.DUCKDB_TYPES[_type]


def _create_staging(con: duckdb.DuckDBPyConnection) -> None:
    """One connection-local table for all staged records: union of columns, target table, provenance."""
    columns = ", ".join(f"{quote(n)} {t}" for n, t in _UNION.items())
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _staged ({columns}, _table VARCHAR, "
        "_file VARCHAR, _line BIGINT, _reason VARCHAR, _batch INTEGER)"
    )


def _drop_staging(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP TABLE IF EXISTS _staged")


def _stage_rows(
    con: duckdb.DuckDBPyConnection, table: schemas.TableSchema, rows: Sequence[dict[str, Any]], workdir: Path
) -> None:
    """Append converted rows (column -> Python value) to the table's staging table, via one JSON Lines file."""
    if not rows:
        return
    tmp = workdir / f"rows-{table.name}-{len(list(workdir.iterdir()))}.jsonl"
    with tmp.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(
                json.dumps(
                    {
                        name: (value.strftime("%Y-%m-%dT%H:%M:%S.%f") if isinstance(value, datetime) else value)
                        for name, value in row.items()
                    }
                )
            )
            out.write("\n")
    spec = "{" + ", ".join(f"{_lit(n)}: {_lit(schemas.DUCKDB_TYPES[t])}" for n, t in table.columns) + "}"
    names = ", ".join(quote(n) for n in table.column_names)
    con.execute(
        f"INSERT INTO _staged BY NAME SELECT *, {_lit(table.name)} AS _table, {_next_batch(con)} AS _batch "
        f"FROM (SELECT {names} FROM "
        f"read_json(?, format='newline_delimited', columns={spec}, timestampformat='%Y-%m-%dT%H:%M:%S.%f'))",
        [str(tmp)],
    )
    tmp.unlink()


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ------------------------------------------------------------------------- archive (JSON Lines, fast)


def _archive_props(tables: Iterable[schemas.TableSchema]) -> dict[str, str]:
    """lowercase property name -> column name, for columns read from ``properties``."""
    props: dict[str, str] = {}
    for table in tables:
        for name in table.column_names:
            if name not in _DERIVED:
                props[name.lower()] = name
    return props


_PROPS = _archive_props(schemas.TABLES)


class _NeedsDiagnosis(Exception):
    """The fast path found a problem; the exact (line-numbered) path will name it."""


def _stage_archive_lines(
    con: duckdb.DuckDBPyConnection, files: Sequence[str], report: ImportReport, record_numbers: bool = False
) -> None:
    """Parse, validate and stage JSON Lines archive files with DuckDB.

    Fast path: DuckDB's parallel NDJSON reader over the whole batch, no line numbers. If it finds any
    problem, each file is redone on the exact path (split into numbered lines), which names the line.
    With *record_numbers*, failures say "record N" instead of giving a line (legacy files converted to lines).
    """
    listing = "[" + ", ".join(_lit(f) for f in files) + "]"
    con.execute(
        "CREATE OR REPLACE TEMP VIEW _source AS SELECT filename AS f, CAST(NULL AS BIGINT) AS n, "
        f"CAST(json AS VARCHAR) AS line FROM read_ndjson_objects({listing}, filename=true)"
    )
    try:
        _stage_source(con, report, exact=False, record_numbers=record_numbers)
        return
    except (_NeedsDiagnosis, duckdb.Error):
        pass
    finally:
        con.execute("DROP VIEW IF EXISTS _source")
    for file in files:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _source AS
            SELECT f, n, line FROM (
                SELECT f, n, trim(raw, chr(13) || chr(65279) || chr(32) || chr(9)) AS line FROM (
                    SELECT filename AS f, unnest(parts) AS raw, unnest(range(1, len(parts) + 1)) AS n
                    FROM (SELECT filename, string_split(content, chr(10)) AS parts FROM read_text({_lit(file)}))
                )
            )
            WHERE line <> ''
            """
        )
        try:
            _stage_source(con, report, exact=True, record_numbers=record_numbers)
        finally:
            con.execute("DROP TABLE IF EXISTS _source")


def _stage_source(con: duckdb.DuckDBPyConnection, report: ImportReport, exact: bool, record_numbers: bool) -> None:
    """Stage the records of the relation ``_source(f, n, line)``; see :func:`_stage_archive_lines`."""
    # Which keys occur (any casing), at the top level and inside properties.
    top_keys: set[str] = set()
    prop_keys: set[str] = set()
    keys_of = "json_keys(line, ['$', '$.properties'])"
    if exact:
        keys_of = f"try({keys_of})"
    # Grouped by a hash of the key lists: far cheaper than comparing the lists themselves, line by line.
    shapes = f"SELECT any_value(k) FROM (SELECT {keys_of} AS k FROM _source) GROUP BY hash(k)"
    for (lists,) in con.execute(shapes).fetchall():
        if lists:
            top_keys.update(str(k) for k in lists[0] or ())
            prop_keys.update(str(k) for k in lists[1] or ())

    envelope: dict[str, list[str]] = {}
    properties_variants: list[str] = []
    for key in sorted(top_keys):
        if key.lower() == "properties":
            properties_variants.append(key)
        elif key.lower() in _ENVELOPE:
            envelope.setdefault(_ENVELOPE[key.lower()], []).append(key)
    from_props: dict[str, list[str]] = {}
    for key in sorted(prop_keys):
        if key.lower() in _PROPS:
            from_props.setdefault(_PROPS[key.lower()], []).append(key)

    paths: list[str] = []

    def path_index(*keys: str) -> int:
        paths.append("$" + "".join("." + json.dumps(k) for k in keys))
        return len(paths)  # DuckDB lists are 1-based

    def field_expr(column: str) -> str:
        parts = [f"v[{path_index(k)}]" for k in envelope.get(column, [])]
        parts += [f"v[{path_index(p, k)}]" for p in properties_variants for k in from_props.get(column, [])]
        if not parts:
            return "CAST(NULL AS VARCHAR)"
        return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"

    columns = {name for table in schemas.TABLES for name in table.column_names} | set(_ENVELOPE.values())
    raw_select = ", ".join(f"{field_expr(c)} AS {_raw(c)}" for c in sorted(columns) if c != "Type")
    if not paths:
        path_index("time")
    path_list = "[" + ", ".join(_lit(p) for p in paths) + "]"
    extract = f"json_extract_string(line, {path_list})"

    typed = []
    for name, duck_type in _UNION.items():
        if name == "TimeGenerated":
            expr = "_time"
        elif name == "Type":
            expr = "_table"
        elif name == "Category":
            expr = f"coalesce({_raw(name)}, '')"
        elif name == "_ResourceId":
            expr = "coalesce(_resource_id, '')"
        elif name == "_SubscriptionId":
            expr = "CASE WHEN _resource_id LIKE '/subscriptions/%' THEN split_part(_resource_id, '/', 3) ELSE '' END"
        elif name == "SourceSystem":
            expr = _lit(_SOURCE_SYSTEM)
        elif name == "_IsBillable":
            expr = "''"
        elif name == "_BilledSize":
            expr = "CAST(NULL AS DOUBLE)"
        elif duck_type == "VARCHAR":
            expr = f"coalesce({_raw(name)}, '')"
        else:
            expr = f"TRY_CAST(nullif({_trim(_raw(name))}, '') AS {duck_type})"
        typed.append(f"{expr} AS {quote(name)}")

    checks = [
        "WHEN _bad_json THEN 'invalid JSON'",
        f"WHEN {_raw('TimeGenerated')} IS NULL OR {_trim(_raw('TimeGenerated'))} = '' THEN 'missing time'",
        f"WHEN _time IS NULL THEN 'bad timestamp in time: ' || {_raw('TimeGenerated')}",
        "WHEN _category IS NULL OR _category = '' THEN 'missing category'",
    ]
    for table in schemas.TABLES:
        # Numbers of a table are checked in its records only (one comparison for the others).
        numbers = [
            f"WHEN {_trim(_raw(name))} <> '' AND "
            f"TRY_CAST({_trim(_raw(name))} AS {'DOUBLE' if kusto_type == 'real' else 'BIGINT'}) IS NULL "
            f"THEN {_lit(f'{name} is not a number: ')} || {_raw(name)}"
            for name, kusto_type in table.columns
            if kusto_type in ("int", "long", "real") and name not in _DERIVED
        ]
        if numbers:
            checks.append(f"WHEN _category = {_lit(table.category.lower())} THEN CASE {' '.join(numbers)} END")
    table_case = (
        "CASE _category "
        + " ".join(f"WHEN {_lit(t.category.lower())} THEN {_lit(t.name)}" for t in schemas.TABLES)
        + " END"
    )
    batch = _next_batch(con)
    con.execute(
        f"""
        INSERT INTO _staged BY NAME
        SELECT *, {batch} AS _batch FROM (
            SELECT {", ".join(typed)}, _table, _line, _reason,
                -- the file name is long and only needed to report a failure
                CASE WHEN _reason IS NOT NULL OR _line IS NOT NULL THEN _file END AS _file
            FROM (SELECT *, CASE {" ".join(checks)} END AS _reason FROM (
                SELECT *, {table_case} AS _table FROM (
                    SELECT *, TRY_CAST({_raw("TimeGenerated")} AS TIMESTAMPTZ)::TIMESTAMP AS _time,
                        lower({_trim(_raw("Category"))}) AS _category,
                        lower({_trim(_raw("_ResourceId"))}) AS _resource_id
                    FROM (
                        SELECT f AS _file, n AS _line, v IS NULL AS _bad_json, {raw_select}
                        FROM (SELECT f, n, {f"try({extract})" if exact else extract} AS v FROM _source)
                    )
                )
            ))
        )
        """
    )
    failures = con.execute(
        "SELECT _file, _line, _reason FROM _staged WHERE _batch = ? AND _reason IS NOT NULL "
        "ORDER BY _file, _line LIMIT 1",
        [batch],
    ).fetchall()
    if failures and not exact:
        con.execute("DELETE FROM _staged WHERE _batch = ?", [batch])
        raise _NeedsDiagnosis(failures[0])
    if failures:
        file, line, reason = str(failures[0][0]), int(failures[0][1]), str(failures[0][2])
        text = con.execute("SELECT line FROM _source WHERE f = ? AND n = ?", [file, line]).fetchall()[0][0]
        try:
            if not isinstance(json.loads(text), dict):
                reason = "not a JSON object"
        except ValueError as error:
            reason = f"invalid JSON: {error}"
        if record_numbers:
            raise ImportFailure(file, None, f"record {line}: {reason}")
        raise ImportFailure(file, line, reason)
    other = con.execute("SELECT count(*) FROM _staged WHERE _batch = ? AND _table IS NULL", [batch]).fetchall()
    report.skipped_other_categories += int(other[0][0])


def _raw(column: str) -> str:
    return quote("raw:" + column)


def _trim(expr: str) -> str:
    """SQL: *expr* without leading and trailing spaces, as ``trim`` gives it, but copied only when it has any
    (``trim`` copies every string; on 180-character resource ids that was a fifth of the staging time)."""
    return f"CASE WHEN starts_with({expr}, ' ') OR ends_with({expr}, ' ') THEN trim({expr}) ELSE {expr} END"


def _next_batch(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute("SELECT coalesce(max(_batch), 0) + 1 FROM _staged").fetchall()[0][0])


def _legacy_records(path: Path, document: Any) -> list[Any] | None:
    if isinstance(document, dict):
        for key, value in document.items():
            if key.lower() == "records" and isinstance(value, list):
                return value
    return None


# --------------------------------------------------------------------------- Log Analytics exports


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


def _stage_export_rows(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    rows: Iterable[tuple[int, dict[str, Any]]],
    columns: Sequence[str],
    forced: schemas.TableSchema | None,
    workdir: Path,
    line_word: str,
) -> None:
    """Validate and stage Log Analytics export rows; *rows* yields (line or row number, row)."""
    by_file = _table_from_name(path) or _table_from_columns(columns)
    lookup = {
        table.name: {name.lower(): (name, kusto_type) for name, kusto_type in table.columns} for table in schemas.TABLES
    }
    staged: dict[str, list[dict[str, Any]]] = {}

    def failure(number: int, reason: str) -> ImportFailure:
        if line_word == "line":
            return ImportFailure(path, number, reason)
        return ImportFailure(path, None, f"{line_word} {number}: {reason}")

    for number, row in rows:
        table = _table_for_row(row, forced, by_file)
        if table is None:
            raise failure(number, "cannot tell which table this is; pass table= (e.g. ACSEmailStatusUpdateOperational)")
        columns_of = lookup[table.name]
        out: dict[str, Any] = {}
        for key, value in row.items():
            found = columns_of.get(_clean_header(str(key)).lower())
            if found is None:
                continue
            name, kusto_type = found
            try:
                out[name] = _convert(value, kusto_type)
            except (ValueError, TypeError, OverflowError) as error:
                raise failure(number, f"{name}: {error}") from None
        if out.get("TimeGenerated") is None:
            raise failure(number, "missing TimeGenerated")
        for name, kusto_type in table.columns:
            out.setdefault(name, "" if kusto_type == "string" else None)
        out["Type"] = table.name
        staged.setdefault(table.name, []).append(out)
    for name, table_rows in staged.items():
        _stage_rows(con, schemas.TABLES_BY_NAME[name], table_rows, workdir)


def _csv_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    text = path.read_bytes().decode("utf-8-sig")
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


def _json_document_rows(path: Path, document: Any) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
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
            rows = []
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
    raise ImportFailure(
        path, None, 'JSON document is neither an archive ({"records": [...]}), a row array, nor a query API response'
    )


# --------------------------------------------------------------------------------------- entry point


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
        _create_staging(con)
        with tempfile.TemporaryDirectory(prefix="acs-import-") as tmp:
            workdir = Path(tmp)
            batch: list[str] = []
            batch_bytes = 0
            for path in files:
                kind = _sniff(path)
                if kind == "jsonl":
                    size = path.stat().st_size
                    if batch and batch_bytes + size > BATCH_BYTES:
                        _stage_archive_lines(con, batch, report)
                        batch, batch_bytes = [], 0
                    batch.append(str(path))
                    batch_bytes += size
                elif kind == "csv":
                    columns, csv_rows = _csv_rows(path)
                    _stage_export_rows(con, path, csv_rows, columns, forced, workdir, "line")
                elif kind == "json":
                    _stage_json_document(con, path, forced, workdir, report)
            if batch:
                _stage_archive_lines(con, batch, report)
        con.execute(f"SET preserve_insertion_order = {bool(preserve_order)}")
        # Everything is validated and staged (in connection-local temp tables): store it atomically.
        con.execute("BEGIN TRANSACTION")
        try:
            for schema in schemas.TABLES:
                staged = f"(SELECT * FROM _staged WHERE _table = {_lit(schema.name)})"
                read, inserted = insert_staged(con, schema, staged)
                if read:
                    report.tables[schema.name] = TableCounts(read=read, inserted=inserted)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        ensure_indexes(con)
    finally:
        con.execute(f"SET preserve_insertion_order = {bool(preserve_order)}")
        _drop_staging(con)
    return report


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
    records = _legacy_records(path, document)
    if records is not None:
        # Legacy archive blob: hand the records to the archive parser as JSON Lines.
        lines = workdir / f"legacy-{len(list(workdir.iterdir()))}.jsonl"
        with lines.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record) + "\n")
        try:
            _stage_archive_lines(con, [str(lines)], report, record_numbers=True)
        except ImportFailure as failure:
            raise ImportFailure(path, None, failure.reason) from None
        finally:
            lines.unlink()
        return
    columns, rows = _json_document_rows(path, document)
    _stage_export_rows(con, path, rows, columns, forced, workdir, "row")
