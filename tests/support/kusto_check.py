"""Check KQL with Microsoft's own Kusto parser and semantic analyzer.

Runs ``tools/kusto-check/check.js`` (``@kusto/language-service-next``, the Bridge.NET
build of Kusto.Language) in ONE node process per call, binding every query against a
database that holds the given tables (by default the ACS Email tables from
``shared.schemas.kusto_schema()``).

Not a test module: tests import ``check_queries`` / ``assert_valid_kql`` from here.
The node dependencies are never installed at test time; run
``npm ci --prefix tools/kusto-check`` once.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKER_DIR = REPO_ROOT / "tools" / "kusto-check"
CHECKER_SCRIPT = CHECKER_DIR / "check.js"
_PACKAGE_JSON = CHECKER_DIR / "node_modules" / "@kusto" / "language-service-next" / "package.json"

#: Seconds one batch may take; a few hundred queries take a few seconds.
TIMEOUT_SECONDS = 300

Diagnostic = dict[str, Any]


class KustoCheckUnavailable(RuntimeError):
    """node or the checker's node_modules are missing."""


def _default_schema() -> dict[str, dict[str, str]]:
    try:
        from shared.schemas import kusto_schema
    except ModuleNotFoundError:
        # Run from somewhere that does not put the repo root on sys.path.
        sys.path.insert(0, str(REPO_ROOT))
        from shared.schemas import kusto_schema
    return kusto_schema()


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise KustoCheckUnavailable("kusto-check needs Node.js (`node`) on PATH")
    if not _PACKAGE_JSON.is_file():
        raise KustoCheckUnavailable(
            f"kusto-check node_modules are missing ({_PACKAGE_JSON.parent} not found); "
            "run `npm ci --prefix tools/kusto-check` from the repository root"
        )
    return node


def _default_functions() -> dict[str, str]:
    """The workspace functions we deploy (the code and provider catalogs), by alias -> body."""
    from shared.codes import kql_catalog_functions
    from shared.providers import kql_provider_functions

    return {**kql_catalog_functions(), **kql_provider_functions()}


def run_checker(
    queries: Iterable[str],
    schema: Mapping[str, Mapping[str, str]] | None = None,
    *,
    analyzers: bool = False,
    functions: Mapping[str, str] | None = None,
) -> list[list[Diagnostic]]:
    """Every diagnostic (errors, warnings, ...) per query, in input order.

    ``functions`` declares stored functions without parameters (alias -> body); by default the code-catalog
    functions that infra/ deploys into the workspace, so both forms of a query can be checked.

    Each diagnostic has ``severity``, ``code``, ``category``, ``message``, ``start``,
    ``length`` and ``source`` (``compiler``, ``analyzer`` or ``checker``).
    ``analyzers=True`` also runs Kusto.Language's editor analyzers (style advice such as
    deprecated functions), reported as warnings.
    """
    query_list = list(queries)
    for i, query in enumerate(query_list):
        if not isinstance(query, str):
            raise TypeError(f"query {i} is {type(query).__name__}, not str")
    if not query_list:
        return []
    node = _node()
    request = {
        "schema": _default_schema() if schema is None else {t: dict(c) for t, c in schema.items()},
        "functions": _default_functions() if functions is None else dict(functions),
        "queries": query_list,
        "analyzers": analyzers,
    }
    proc = subprocess.run(
        [node, str(CHECKER_SCRIPT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kusto-check failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
    results = json.loads(proc.stdout)
    if len(results) != len(query_list):
        raise RuntimeError(f"kusto-check returned {len(results)} results for {len(query_list)} queries")
    by_index: dict[int, list[Diagnostic]] = {int(r["index"]): list(r["diagnostics"]) for r in results}
    return [by_index[i] for i in range(len(query_list))]


def check_queries(queries: list[str], schema: dict[str, dict[str, str]] | None = None) -> list[list[dict[str, Any]]]:
    """Error diagnostics per query (an empty list means the query is valid)."""
    return [[d for d in diags if d["severity"] == "Error"] for diags in run_checker(queries, schema)]


def _excerpt(query: str, start: int, length: int) -> str:
    """The line of ``query`` holding ``start`` with carets under the span."""
    start = max(0, min(start, len(query)))
    line_start = query.rfind("\n", 0, start) + 1
    line_end = query.find("\n", start)
    if line_end == -1:
        line_end = len(query)
    line_no = query.count("\n", 0, line_start) + 1
    line = query[line_start:line_end]
    column = start - line_start
    width = max(1, min(length, len(line) - column)) if length > 0 else 1
    prefix = f"{line_no:>4} | "
    return f"{prefix}{line}\n{' ' * (len(prefix) + column)}{'^' * width}"


def format_failures(queries: list[str], errors: list[list[Diagnostic]]) -> str:
    """Human-readable report of every failing query, its diagnostics and excerpts."""
    parts: list[str] = []
    for index, (query, diags) in enumerate(zip(queries, errors, strict=True)):
        if not diags:
            continue
        lines = [f"--- query {index}: {len(diags)} error(s)", query.rstrip(), ""]
        for d in diags:
            lines.append(f"{d['severity']} {d['code']} at {d['start']}+{d['length']}: {d['message']}")
            lines.append(_excerpt(query, int(d["start"]), int(d["length"])))
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def assert_valid_kql(queries: str | Iterable[str], schema: dict[str, dict[str, str]] | None = None) -> None:
    """Raise AssertionError listing every query Kusto.Language reports errors for."""
    query_list = [queries] if isinstance(queries, str) else list(queries)
    errors = check_queries(query_list, schema)
    failing = sum(1 for diags in errors if diags)
    if failing:
        raise AssertionError(
            f"{failing} of {len(query_list)} KQL queries have Kusto errors:\n\n" + format_failures(query_list, errors)
        )
