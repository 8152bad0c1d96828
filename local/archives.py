"""Diagnostic-settings storage archive blobs (``PT1H.json``), parsed and validated by DuckDB.

JSON Lines, one record per line, or the legacy ``{"records": [...]}`` object (handed over as JSON Lines).
``category`` picks the table; the table's own columns come from ``properties`` (keys matched
case-insensitively); the envelope (``time``, ``resourceId``, ...) fills the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from local.staging import UNION, ImportFailure, ImportReport, capped_sql, lit, next_batch, utf8_failure
from local.store import quote
from shared import schemas

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
#: Longest record (line) the fast path reads, in bytes. DuckDB's default (16 MiB) is tried first: room for
#: 1 GiB costs a third more reading time on every batch, so only a batch holding a longer record is read
#: again with it. Long values are cut to the string cap when staged (:data:`local.staging.MAX_STRING_CHARS`).
MAX_RECORD_BYTES = 1 << 30


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
    """The fast path found a problem in *files*; the exact (line-numbered) path will name it."""

    def __init__(self, files: set[str]) -> None:
        super().__init__(sorted(files)[:3])
        self.files = files


def stage_archive_lines(
    con: duckdb.DuckDBPyConnection, files: Sequence[str], report: ImportReport, record_numbers: bool = False
) -> None:
    """Parse, validate and stage JSON Lines archive files with DuckDB.

    Fast path: DuckDB's parallel NDJSON reader over the whole batch, no line numbers. If it finds any
    problem, the exact path (each file split into numbered lines) names the line: first on the files the
    fast path blamed (or, when DuckDB stopped at an error, the files one pass finds unreadable), so a bad
    record in the last of 10,000 files costs one more pass, not 10,000 exact ones. Should those files
    prove fine, every other file takes the exact path too.
    With *record_numbers*, failures say "record N" instead of giving a line (legacy files converted to lines).
    """
    listing = "[" + ", ".join(lit(f) for f in files) + "]"
    suspects: set[str] | None = None
    for record_bytes in (None, MAX_RECORD_BYTES):
        try:
            _stage_fast(con, listing, record_bytes, report, record_numbers)
            return
        except _NeedsDiagnosis as problem:
            suspects = problem.files
            break
        except duckdb.Error as error:
            if record_bytes is None and "maximum_object_size" in str(error):
                continue  # a record over 16 MiB: read the batch again with room for it
            break
    if suspects is None:
        suspects = _unreadable_files(con, listing)
    exact_first = [file for file in files if file in suspects]
    for file in exact_first:
        _stage_numbered_lines(con, file, report, record_numbers)
    for file in files:
        if file not in suspects:
            _stage_numbered_lines(con, file, report, record_numbers)


def _stage_fast(
    con: duckdb.DuckDBPyConnection, listing: str, record_bytes: int | None, report: ImportReport, record_numbers: bool
) -> None:
    """The fast path over the files of *listing* (SQL list); records up to *record_bytes* (None: DuckDB's default)."""
    size = "" if record_bytes is None else f", maximum_object_size={record_bytes}"
    con.execute(
        "CREATE OR REPLACE TEMP VIEW _source AS SELECT filename AS f, CAST(NULL AS BIGINT) AS n, "
        f"CAST(json AS VARCHAR) AS line FROM read_ndjson_objects({listing}, filename=true{size})"
    )
    try:
        _stage_source(con, report, exact=False, record_numbers=record_numbers)
    finally:
        con.execute("DROP VIEW IF EXISTS _source")


def _unreadable_files(con: duckdb.DuckDBPyConnection, listing: str) -> set[str]:
    """The files of *listing* (SQL list) holding a line that is not UTF-8, not JSON or not an object."""
    try:
        rows = con.execute(
            f"""
            WITH t AS (SELECT filename AS f, try(decode(content)) AS text FROM read_blob({listing}))
            SELECT f FROM t WHERE text IS NULL
            UNION
            SELECT f FROM (
                SELECT f, trim(unnest(string_split(text, chr(10))), chr(13) || chr(65279) || chr(32) || chr(9)) AS line
                FROM t WHERE text IS NOT NULL
            )
            WHERE line <> '' AND (NOT json_valid(line) OR json_type(line) <> 'OBJECT')
            """
        ).fetchall()
    except duckdb.Error:
        return set()  # nothing to go by: every file takes the exact path
    return {str(row[0]) for row in rows}


def _stage_numbered_lines(
    con: duckdb.DuckDBPyConnection, file: str, report: ImportReport, record_numbers: bool
) -> None:
    """The exact path for one file: its lines numbered, each parsed on its own, the first bad one reported."""
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _source AS
            SELECT f, n, line FROM (
                SELECT f, n, trim(raw, chr(13) || chr(65279) || chr(32) || chr(9)) AS line FROM (
                    SELECT filename AS f, unnest(parts) AS raw, unnest(range(1, len(parts) + 1)) AS n
                    FROM (SELECT filename, string_split(content, chr(10)) AS parts FROM read_text({lit(file)}))
                )
            )
            WHERE line <> ''
            """
        )
    except duckdb.InvalidInputException:
        raise utf8_failure(file, Path(file).read_bytes()) from None
    try:
        _stage_source(con, report, exact=True, record_numbers=record_numbers)
    finally:
        con.execute("DROP TABLE IF EXISTS _source")


def _discover_keys(con: duckdb.DuckDBPyConnection, exact: bool) -> tuple[set[str], set[str]]:
    """Which keys occur in ``_source`` (any casing), at the top level and inside properties."""
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
    return top_keys, prop_keys


def _raw_fields(top_keys: set[str], prop_keys: set[str]) -> tuple[str, str]:
    """SQL: the select list of raw (string) fields per column, and the one JSON extraction they index."""
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
    path_list = "[" + ", ".join(lit(p) for p in paths) + "]"
    return raw_select, f"json_extract_string(line, {path_list})"


def _typed_columns() -> str:
    """SQL: every staging column from the raw fields (derived columns as the workspace sets them)."""
    typed = []
    for name, duck_type in UNION.items():
        if name == "TimeGenerated":
            expr = "_time"
        elif name == "Type":
            expr = "_table"
        elif name == "Category":
            expr = capped_sql(f"coalesce({_raw(name)}, '')")
        elif name == "_ResourceId":
            expr = capped_sql("coalesce(_resource_id, '')")
        elif name == "_SubscriptionId":
            expr = capped_sql(
                "CASE WHEN _resource_id LIKE '/subscriptions/%' THEN split_part(_resource_id, '/', 3) ELSE '' END"
            )
        elif name == "SourceSystem":
            expr = lit(_SOURCE_SYSTEM)
        elif name == "_IsBillable":
            expr = "''"
        elif name == "_BilledSize":
            expr = "CAST(NULL AS DOUBLE)"
        elif duck_type == "VARCHAR":
            expr = capped_sql(f"coalesce({_raw(name)}, '')")
        else:
            expr = f"TRY_CAST(nullif({_trim(_raw(name))}, '') AS {duck_type})"
        typed.append(f"{expr} AS {quote(name)}")
    return ", ".join(typed)


def _checks() -> str:
    """SQL: the WHEN clauses naming the first problem of a record (none: NULL)."""
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
            f"THEN {lit(f'{name} is not a number: ')} || {_raw(name)}"
            for name, kusto_type in table.columns
            if kusto_type in ("int", "long", "real") and name not in _DERIVED
        ]
        if numbers:
            checks.append(f"WHEN _category = {lit(table.category.lower())} THEN CASE {' '.join(numbers)} END")
    return " ".join(checks)


def _table_case() -> str:
    """SQL: the table a record goes to, by its (lowercased) category; NULL for other categories."""
    return (
        "CASE _category "
        + " ".join(f"WHEN {lit(t.category.lower())} THEN {lit(t.name)}" for t in schemas.TABLES)
        + " END"
    )


def _stage_source(con: duckdb.DuckDBPyConnection, report: ImportReport, exact: bool, record_numbers: bool) -> None:
    """Stage the records of the relation ``_source(f, n, line)``; see :func:`stage_archive_lines`."""
    raw_select, extract = _raw_fields(*_discover_keys(con, exact))
    batch = next_batch(con)
    con.execute(
        f"""
        INSERT INTO _staged BY NAME
        SELECT *, {batch} AS _batch FROM (
            SELECT {_typed_columns()}, _table, _line, _reason,
                -- the file name is long and only needed to report a failure
                CASE WHEN _reason IS NOT NULL OR _line IS NOT NULL THEN _file END AS _file
            FROM (SELECT *, CASE {_checks()} END AS _reason FROM (
                SELECT *, {_table_case()} AS _table FROM (
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
    if not exact:
        blamed = con.execute(
            "SELECT DISTINCT _file FROM _staged WHERE _batch = ? AND _reason IS NOT NULL", [batch]
        ).fetchall()
        if blamed:
            con.execute("DELETE FROM _staged WHERE _batch = ?", [batch])
            raise _NeedsDiagnosis({str(row[0]) for row in blamed})
    failures = con.execute(
        "SELECT _file, _line, _reason FROM _staged WHERE _batch = ? AND _reason IS NOT NULL "
        "ORDER BY _file, _line LIMIT 1",
        [batch],
    ).fetchall()
    if failures:
        _raise_failure(con, str(failures[0][0]), int(failures[0][1]), str(failures[0][2]), record_numbers)
    other = con.execute("SELECT count(*) FROM _staged WHERE _batch = ? AND _table IS NULL", [batch]).fetchall()
    report.skipped_other_categories += int(other[0][0])


def _raise_failure(con: duckdb.DuckDBPyConnection, file: str, line: int, reason: str, record_numbers: bool) -> None:
    """Raise the :class:`ImportFailure` of a bad line, with the JSON parser's own words when it is not JSON."""
    text = con.execute("SELECT line FROM _source WHERE f = ? AND n = ?", [file, line]).fetchall()[0][0]
    try:
        if not isinstance(json.loads(text), dict):
            reason = "not a JSON object"
    except ValueError as error:
        reason = f"invalid JSON: {error}"
    if record_numbers:
        raise ImportFailure(file, None, f"record {line}: {reason}")
    raise ImportFailure(file, line, reason)


def _raw(column: str) -> str:
    return quote("raw:" + column)


def _trim(expr: str) -> str:
    """SQL: *expr* without leading and trailing spaces, as ``trim`` gives it, but copied only when it has any
    (``trim`` copies every string; on 180-character resource ids that was a fifth of the staging time)."""
    return f"CASE WHEN starts_with({expr}, ' ') OR ends_with({expr}, ' ') THEN trim({expr}) ELSE {expr} END"


def legacy_records(document: Any) -> list[Any] | None:
    """The records of a legacy ``{"records": [...]}`` archive blob (key in any case); None for other documents."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key.lower() == "records" and isinstance(value, list):
                return value
    return None


def stage_legacy_records(
    con: duckdb.DuckDBPyConnection, path: Path, records: list[Any], workdir: Path, report: ImportReport
) -> None:
    """Stage a legacy archive blob's records through the JSON Lines parser; failures say "record N"."""
    lines = workdir / f"legacy-{len(list(workdir.iterdir()))}.jsonl"
    with lines.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
    try:
        stage_archive_lines(con, [str(lines)], report, record_numbers=True)
    except ImportFailure as failure:
        raise ImportFailure(path, None, failure.reason) from None
    finally:
        lines.unlink()
