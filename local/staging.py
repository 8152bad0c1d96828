"""What every import format shares: the failure and the report, values converted to column types, and the
connection-local staging table that holds validated records until one transaction stores them.

Formats: :mod:`local.archives` (diagnostic-settings archive blobs) and :mod:`local.exports`
(Log Analytics exports); :mod:`local.importers` walks the files and stores what they staged.

Strings are bounded: every imported string column holds at most :data:`MAX_STRING_CHARS` (8,192) characters.
A longer value is kept, cut to that length with :data:`TRUNCATION_MARKER` ("…[truncated]") as its last
characters, rather than rejected. ACS writes a few hundred characters at most (the longest SMTP diagnostics
are under 1 KiB); an accepted 50 MB ``FailureMessage`` once made a trace answer of 100 MB. Failure reasons
quote at most :data:`MAX_REASON_CHARS` characters of a bad value, on one line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from local.store import quote
from shared import schemas
from shared.errors import InvalidInput, ParameterError

#: Longest string stored in any imported column, in characters (the one place this cap is set).
MAX_STRING_CHARS = 8192
#: The last characters of a string cut to :data:`MAX_STRING_CHARS`.
TRUNCATION_MARKER = "…[truncated]"
#: Longest reason an :class:`ImportFailure` gives (it may quote the bad value).
MAX_REASON_CHARS = 500


def cap_string(text: str, limit: int = MAX_STRING_CHARS) -> str:
    """*text*, or its first characters ending in :data:`TRUNCATION_MARKER` so that it is *limit* long."""
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def capped_sql(expr: str) -> str:
    """SQL: :func:`cap_string` of the VARCHAR *expr*. ``strlen`` (bytes, free) rules out almost every value
    before ``length`` (characters, a scan) is computed; CASE evaluates a branch only for rows still open."""
    keep = MAX_STRING_CHARS - len(TRUNCATION_MARKER)
    return (
        f"CASE WHEN strlen({expr}) <= {MAX_STRING_CHARS} THEN {expr} WHEN length({expr}) <= {MAX_STRING_CHARS} "
        f"THEN {expr} ELSE left({expr}, {keep}) || {lit(TRUNCATION_MARKER)} END"
    )


class ImportFailure(InvalidInput):
    """A file could not be imported; nothing from the call was stored."""

    def __init__(self, file: str | Path, line: int | None, reason: str) -> None:
        self.file = str(file)
        self.line = line
        self.reason = reason = cap_string(reason.replace("\r", "\\r").replace("\n", "\\n"), MAX_REASON_CHARS)
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


def utf8_failure(path: str | Path, data: bytes) -> ImportFailure:
    """The failure of a file that is not UTF-8, naming the first line that does not decode."""
    for number, line in enumerate(data.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as error:
            return ImportFailure(path, number, f"not UTF-8 (byte {error.start + 1} of the line)")
    return ImportFailure(path, None, "not UTF-8")


def resolve_table(name: str) -> schemas.TableSchema:
    """A table by name or category, case-insensitively (``ACSEmailSendMailOperational``/category).

    Raises :class:`InvalidInput` (a ``ValueError``) for the ``table`` parameter when none matches.
    """
    wanted = name.strip().lower()
    for table in schemas.TABLES:
        if wanted in (table.name.lower(), table.category.lower()):
            return table
    shown = cap_string(name, 100).replace("\r", "\\r").replace("\n", "\\n")
    raise InvalidInput.parameter(
        "table", f"unknown table {shown!r}; expected one of {[t.name for t in schemas.TABLES]}"
    )


def lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


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
        return _iso_time(match)
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


def _iso_time(match: re.Match[str]) -> datetime:
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


def convert(value: Any, kusto_type: str) -> Any:
    """A JSON/CSV cell as the column's Python value; '' and None mean absent."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return "" if kusto_type == "string" else None
    if kusto_type == "string":
        return cap_string(value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))
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


# ------------------------------------------------------------------------------------------ staging

#: Every column of every table, with its DuckDB type (same-named columns agree on type).
UNION: dict[str, str] = {}
for _table in schemas.TABLES:
    for _name, _type in _table.columns:
        assert UNION.setdefault(_name, schemas.DUCKDB_TYPES[_type]) == schemas.DUCKDB_TYPES[_type]


def create_staging(con: duckdb.DuckDBPyConnection) -> None:
    """One connection-local table for all staged records: union of columns, target table, provenance."""
    columns = ", ".join(f"{quote(n)} {t}" for n, t in UNION.items())
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _staged ({columns}, _table VARCHAR, "
        "_file VARCHAR, _line BIGINT, _reason VARCHAR, _batch INTEGER)"
    )


def drop_staging(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP TABLE IF EXISTS _staged")


def staged_relation(table: schemas.TableSchema) -> str:
    """SQL: the staged records of *table*."""
    return f"(SELECT * FROM _staged WHERE _table = {lit(table.name)})"


def next_batch(con: duckdb.DuckDBPyConnection) -> int:
    """A number for the next group of staged records (failures are looked up per batch)."""
    return int(con.execute("SELECT coalesce(max(_batch), 0) + 1 FROM _staged").fetchall()[0][0])


def stage_rows(
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
    spec = "{" + ", ".join(f"{lit(n)}: {lit(schemas.DUCKDB_TYPES[t])}" for n, t in table.columns) + "}"
    names = ", ".join(quote(n) for n in table.column_names)
    con.execute(
        f"INSERT INTO _staged BY NAME SELECT *, {lit(table.name)} AS _table, {next_batch(con)} AS _batch "
        f"FROM (SELECT {names} FROM "
        f"read_json(?, format='newline_delimited', columns={spec}, timestampformat='%Y-%m-%dT%H:%M:%S.%f'))",
        [str(tmp)],
    )
    tmp.unlink()
