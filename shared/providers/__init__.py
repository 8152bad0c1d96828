"""Mailbox providers: which provider (Google, Microsoft 365, Yahoo/AOL, a filtering gateway...) received a recipient.

The data lives in ``catalog.json`` next to this module: host-name suffixes of receiving mail servers (the
``RecipientMailServerHostName`` of a status event) and well-known recipient domains. It is the one source for
Python (:func:`provider_of`, used for trace recipients and search rows) and for KQL, where the same rows are
tables joined with ``lookup`` (:data:`PROVIDER_ENRICHMENT`): datatables in the Log Analytics form, workspace
functions when infra/ deployed them, tables of the embedded store locally. A test holds both to one answer.

The rule, in this order: the longest catalog suffix that ends the host name on a label boundary (a host
``mx1.contoso-com.mail.protection.outlook.com`` is Microsoft 365, ``aspmx.l.google.com`` Google); else the
recipient domain's provider (``gmail.com`` is Google even on a Suppressed row without a host); else ``Other``
when a host was reported, ``Unknown`` when none was.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import TypedDict, cast

from shared.kql.literals import string_literal

__all__ = [
    "OTHER",
    "PROVIDER_ENRICHMENT",
    "PROVIDER_FUNCTIONS",
    "PROVIDER_TABLES",
    "UNKNOWN",
    "host_depths",
    "kql_provider_function_lets",
    "kql_provider_functions",
    "kql_provider_lets",
    "provider_names",
    "provider_of",
    "provider_rows",
]

#: A host was reported but matches no catalog suffix (and the domain is not a listed one).
OTHER = "Other"
#: No host was reported (e.g. a Suppressed recipient) and the domain is not a listed one.
UNKNOWN = "Unknown"


class ProviderEntry(TypedDict):
    name: str
    hosts: list[str]
    domains: list[str]


@cache
def _entries() -> tuple[ProviderEntry, ...]:
    raw = json.loads(resources.files(__package__).joinpath("catalog.json").read_text(encoding="utf-8"))
    return tuple(cast(list[ProviderEntry], raw["providers"]))


def provider_names() -> tuple[str, ...]:
    return tuple(entry["name"] for entry in _entries())


@cache
def _hosts() -> dict[str, str]:
    return {suffix.lower(): entry["name"] for entry in _entries() for suffix in entry["hosts"]}


@cache
def _domains() -> dict[str, str]:
    return {domain.lower(): entry["name"] for entry in _entries() for domain in entry["domains"]}


@cache
def host_depths() -> tuple[int, ...]:
    """Label counts of the catalog's host suffixes, longest first (one KQL lookup each)."""
    return tuple(sorted({suffix.count(".") + 1 for suffix in _hosts()}, reverse=True))


def _suffix_pattern(depth: int) -> str:
    """The last ``depth`` labels of a host name (a trailing root dot ignored): the same regex in KQL and Python."""
    return r"([^.]+" + r"\.[^.]+" * (depth - 1) + r")\.?$"


def provider_of(host: str | None, domain: str | None) -> str:
    """The mailbox provider of one recipient (the rule in the module docstring)."""
    name = (host or "").lower()
    if name:
        for depth in host_depths():
            match = re.search(_suffix_pattern(depth), name)
            if match and match.group(1) in _hosts():
                return _hosts()[match.group(1)]
    by_domain = _domains().get((domain or "").lower())
    if by_domain:
        return by_domain
    return OTHER if name else UNKNOWN


# --------------------------------------------------------------------------- KQL


def _host_table(depth: int) -> str:
    return f"MailboxProviderHosts{depth}"


@cache
def _tables() -> dict[str, tuple[str, ...]]:
    tables: dict[str, tuple[str, ...]] = {
        _host_table(d): (f"ProviderHost{d}", f"HostProvider{d}") for d in host_depths()
    }
    tables["MailboxProviderDomains"] = ("RecipientDomain", "DomainProvider")
    return tables


#: The catalog as the tables provider enrichment joins with: name -> string columns.
PROVIDER_TABLES: dict[str, tuple[str, ...]] = _tables()
#: Table -> the alias of the workspace function that returns it.
PROVIDER_FUNCTIONS: dict[str, str] = {name: f"AcsEmailInsights_{name}" for name in PROVIDER_TABLES}


def provider_rows(table: str) -> list[tuple[str, ...]]:
    if table == "MailboxProviderDomains":
        return sorted(_domains().items())
    depth = next(d for d in host_depths() if _host_table(d) == table)
    return sorted((suffix, name) for suffix, name in _hosts().items() if suffix.count(".") + 1 == depth)


def _datatable(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    schema = ", ".join(f"{column}:string" for column in columns)
    body = ",\n".join("    " + ", ".join(string_literal(value) for value in row) for row in rows)
    return f"datatable({schema})[\n{body}\n]"


@cache
def kql_provider_lets() -> str:
    """``let`` statements carrying the provider tables as datatables (the Log Analytics form without functions)."""
    return "".join(
        f"let {name} = {_datatable(columns, provider_rows(name))};\n" for name, columns in PROVIDER_TABLES.items()
    )


@cache
def kql_provider_functions() -> dict[str, str]:
    """Workspace function alias -> its body (one provider table)."""
    return {
        PROVIDER_FUNCTIONS[name]: _datatable(columns, provider_rows(name)) for name, columns in PROVIDER_TABLES.items()
    }


def kql_provider_function_lets() -> str:
    return "".join(f"let {name} = {alias}();\n" for name, alias in PROVIDER_FUNCTIONS.items())


def _enrichment() -> str:
    """Query lines that add ``MailboxProvider`` to rows holding RecipientMailServerHostName and RecipientDomain."""
    depths = host_depths()
    suffixes = ",\n        ".join(
        f'ProviderHost{d} = extract(@"{_suffix_pattern(d)}", 1, ProviderHostName)' for d in depths
    )
    lines = [
        "    | extend ProviderHostName = tolower(RecipientMailServerHostName)",
        f"    | extend {suffixes}",
        *(f"    | lookup kind=leftouter {_host_table(d)} on ProviderHost{d}" for d in depths),
        "    | lookup kind=leftouter MailboxProviderDomains on RecipientDomain",
        "    | extend MailboxProvider = case(",
        *(f"        isnotempty(HostProvider{d}), HostProvider{d}," for d in depths),
        "        isnotempty(DomainProvider), DomainProvider,",
        f'        isnotempty(ProviderHostName), "{OTHER}",',
        f'        "{UNKNOWN}")',
    ]
    return "\n".join(lines)


#: Lines that enrich correlated rows with ``MailboxProvider`` (see the module docstring for the rule).
PROVIDER_ENRICHMENT = _enrichment()
