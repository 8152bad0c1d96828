"""Daily summaries in Azure Table Storage (Azurite locally).

Layout: one partition per UTC send day (``PartitionKey = "YYYY-MM-DD"``), one entity per
dimension key (``RowKey = "<dimension>|<escaped key>"``). Keys are escaped reversibly with
``~XX`` (two hex digits) for the characters Table Storage forbids in keys (``/ \\ # ?`` and
control characters), for ``|`` (our separator), ``~`` (the escape itself), and for ``%`` and
``'``, which the service and Azurite mishandle in the URLs of point operations. A missing
key is stored as ``(none)``. The unescaped dimension and key are also stored as properties.

The storage connection is resolved by :mod:`shared.storage` (as Azure Functions bindings do): an app setting ``P``
holding a connection string (``UseDevelopmentStorage=true`` locally) or identity-based
``P__tableServiceUri`` / ``P__accountName`` (+ ``P__credential``, ``P__clientId``).
Secrets never appear in error messages or logs.

The same table keeps one bookkeeping row per daily report email (``PartitionKey = "report-email"``,
``RowKey = "YYYY-MM-DD"``): whether the report of that day was sent, so a rerun sends nothing twice.
Its partition key is not a date, so no summary read (a range of dates) ever returns it.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, ClassVar, Final, TypeVar

from azure.core.exceptions import (
    AzureError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode

from shared.errors import ServiceError, Unavailable, UpstreamFailure
from shared.models import (
    SUMMARY_COUNT_COLUMNS,
    SUMMARY_DIMENSIONS,
    SUMMARY_RATE_COLUMNS,
    SUMMARY_REQUIRED_RATES,
    DailySummary,
)
from shared.settings import Settings
from shared.storage import (  # noqa: F401  (DEV_* re-exported: tests address Azurite through them)
    DEV_ACCOUNT,
    DEV_KEY,
    DEV_TABLE_PORT,
    TableStore,
    redact,
)

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
#: Entities per entity-group transaction (the service limit).
MAX_BATCH: Final = 100
DIMENSIONS: Final = SUMMARY_DIMENSIONS
#: Partition of the report-email rows (see the module docstring); sorts after every "YYYY-MM-DD".
REPORT_SENDS_PARTITION: Final = "report-email"
TOTAL_ROW_KEY: Final = "total|all"
#: RowKey of an empty or missing key.
NONE_MARKER: Final = "(none)"
_ESCAPE: Final = "~"
#: Row keys longer than this many UTF-16 code units (1 KiB is the service limit) are shortened.
MAX_ROW_KEY_UNITS: Final = 512

INT_COLUMNS: Final = SUMMARY_COUNT_COLUMNS
FLOAT_COLUMNS: Final = SUMMARY_RATE_COLUMNS
_REQUIRED_FLOATS: Final = SUMMARY_REQUIRED_RATES

_T = TypeVar("_T")


class SummaryStoreError(UpstreamFailure):
    """The summary table could not be read or written."""

    title = "Summary store failed"


class SummaryStoreUnavailable(Unavailable, SummaryStoreError):
    """No storage connection is configured, it is malformed, or the service cannot be reached."""

    title = "Summary store unavailable"


# --------------------------------------------------------------------------- keys


def _needs_escape(ch: str) -> bool:
    code = ord(ch)
    return code <= 0x1F or 0x7F <= code <= 0x9F or ch in "/\\#?%|'~"


def escape_key(key: str | None) -> str:
    """A dimension key as RowKey text: reversible, without characters Table Storage rejects."""
    if key is None or key == "":
        return NONE_MARKER
    escaped = "".join(f"{_ESCAPE}{ord(ch):02X}" if _needs_escape(ch) else ch for ch in key)
    if escaped == NONE_MARKER:  # the literal key "(none)" must not read back as None
        escaped = f"{_ESCAPE}28" + escaped[1:]
    return escaped


_ESCAPED = re.compile(r"~([0-9A-Fa-f]{2})")


def unescape_key(text: str) -> str | None:
    """Inverse of :func:`escape_key`."""
    if text == NONE_MARKER:
        return None
    if _ESCAPE + _ESCAPE in text:
        raise ValueError("a shortened row key cannot be unescaped; read the Key property")
    return _ESCAPED.sub(lambda match: chr(int(match.group(1), 16)), text)


def _utf16_units(text: str) -> int:
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def row_key(dimension: str, key: str | None) -> str:
    """``<dimension>|<escaped key>``; an over-long key keeps a prefix plus ``~~`` and a hash."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown summary dimension {dimension!r}")
    full = f"{dimension}|{escape_key(key)}"
    if _utf16_units(full) <= MAX_ROW_KEY_UNITS:
        return full
    import hashlib

    digest = hashlib.sha256((key or "").encode("utf-8", "surrogatepass")).hexdigest()[:32]
    budget = MAX_ROW_KEY_UNITS - len(dimension) - 1 - 2 - len(digest)
    prefix: list[str] = []
    used = 0
    for ch in key or "":
        piece = f"{_ESCAPE}{ord(ch):02X}" if _needs_escape(ch) else ch
        units = _utf16_units(piece)
        if used + units > budget:
            break
        prefix.append(piece)
        used += units
    return f"{dimension}|{''.join(prefix)}{_ESCAPE}{_ESCAPE}{digest}"


