"""The embedded DuckDB log store used when no Log Analytics workspace is configured.

The tables are exactly the documented columns of :mod:`shared.schemas`, plus one trailing
``_RecordKey VARCHAR`` column: an md5 over every schema column, used to skip exact duplicate
records on import (so re-importing the same files changes nothing).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb

from shared import schemas

#: Trailing column holding the exact-duplicate key of a row.
RECORD_KEY = "_RecordKey"

#: Separator between column values in the record key (ASCII unit separator).
_KEY_SEPARATOR = "chr(31)"
#: What a NULL column contributes to the record key (distinct from an empty string).
_KEY_NULL = "chr(0)"


class StoreSchemaError(RuntimeError):
    """An existing store's tables do not have the documented columns."""


def quote(identifier: str) -> str:
    """A DuckDB identifier, double-quoted."""
    return '"' + identifier.replace('"', '""') + '"'


def record_key_sql(table: schemas.TableSchema, alias: str = "") -> str:
    """SQL expression computing the ``_RecordKey`` of a row of *table*.

    Strings are stored as '' when absent (Kusto strings are never null), so only numbers and
    datetimes can be NULL; a NULL contributes a marker distinct from any value.
    """
    prefix = f"{alias}." if alias else ""
    parts = []
    for name, kusto_type in table.columns:
        column = prefix + quote(name)
        if kusto_type == "datetime":
            value = f"strftime({column}, '%Y-%m-%dT%H:%M:%S.%f')"
        elif kusto_type == "string":
            value = column
        else:
            value = f"CAST({column} AS VARCHAR)"
        parts.append(f"coalesce({value}, {_KEY_NULL})")
    return f"md5(concat_ws({_KEY_SEPARATOR}, {', '.join(parts)}))"


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables (schema columns + trailing ``_RecordKey``) if they do not exist."""
    for statement in schemas.duckdb_create_statements():
        con.execute(statement)
    for table in schemas.TABLES:
        con.execute(f"ALTER TABLE {quote(table.name)} ADD COLUMN IF NOT EXISTS {quote(RECORD_KEY)} VARCHAR")
    check_tables(con)


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
        present = tuple(str(row[0]) for row in rows)
        expected = table.column_names
        if present not in (expected, (*expected, RECORD_KEY)):
            raise StoreSchemaError(
                f"table {table.name} has columns {list(present)}; expected {list(expected)} "
                f"optionally followed by {RECORD_KEY}"
            )


def open_store(path: str | Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (and, when writable, create) the store at *path*, with TimeZone UTC.

    ``":memory:"`` opens a private in-memory store.
    """
    database = str(path)
    if database != ":memory:" and not read_only:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(database, read_only=read_only)
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


def insert_staged(
    con: duckdb.DuckDBPyConnection, table: schemas.TableSchema, staging: str, keyed: bool = False
) -> tuple[int, int]:
    """Move rows from the relation *staging* (schema columns, any order) into *table*.

    Computes ``_RecordKey``, skips rows whose exact duplicate is already stored or appears earlier
    in *staging*, and inserts in TimeGenerated order (keeps DuckDB's zone maps tight).
    With *keyed*, *staging* already carries a ``_RecordKey`` column computed by :func:`record_key_sql`.
    Returns ``(rows read, rows inserted)``. Runs inside the caller's transaction, if any.
    """
    target = quote(table.name)
    key = quote(RECORD_KEY)
    columns = ", ".join(quote(name) for name in table.column_names)
    # Rows stored by other writers (without a key) get one, so they take part in de-duplication.
    con.execute(f"UPDATE {target} SET {key} = {record_key_sql(table)} WHERE {key} IS NULL")
    if keyed:
        con.execute(f"CREATE OR REPLACE TEMP VIEW _keyed AS SELECT {columns}, {key} FROM {staging}")
    else:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _keyed AS SELECT {columns}, {record_key_sql(table)} AS {key} FROM {staging}"
        )
    try:
        row = con.execute('SELECT count(*), min("TimeGenerated"), max("TimeGenerated") FROM _keyed').fetchall()[0]
        read = int(row[0])
        if read == 0:
            return 0, 0
        source = "_keyed"
        # Exact duplicates inside the batch itself (rare): keep the first of each.
        repeated = con.execute(
            f"SELECT count(*) FROM (SELECT {key} FROM _keyed GROUP BY {key} HAVING count(*) > 1)"
        ).fetchall()[0][0]
        if repeated:
            source = f"(SELECT * FROM _keyed QUALIFY row_number() OVER (PARTITION BY {key}) = 1)"
        # Exact duplicates share TimeGenerated, so only that time range of the target is probed,
        # and not at all when the target holds nothing in it (zone maps make the check cheap).
        in_range = 't."TimeGenerated" BETWEEN $low AND $high'
        params = {"low": row[1], "high": row[2]}
        overlap = con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {target} t WHERE {in_range} LIMIT 1)", params)
        where = ""
        if overlap.fetchall()[0][0]:
            where = f"WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE t.{key} = s.{key} AND {in_range})"
        else:
            params = {}
        result = con.execute(
            f"INSERT INTO {target} ({columns}, {key}) SELECT {columns}, {key} FROM {source} s {where} "
            'ORDER BY "TimeGenerated"',
            params,
        ).fetchall()
        return read, int(result[0][0])
    finally:
        # After a failure inside a transaction the drop fails too; the rollback removes _keyed.
        with contextlib.suppress(duckdb.Error):
            con.execute(f"DROP {'VIEW' if keyed else 'TABLE'} IF EXISTS _keyed")
