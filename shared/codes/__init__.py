"""SMTP reply codes and enhanced status codes: what they mean and what a sender can do.

The data lives in ``catalog.json`` next to this module (RFC 5321/7504/4954 reply codes, the IANA
enhanced status code registry expanded per class, provider-specific codes, and a class+subject
fallback). It is loaded lazily on first use and cached.

``kql_catalog_lets()`` renders the same catalog as KQL ``let`` statements so queries can join
it server-side; every value goes through ``shared.kql.literals.string_literal``. Deployed into a Log
Analytics workspace, the same tables are stored functions (``kql_catalog_functions()``, written to
infra/functions/ by ``python -m shared.monitoring --write``) and a query only binds its names to them
(``kql_catalog_function_lets()``), which keeps ~42 KB of datatables out of every request.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, TypedDict, cast

from shared.kql.literals import string_literal

__all__ = [
    "BOUNCE_VALUES",
    "CATALOG_FUNCTIONS",
    "CATALOG_TABLES",
    "FAILURE_CATEGORIES",
    "Catalog",
    "CatalogEntry",
    "CodeInfo",
    "catalog_entries",
    "explain_enhanced",
    "explain_smtp",
    "infer_bounce",
    "kql_catalog_function_lets",
    "kql_catalog_functions",
    "kql_catalog_lets",
]

FAILURE_CATEGORIES: tuple[str, ...] = (
    "invalid recipient",
    "mailbox full",
    "mailbox disabled",
    "policy/reputation",
    "authentication SPF/DKIM/DMARC",
    "content/spam",
    "network/routing",
    "size",
    "throttling",
    "protocol",
    "other",
    "none",
)
BOUNCE_VALUES: tuple[str, ...] = ("hard", "soft", "none")

UNKNOWN_MEANING = "Unknown / not provided"

_ENHANCED_RE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_SMTP_RE = re.compile(r"^([245])\d\d$")


# One row of catalog.json; ``code`` (smtp/enhanced), ``subject`` or ``class`` is its key.
CatalogEntry = TypedDict(
    "CatalogEntry",
    {
        "code": str,
        "subject": str,
        "class": str,
        "meaning": str,
        "failureCategory": str,
        "bounce": str,
        "remedy": str,
        "provider": str,
        "source": str,
    },
    total=False,
)


class Catalog(TypedDict):
    version: int
    failureCategories: list[str]
    classes: list[CatalogEntry]
    smtp: list[CatalogEntry]
    enhanced: list[CatalogEntry]
    subjects: list[CatalogEntry]


@dataclass(frozen=True)
class CodeInfo:
    code: str
    meaning: str
    failure_category: str
    bounce: str
    remedy: str
    provider: str | None
    matched: str  # "exact" | "subject" | "class" | "unknown"


@cache
def catalog_entries() -> Catalog:
    """The parsed catalog.json (cached; treat as read-only)."""
    text = resources.files(__name__).joinpath("catalog.json").read_text(encoding="utf-8")
    raw: Any = json.loads(text)
    return cast(Catalog, raw)


@cache
def _index() -> dict[str, dict[str, CatalogEntry]]:
    data = catalog_entries()
    return {
        "smtp": {e["code"]: e for e in data["smtp"]},
        "enhanced": {e["code"]: e for e in data["enhanced"]},
        "subjects": {e["subject"]: e for e in data["subjects"]},
        "classes": {e["class"]: e for e in data["classes"]},
    }


def _info(code: str, entry: CatalogEntry, matched: str) -> CodeInfo:
    return CodeInfo(
        code=code,
        meaning=entry["meaning"],
        failure_category=entry["failureCategory"],
        bounce=entry["bounce"],
        remedy=entry["remedy"],
        provider=entry.get("provider"),
        matched=matched,
    )


def _unknown(code: str) -> CodeInfo:
    """Nothing usable: ``matched == "unknown"`` is the signal, not the bounce value."""
    return CodeInfo(
        code=code,
        meaning=UNKNOWN_MEANING if not code else f"Unrecognised status code: {code}",
        failure_category="other",
        bounce="none",
        remedy="Check the delivery details for the receiving server's response text.",
        provider=None,
        matched="unknown",
    )


def _normalise(code: str | None) -> str:
    return "".join((code or "").split())


def explain_smtp(code: str | None) -> CodeInfo:
    """Explain a 3-digit SMTP reply code: exact entry, else the 2xx/4xx/5xx class, else unknown."""
    norm = _normalise(code)
    index = _index()
    entry = index["smtp"].get(norm)
    if entry is not None:
        return _info(norm, entry, "exact")
    match = _SMTP_RE.match(norm)
    if match:
        return _info(norm, index["classes"][match.group(1)], "class")
    return _unknown(norm)


def explain_enhanced(code: str | None) -> CodeInfo:
    """Explain an enhanced status code ``X.Y.Z``: exact, else class+subject, else class, else unknown."""
    norm = _normalise(code)
    index = _index()
    match = _ENHANCED_RE.match(norm)
    if not match:
        return _unknown(norm)
    klass, subject, detail = match.group(1), int(match.group(2)), int(match.group(3))
    canonical = f"{klass}.{subject}.{detail}"
    entry = index["enhanced"].get(canonical)
    if entry is not None:
        return _info(canonical, entry, "exact")
    entry = index["subjects"].get(f"{klass}.{subject}")
    if entry is not None:
        return _info(canonical, entry, "subject")
    return _info(canonical, index["classes"][klass], "class")


def infer_bounce(smtp: str | None, enhanced: str | None) -> str | None:
    """Hard/soft from the enhanced code when it is known, else from the SMTP code, else None."""
    for info in (explain_enhanced(enhanced), explain_smtp(smtp)):
        if info.matched != "unknown" and info.bounce in ("hard", "soft"):
            return info.bounce
        if info.matched != "unknown":
            # A known success code: nothing bounced, and the other code cannot overrule it.
            return None
    return None


def _details(entry: CatalogEntry) -> str:
    provider = entry.get("provider")
    return f"{provider}: {entry['meaning']}" if provider else entry["meaning"]


def _datatable(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    schema = ", ".join(f"{column}:string" for column in columns)
    body = ",\n".join("    " + ", ".join(string_literal(value) for value in row) for row in rows)
    return f"datatable({schema})[\n{body}\n]"


#: The catalog as the three tables enrichment joins with: name -> string columns.
CATALOG_TABLES: dict[str, tuple[str, ...]] = {
    "SmtpCodeCatalog": ("SmtpStatusCode", "SmtpStatusCodeDetails", "SmtpFailureCategory", "SmtpBounce"),
    "EnhancedCodeCatalog": (
        "EnhancedSmtpStatusCode",
        "EnhancedSmtpStatusCodeDetails",
        "EnhancedFailureCategory",
        "EnhancedBounce",
    ),
    "EnhancedSubjectCatalog": (
        "EnhancedSubject",
        "EnhancedSubjectDetails",
        "EnhancedSubjectFailureCategory",
        "EnhancedSubjectBounce",
    ),
}


def catalog_rows(table: str) -> list[tuple[str, ...]]:
    """Rows of one catalog table (see ``CATALOG_TABLES``): code, details, category, bounce."""
    data = catalog_entries()
    if table == "SmtpCodeCatalog":
        return [(e["code"], _details(e), e["failureCategory"], e["bounce"]) for e in data["smtp"]]
    if table == "EnhancedCodeCatalog":
        return [(e["code"], _details(e), e["failureCategory"], e["bounce"]) for e in data["enhanced"]]
    if table == "EnhancedSubjectCatalog":
        return [(e["subject"], e["meaning"], e["failureCategory"], e["bounce"]) for e in data["subjects"]]
    raise KeyError(table)


@cache
def kql_catalog_lets() -> str:
    """``let`` statements for SmtpCodeCatalog, EnhancedCodeCatalog and EnhancedSubjectCatalog.

    Only what enrichment needs travels with every query (code, details, category, bounce); the
    remedies stay in the JSON file for Python to read.
    """
    return "".join(
        f"let {name} = {_datatable(columns, catalog_rows(name))};\n" for name, columns in CATALOG_TABLES.items()
    )


#: Catalog table -> the alias of the workspace function that returns it (Log Analytics saved functions share
#: one namespace per workspace with the user's own, hence the product prefix).
CATALOG_FUNCTIONS: dict[str, str] = {name: f"AcsEmailInsights_{name}" for name in CATALOG_TABLES}


@cache
def kql_catalog_functions() -> dict[str, str]:
    """Workspace function alias -> its body (the datatable of one catalog table)."""
    return {
        CATALOG_FUNCTIONS[name]: _datatable(columns, catalog_rows(name)) for name, columns in CATALOG_TABLES.items()
    }


def kql_catalog_function_lets() -> str:
    """``let`` statements binding the catalog names of the query body to the deployed workspace functions."""
    return "".join(f"let {name} = {alias}();\n" for name, alias in CATALOG_FUNCTIONS.items())
