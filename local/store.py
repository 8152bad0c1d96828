"""The embedded DuckDB log store used when no Log Analytics workspace is configured.

The tables are exactly the documented columns of :mod:`shared.schemas`. Exact duplicate records are
skipped on insert by comparing every column (so re-importing the same files changes nothing). Stores
written by earlier versions carry a trailing ``_RecordKey`` column (an md5 of the row, no longer used);
they are read and written as they are, the column left empty for new rows.

Every table also has a store-side column ``_IngestedAt`` (:data:`INGESTED_AT`, TIMESTAMP, UTC): when the
row was stored, the time of the transaction that inserted it (its default, so importers, the sample and
any other writer set it without naming it). It is the embedded equivalent of Log Analytics'
``ingestion_time()`` and what the delivery-state follower reads by (:mod:`shared.state.follower`). A
writable open adds it to a store written before it existed, filled there with each row's
``TimeGenerated`` (what the follower read such stores by); a read-only open accepts a store without it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from pathlib import Path

import duckdb

from shared import schemas
from shared.errors import Conflict, ServiceError, UpstreamFailure

#: Trailing column of stores written by earlier versions (an md5 duplicate key), tolerated and left empty.
RECORD_KEY = "_RecordKey"
#: Store-side arrival time of each row (see the module docstring); the follower's name for it is the same.
INGESTED_AT = "_IngestedAt"
#: The insert transaction's start time, in UTC, as the TIMESTAMP the schema's times are.
_INGESTED_AT_DEFAULT = "(get_current_timestamp() AT TIME ZONE 'UTC')"


#: Columns that tell most records of a table apart: exact duplicates agree on them (and on every other).
_DUPLICATE_PROBE = ("TimeGenerated", "CorrelationId", "RecipientId", "DeliveryStatus", "EngagementType")


class StoreSchemaError(ServiceError):
    """An existing store's tables do not have the documented columns."""


class StoreBusy(Conflict):
    """Another process holds the store (a writer, or an import already running): try again when it is done."""


class StoreInaccessible(UpstreamFailure):
    """The store cannot be opened or written here: a read-only file or folder, no permission, not a DuckDB file."""


_LOCK_HOLDER = re.compile(r"\(PID (\d+)\)")


def store_error(path: str | Path, error: BaseException) -> ServiceError:
    """The :class:`ServiceError` (one line, no traceback) for a DuckDB or OS error opening the store at *path*."""
    text = str(error)
    if "Conflicting lock" in text:
        holder = _LOCK_HOLDER.search(text)
        by = f" (PID {holder[1]})" if holder else ""
        return StoreBusy(f"the local store {path} is in use by another process{by}; try again when it is done")
    if isinstance(error, OSError) and error.strerror:
        reason = error.strerror
    else:
        reason = text.splitlines()[0] if text else type(error).__name__
        reason = reason.removeprefix("IO Error: ").removeprefix("Invalid Input Error: ")
    return StoreInaccessible(f"the local store {path} cannot be opened: {reason}")


