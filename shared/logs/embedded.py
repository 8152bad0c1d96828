"""DuckDbSource: runs the embedded form of our KQL on the local DuckDB store via duckdb-kql.

Translating a query template costs a few hundred milliseconds, so each distinct text is
translated once per process and cached; values are bound through ``declare
query_parameters`` and never become part of the SQL.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.kql.query import KqlQuery
from shared.logs.source import LogQueryError, LogQueryRejected, LogSourceUnavailable, QueryResult

if TYPE_CHECKING:
    import duckdb
    from duckdb_kql.translate import TranslationResult

_CACHE_SIZE = 256


class DuckDbSource:
    name = "embedded"

    def __init__(self, path: str | Path, *, connection: duckdb.DuckDBPyConnection | None = None) -> None:
        self.path = Path(path)
        self._connection = connection
        self._lock = threading.Lock()
        self._translations: OrderedDict[str, TranslationResult] = OrderedDict()
        self._schema: dict[str, list[str]] | None = None

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._connection is None:
                if not self.path.exists():
                    raise LogSourceUnavailable(
                        f"the embedded log store {self.path} does not exist yet: run `python -m shared sample` "
                        "or `python -m shared import PATH` first"
                    )
                from shared.logs.store import open_store

                try:
                    self._connection = open_store(self.path, read_only=True)
                except Exception as exc:  # duckdb.IOException and friends: locked or unreadable file
                    raise LogSourceUnavailable(f"the embedded log store cannot be opened: {exc}") from exc
            return self._connection

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            self._schema = None

    # -- queries ------------------------------------------------------------------------------

    def query_text(self, query: KqlQuery) -> str:
        return query.embedded_text()

    def translate(self, text: str) -> TranslationResult:
        """The SQL for one query text, translated once per process."""
        with self._lock:
            cached = self._translations.get(text)
            if cached is not None:
                self._translations.move_to_end(text)
                return cached
        import duckdb_kql

        connection = self._connect()
        if self._schema is None:
            from duckdb_kql.engine import schema

            self._schema = schema(connection)
        try:
            translated = duckdb_kql.to_sql(text, schema=self._schema)
        except duckdb_kql.KqlError as exc:
            raise LogQueryRejected(f"the embedded engine cannot run this query: {exc}") from exc
        with self._lock:
            self._translations[text] = translated
            while len(self._translations) > _CACHE_SIZE:
                self._translations.popitem(last=False)
        return translated

    def run(self, query: KqlQuery) -> QueryResult:
        from duckdb_kql.params import bind

        translated = self.translate(query.embedded_text())
        bound, unbound = bind(list(translated.declarations), query.embedded_parameters())
        if unbound:
            raise LogQueryRejected(f"parameters without a value: {', '.join(unbound)}")
        values: dict[str, Any] = {slot: value for slot, value in bound.items() if slot in translated.slots}
        values.update({k: v for k, v in translated.parameters.items() if k in translated.slots})
        cursor = self._connect().cursor()
        try:
            cursor.execute("SET TimeZone='UTC'")
            cursor.execute(str(translated), values or None)
            columns = [description[0] for description in cursor.description or []]
            rows = cursor.fetchall()
        except Exception as exc:
            raise LogQueryError(f"the embedded store failed to run the query: {exc}") from exc
        finally:
            cursor.close()
        return QueryResult(columns, rows)

    def check(self) -> tuple[bool, str]:
        try:
            connection = self._connect()
            cursor = connection.cursor()
            try:
                count = cursor.execute('SELECT count(*) FROM "ACSEmailSendMailOperational"').fetchone()
            finally:
                cursor.close()
        except LogQueryError as exc:
            return False, exc.detail
        except Exception as exc:
            return False, f"the embedded log store cannot be read: {exc}"
        return True, f"embedded store {self.path} ({count[0] if count else 0} sends)"