def partition_key(day: date) -> str:
    return day.isoformat()


# --------------------------------------------------------------------------- entities


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) or math.isinf(number) else number


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_entity(day: date, row: Mapping[str, Any], computed_at: datetime) -> dict[str, Any]:
    """One ``Insights.daily_summary`` row -> a table entity (null measures are omitted)."""
    dimension = str(row["Dimension"])
    raw_key = row.get("Key")
    key = None if raw_key is None or raw_key == "" else str(raw_key)
    entity: dict[str, Any] = {
        "PartitionKey": partition_key(day),
        "RowKey": row_key(dimension, key),
        "Dimension": dimension,
    }
    if key is not None:
        entity["Key"] = key
    for column in INT_COLUMNS:
        value = row.get(column)
        entity[column] = 0 if value is None else int(value)
    for column in FLOAT_COLUMNS:
        number = _number(row.get(column))
        if number is None and column in _REQUIRED_FLOATS:
            number = 0.0
        if number is not None:
            entity[column] = number
    entity["ComputedAt"] = _utc(computed_at)
    entity["SchemaVersion"] = SCHEMA_VERSION
    return entity


def _merge(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Two rows that map to one RowKey (e.g. a null and an empty key): counts add up."""
    merged = dict(first)
    for column in INT_COLUMNS:
        merged[column] = first[column] + second[column]
    total = merged["Total"]
    merged["SuccessRate"] = round(100.0 * merged["Delivered"] / total, 2) if total else 0.0
    avgs = [(e["AvgDurationSeconds"], e["Total"]) for e in (first, second) if "AvgDurationSeconds" in e]
    weight = sum(w for _, w in avgs)
    if avgs:
        merged["AvgDurationSeconds"] = round(sum(a * w for a, w in avgs) / weight, 3) if weight else avgs[0][0]
    p95s = [e["P95DurationSeconds"] for e in (first, second) if "P95DurationSeconds" in e]
    if p95s:
        merged["P95DurationSeconds"] = max(p95s)  # an upper bound; the exact value needs the raw rows
    p50s = [e["P50DurationSeconds"] for e in (first, second) if "P50DurationSeconds" in e]
    if p50s:
        merged["P50DurationSeconds"] = max(p50s)  # likewise an upper bound
    return merged


def from_entity(entity: Mapping[str, Any], *, nullable_key: bool) -> DailySummary:
    dimension = str(entity.get("Dimension") or str(entity["RowKey"]).split("|", 1)[0])
    if "Key" in entity and entity["Key"] is not None:
        key: str | None = str(entity["Key"])
    else:
        key = unescape_key(str(entity["RowKey"]).split("|", 1)[1])
    computed_at = entity.get("ComputedAt")
    if isinstance(computed_at, datetime):
        computed_at = _utc(computed_at)
    data: dict[str, Any] = {
        "date": date.fromisoformat(str(entity["PartitionKey"])),
        "dimension": dimension,
        "key": key if key is not None or nullable_key else "",
        "computed_at": computed_at,
        "schema_version": int(entity.get("SchemaVersion") or SCHEMA_VERSION),
    }
    for column in INT_COLUMNS:
        data[_snake(column)] = int(entity.get(column) or 0)
    for column in FLOAT_COLUMNS:
        value = _number(entity.get(column))
        data[_snake(column)] = value if value is not None or column not in _REQUIRED_FLOATS else 0.0
    return DailySummary.model_validate(data)


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _snake(column: str) -> str:
    return _CAMEL.sub("_", column).lower()


def _key_is_nullable() -> bool:
    field = DailySummary.model_fields["key"]
    return not field.is_required() or "None" in repr(field.annotation)


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --------------------------------------------------------------------------- connection


@dataclass(frozen=True)
class ReplaceResult:
    entities: int
    written: int
    deleted: int
    stale_kept: bool = False


# --------------------------------------------------------------------------- the store


@dataclass
class SummaryStore(TableStore):
    """Daily summaries (``SUMMARY_TABLE``, on the ``SUMMARY_STORAGE`` connection) and the report sends."""

    _nullable_key: bool = field(default_factory=_key_is_nullable)

    what: ClassVar[str] = "summary"
    failed: ClassVar[type[ServiceError]] = SummaryStoreError
    unavailable: ClassVar[type[ServiceError]] = SummaryStoreUnavailable

    @classmethod
    def table_name(cls, settings: Settings) -> str:
        return settings.summary_table

    @property
    def table(self) -> str:
        return str(self.client.table_name)

    def _row_keys(self, day: date) -> set[str]:
        entities = self.client.query_entities(
            "PartitionKey eq @pk", parameters={"pk": partition_key(day)}, select=["PartitionKey", "RowKey"]
        )
        return {str(entity["RowKey"]) for entity in entities}

    def replace_day(
        self, day: date, rows: Iterable[Mapping[str, Any]], computed_at: datetime, *, delete_stale: bool = True
    ) -> ReplaceResult:
        """Make the day's partition hold exactly *rows*: upsert all (batches of 100), then delete the rest.

        Readers never see the day empty: new entities replace old ones in place first, and only
        then are keys that vanished (e.g. ``status|Failed`` after a late Delivered) deleted.
        With ``delete_stale=False`` (a partial query result) nothing is deleted.
        """
        entities: dict[str, dict[str, Any]] = {}
        for row in rows:
            entity = to_entity(day, row, computed_at)
            previous = entities.get(entity["RowKey"])
            entities[entity["RowKey"]] = entity if previous is None else _merge(previous, entity)
        if TOTAL_ROW_KEY not in entities:
            raise ValueError(f"the rows of {day.isoformat()} have no total row; refusing to replace the day")
        ordered = [entities[key] for key in sorted(entities)]
        written = deleted = 0
        try:
            for chunk in _chunks(ordered, MAX_BATCH):
                self.client.submit_transaction([("upsert", entity, {"mode": UpdateMode.REPLACE}) for entity in chunk])
                written += len(chunk)
            if delete_stale:
                stale = sorted(self._row_keys(day) - set(entities))
                pk = partition_key(day)
                for keys in _chunks(stale, MAX_BATCH):
                    self.client.submit_transaction([("delete", {"PartitionKey": pk, "RowKey": key}) for key in keys])
                    deleted += len(keys)
        except ResourceNotFoundError as exc:
            self._table_ready = False
            raise self.error(f"writing the summary of {day.isoformat()} (does the table exist?)", exc) from exc
        except AzureError as exc:
            raise self.error(f"writing the summary of {day.isoformat()}", exc) from exc
        return ReplaceResult(entities=len(ordered), written=written, deleted=deleted, stale_kept=not delete_stale)

    def read(self, from_day: date, to_day: date, dimension: str | None = None) -> list[DailySummary]:
        """Summaries of the days in [from_day, to_day], sorted by date, dimension, key."""
        query = "PartitionKey ge @from and PartitionKey le @to"
        parameters: dict[str, Any] = {"from": partition_key(from_day), "to": partition_key(to_day)}
        if dimension is not None:
            if dimension not in DIMENSIONS:
                raise ValueError(f"unknown summary dimension {dimension!r}")
            # Row keys of one dimension: "<dimension>|" <= RowKey < "<dimension>}" ("}" follows "|").
            query += " and RowKey ge @rk_from and RowKey lt @rk_to"
            parameters.update(rk_from=f"{dimension}|", rk_to=f"{dimension}}}")
        try:
            entities = list(self.client.query_entities(query, parameters=parameters))
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise self.error("reading summaries", exc) from exc
        summaries = [from_entity(entity, nullable_key=self._nullable_key) for entity in entities]
        order = {name: index for index, name in enumerate(DIMENSIONS)}
        summaries.sort(
            key=lambda s: (
                s.date,
                order.get(s.dimension, len(order)),
                s.dimension,
                s.key is not None and s.key != "",
                s.key or "",
            )
        )
        return summaries

    def days_present(self, from_day: date, to_day: date) -> set[date]:
        """Days in [from_day, to_day] that have a summary (their ``total|all`` entity)."""
        try:
            entities = self.client.query_entities(
                "PartitionKey ge @from and PartitionKey le @to and RowKey eq @rk",
                parameters={"from": partition_key(from_day), "to": partition_key(to_day), "rk": TOTAL_ROW_KEY},
                select=["PartitionKey", "RowKey"],
            )
            return {date.fromisoformat(str(entity["PartitionKey"])) for entity in entities}
        except ResourceNotFoundError:
            return set()
        except AzureError as exc:
            raise self.error("listing summarised days", exc) from exc

    # -- report sends (issue 12) ---------------------------------------------------------------

    def report_send(self, day: date) -> dict[str, Any] | None:
        """The report-email row of *day*, or None when no send of it was recorded."""
        try:
            return dict(self.client.get_entity(REPORT_SENDS_PARTITION, partition_key(day)))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self.error(f"reading the report send of {day.isoformat()}", exc) from exc

    def record_report_send(self, day: date, properties: Mapping[str, Any]) -> None:
        """Create or replace the report-email row of *day* (properties hold no addresses)."""
        entity = {"PartitionKey": REPORT_SENDS_PARTITION, "RowKey": partition_key(day), **properties}
        try:
            self.client.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise self.error(f"recording the report send of {day.isoformat()}", exc) from exc

    def latest_report_send(self, since: date) -> dict[str, Any] | None:
        """The report-email row of the latest day on or after *since*, or None when none was recorded."""
        try:
            rows = list(
                self.client.query_entities(
                    "PartitionKey eq @pk and RowKey ge @since",
                    parameters={"pk": REPORT_SENDS_PARTITION, "since": partition_key(since)},
                )
            )
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self.error("reading the report sends", exc) from exc
        return dict(max(rows, key=lambda row: str(row["RowKey"]))) if rows else None

    def check(self) -> tuple[bool, str]:
        """Whether the table can be reached, and why (no secrets), for /api/health."""
        try:
            pages = self.client.query_entities(
                "PartitionKey eq @pk",
                parameters={"pk": "health"},
                select=["PartitionKey"],
                results_per_page=1,
                retry_total=0,
                connection_timeout=5,
                read_timeout=10,
            ).by_page()
            next(pages, None)
        except ResourceNotFoundError:
            return True, f"{self.description} is reachable; the table is created by the first summary run"
        except Exception as exc:
            error = (
                self.error("checking the summary table", exc)
                if isinstance(exc, AzureError)
                else SummaryStoreError(redact(f"checking the summary table: {type(exc).__name__}", self.secrets))
            )
            return False, error.detail
        return True, f"{self.description} is reachable"
