"""A query as we send it: one body, its parameters, and the two engine forms.

The body is the same text for both engines. Only the prelude differs:

* Log Analytics: ``let p_x = <literal>;`` for each value (recipient addresses as obfuscated
  ``h"..."`` literals) and ``let`` views of each table that add columns older workspaces lack
  with ``column_ifexists``. The code catalog travels as datatables, or, where infra/ deployed it
  as workspace functions (LOG_ANALYTICS_FUNCTIONS=true), as three short calls of them.
* Embedded (DuckDB + duckdb-kql): ``declare query_parameters(...)`` so values are bound, never
  part of the text, and plain views. The translation is cached per text, so each template is
  translated once per process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared import settings
from shared.codes import kql_catalog_function_lets, kql_catalog_lets
from shared.kql.literals import literal, parse_literal
from shared.providers import kql_provider_function_lets, kql_provider_lets
from shared.schemas import ENGAGEMENT, SEND_MAIL, STATUS_UPDATE, TableSchema

#: View name used in query bodies -> the table it reads.
VIEWS: dict[str, TableSchema] = {"SendMail": SEND_MAIL, "StatusUpdates": STATUS_UPDATE, "Engagements": ENGAGEMENT}

_DEFAULTS = {"string": '""', "int": "int(null)", "real": "real(null)", "datetime": "datetime(null)"}


@dataclass(frozen=True)
class Param:
    name: str
    kusto_type: str
    value: object
    #: Render as an obfuscated literal (PII such as recipient addresses) in the Log Analytics form.
    obfuscated: bool = False


@dataclass(frozen=True)
class KqlQuery:
    operation: str
    body: str
    params: tuple[Param, ...]
    #: The time range the query reads (widest of its table filters); sent as the API `timespan`.
    timespan: tuple[datetime, datetime]

    @property
    def uses_catalog(self) -> bool:
        """Whether the body joins the code catalog (SmtpCodeCatalog, EnhancedCodeCatalog, ...)."""
        return "CodeCatalog" in self.body or "SubjectCatalog" in self.body

    @property
    def uses_providers(self) -> bool:
        """Whether the body joins the mailbox provider catalog (shared.providers)."""
        return "MailboxProvider" in self.body

    def _views_used(self) -> list[str]:
        return [name for name in VIEWS if re.search(rf"\b{name}\b", self.body)]

    def log_analytics_text(
        self, expressions: dict[str, str] | None = None, *, catalog_functions: bool | None = None
    ) -> str:
        """The Log Analytics form. ``expressions`` replaces parameter values by fixed KQL expressions
        (e.g. ``ago(6h)``) for the committed workbook and alert queries; never for user input.
        ``catalog_functions``: call the code-catalog workspace functions instead of carrying the catalog
        (default: the LOG_ANALYTICS_FUNCTIONS setting)."""
        if catalog_functions is None:
            catalog_functions = workspace_functions_deployed()
        expressions = expressions or {}
        lines = [
            f"let {p.name} = {expressions.get(p.name) or literal(p.value, p.kusto_type, obfuscated=p.obfuscated)};"
            for p in self.params
        ]
        for view in self._views_used():
            lines.append(log_analytics_view(view))
        if self.uses_catalog:
            # Log Analytics has no tables of ours: the catalog is a set of workspace functions when infra/
            # deployed them, else it travels with the query as datatables (~42 KB).
            lines.append((kql_catalog_function_lets() if catalog_functions else kql_catalog_lets()).rstrip("\n"))
        if self.uses_providers:
            lines.append((kql_provider_function_lets() if catalog_functions else kql_provider_lets()).rstrip("\n"))
        return "\n".join([*lines, self.body])

    def embedded_text(self) -> str:
        """The embedded form: the code catalog is a set of tables of the embedded store."""
        lines = []
        if self.params:
            declared = ", ".join(f"{p.name}:{p.kusto_type}" for p in self.params)
            lines.append(f"declare query_parameters({declared});")
        for view in self._views_used():
            lines.append(f"let {view} = {VIEWS[view].name};")
        return "\n".join([*lines, self.body])

    def embedded_parameters(self) -> dict[str, object]:
        return {p.name: p.value for p in self.params}


def workspace_functions_deployed() -> bool:
    """LOG_ANALYTICS_FUNCTIONS: whether the workspace holds the code-catalog functions (infra/ sets it)."""
    return (settings.get("LOG_ANALYTICS_FUNCTIONS") or "").strip().lower() == "true"


def log_analytics_view(view: str) -> str:
    table = VIEWS[view]
    if table.may_be_absent:
        # A table a workspace may not have at all: the empty datatable gives the union its columns when it is
        # missing (isfuzzy ignores the missing table), so every column the queries read exists either way.
        columns = ", ".join(f"{name}:{kusto_type}" for name, kusto_type in table.columns)
        return f"let {view} = union isfuzzy=true {table.name}, (datatable({columns})[]);"
    if not table.optional:
        return f"let {view} = {table.name};"
    extends = ", ".join(
        f'{column} = column_ifexists("{column}", {_DEFAULTS[table.type_of(column)]})'
        for column in sorted(table.optional)
    )
    return f"let {view} = {table.name}\n    | extend {extends};"


_LET_VALUE = re.compile(r"^let (p_[A-Za-z0-9_]+) = (.*);$")


def _kusto_type_of(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "real"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, timedelta):
        return "timespan"
    return "string"


def from_log_analytics_text(text: str, timespan: tuple[datetime, datetime]) -> KqlQuery:
    """Read the Log Analytics form of one of our queries back into a KqlQuery.

    The loopback stand-in of the Log Analytics API uses this to answer from the embedded store.
    """
    params: list[Param] = []
    lines = text.split("\n")
    index = 0
    while index < len(lines) and (match := _LET_VALUE.match(lines[index])):
        value = parse_literal(match.group(2))
        params.append(Param(match.group(1), _kusto_type_of(value), value))
        index += 1
    body = "\n".join(lines[index:])
    for view in VIEWS:
        body = body.replace(log_analytics_view(view) + "\n", "", 1)
    body = body.replace(kql_catalog_lets(), "", 1).replace(kql_catalog_function_lets(), "", 1)
    body = body.replace(kql_provider_lets(), "", 1).replace(kql_provider_function_lets(), "", 1)
    return KqlQuery("adhoc", body, tuple(params), timespan)