def quote(identifier: str) -> str:
    """A DuckDB identifier, double-quoted."""
    return '"' + identifier.replace('"', '""') + '"'


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables (the schema's columns) if they do not exist."""
    for statement in schemas.duckdb_create_statements():
        con.execute(statement)
    check_tables(con)
    for table in schemas.TABLES:
        _ensure_ingested_at(con, table.name)


def _ensure_ingested_at(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Add ``_IngestedAt`` to *table* if missing: existing rows get their TimeGenerated, new ones the default."""
    present = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE table_name = ? AND column_name = ? AND schema_name = 'main' "
        "AND database_name = current_database()",
        [table, INGESTED_AT],
    ).fetchall()[0][0]
    if present:
        return
    name, column = quote(table), quote(INGESTED_AT)
    con.execute(f"ALTER TABLE {name} ADD COLUMN {column} TIMESTAMP")
    con.execute(f'UPDATE {name} SET {column} = "TimeGenerated"')
    con.execute(f"ALTER TABLE {name} ALTER COLUMN {column} SET DEFAULT {_INGESTED_AT_DEFAULT}")


def ensure_indexes(con: duckdb.DuckDBPyConnection) -> None:
    """Index CorrelationId, so message lookups (trace, messageId filters) probe instead of scanning.

    Called after bulk inserts: building the index over loaded rows is cheaper than maintaining it row by
    row during the first, largest import; later imports maintain it.
    """
    for table in schemas.TABLES:
        name = quote(f"ix_{table.name}_CorrelationId")
        con.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {quote(table.name)} (CorrelationId)")


def check_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Raise :class:`StoreSchemaError` if a present table's columns differ from the schema."""
    for table in schemas.TABLES:
        rows = con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main' "
            "AND database_name = current_database() ORDER BY column_index",
            [table.name],
        ).fetchall()
        if not rows:
            continue
        present = tuple(str(row[0]) for row in rows if str(row[0]) != INGESTED_AT)
        expected = table.column_names
        if present not in (expected, (*expected, RECORD_KEY)):
            raise StoreSchemaError(
                f"table {table.name} has columns {list(present)}; expected {list(expected)} "
                f"optionally followed by {RECORD_KEY} and {INGESTED_AT}"
            )


def open_store(path: str | Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (and, when writable, create) the store at *path*, with TimeZone UTC.

    ``":memory:"`` opens a private in-memory store.
    Failures to open it raise :class:`StoreBusy` (another process holds it) or :class:`StoreInaccessible`.
    """
    database = str(path)
    try:
        if database != ":memory:" and not read_only:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(database, read_only=read_only)
    except (OSError, duckdb.Error) as error:
        raise store_error(path, error) from None
    try:
        con.execute("SET TimeZone='UTC'")
        if read_only:
            check_tables(con)
        else:
            ensure_tables(con)
    except BaseException:
        con.close()
        raise
    return con


def store_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows per table, for every schema table present in the store."""
    present = {
        str(row[0])
        for row in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND database_name = current_database()"
        ).fetchall()
    }
    counts: dict[str, int] = {}
    for table in schemas.TABLES:
        if table.name in present:
            row = con.execute(f"SELECT count(*) FROM {quote(table.name)}").fetchall()[0]
            counts[table.name] = int(row[0]) if row else 0
    return counts


def insert_staged(con: duckdb.DuckDBPyConnection, table: schemas.TableSchema, staging: str) -> tuple[int, int]:
    """Move rows from the relation *staging* (schema columns, any order) into *table*.

    Skips rows whose exact duplicate (every column equal, NULLs equal) is already stored or appears
    earlier in *staging*, and inserts in TimeGenerated order (keeps DuckDB's zone maps tight).
    Returns ``(rows read, rows inserted)``. Runs inside the caller's transaction, if any.
    """
    target = quote(table.name)
    columns = ", ".join(quote(name) for name in table.column_names)
    con.execute(f"CREATE OR REPLACE TEMP VIEW _incoming AS SELECT {columns} FROM {staging}")
    try:
        row = con.execute('SELECT count(*), min("TimeGenerated"), max("TimeGenerated") FROM _incoming').fetchall()[0]
        read = int(row[0])
        if read == 0:
            return 0, 0
        # Exact duplicates share TimeGenerated, so only that time range of the target is compared,
        # and not at all when the target holds nothing in it (zone maps make the probe cheap).
        params = {"low": row[1], "high": row[2]}
        in_range = '"TimeGenerated" BETWEEN $low AND $high'
        overlap = con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {target} WHERE {in_range} LIMIT 1)", params)
        if overlap.fetchall()[0][0]:
            # Set difference: drops what is stored and repeats within the batch, comparing every column.
            source = f"(SELECT {columns} FROM _incoming EXCEPT SELECT {columns} FROM {target} WHERE {in_range})"
        else:
            params = {}
            # Repeats within the batch (rare): rows equal in a few identifying columns are candidates
            # (every exact duplicate is one); only when there are any does DISTINCT compare every column.
            probe = ", ".join(quote(name) for name in _DUPLICATE_PROBE if name in table.column_names)
            repeated = con.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM _incoming GROUP BY hash({probe}) HAVING count(*) > 1)"
            ).fetchall()[0][0]
            source = f"(SELECT DISTINCT {columns} FROM _incoming)" if repeated else "_incoming"
        result = con.execute(
            f'INSERT INTO {target} ({columns}) SELECT {columns} FROM {source} ORDER BY "TimeGenerated"', params
        ).fetchall()
        return read, int(result[0][0])
    finally:
        # After a failure inside a transaction the drop fails too; the rollback removes _incoming.
        with contextlib.suppress(duckdb.Error):
            con.execute("DROP VIEW IF EXISTS _incoming")


def store_staged(
    con: duckdb.DuckDBPyConnection, staged: Sequence[tuple[schemas.TableSchema, str]]
) -> dict[str, tuple[int, int]]:
    """Move every staged relation into its table in one transaction (all or nothing), then index.

    *staged* pairs a table with the SQL relation holding its new rows (see :func:`insert_staged`).
    Returns ``(rows read, rows inserted)`` per table name, in the order given.
    """
    counts: dict[str, tuple[int, int]] = {}
    con.execute("BEGIN TRANSACTION")
    try:
        for table, relation in staged:
            counts[table.name] = insert_staged(con, table, relation)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    ensure_indexes(con)
    return counts
