"""The SMTP / enhanced status code catalog: data integrity, lookups and the KQL rendering."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import duckdb_kql
import pytest

from shared import codes
from shared.codes import (
    CATALOG_FUNCTIONS,
    CATALOG_TABLES,
    FAILURE_CATEGORIES,
    CodeInfo,
    catalog_entries,
    explain_enhanced,
    explain_smtp,
    infer_bounce,
    kql_catalog_function_lets,
    kql_catalog_functions,
    kql_catalog_lets,
)

# RFC 5321 replies, RFC 7504 (521, 556) and RFC 4954 AUTH replies.
REQUIRED_SMTP = [
    "211", "214", "220", "221", "250", "251", "252", "354",
    "421", "450", "451", "452", "455",
    "500", "501", "502", "503", "504", "550", "551", "552", "553", "554", "555",
    "521", "556",
    "530", "535", "538", "432", "454", "534",
]  # fmt: skip

# Every Y.Z of the IANA "SMTP Enhanced Status Codes" registry (X.0.0 .. X.7.30).
IANA_SUBJECT_DETAILS = (
    ["0.0"]
    + [f"1.{z}" for z in range(11)]
    + [f"2.{z}" for z in range(5)]
    + [f"3.{z}" for z in range(7)]
    + [f"4.{z}" for z in range(8)]
    + [f"5.{z}" for z in range(7)]
    + [f"6.{z}" for z in range(11)]
    + [f"7.{z}" for z in range(31)]
)

ENHANCED_RE = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
BOUNCES = {"hard", "soft", "none"}


def _all_entries() -> list[dict[str, Any]]:
    data = catalog_entries()
    return [*data["smtp"], *data["enhanced"], *data["subjects"], *data["classes"]]  # type: ignore[list-item]


# ---------------------------------------------------------------------------- data integrity


def test_top_level_shape() -> None:
    data = catalog_entries()
    assert data["version"] == 1
    assert tuple(data["failureCategories"]) == FAILURE_CATEGORIES
    assert len(FAILURE_CATEGORIES) == 12


def test_every_required_smtp_code_is_present_and_unique() -> None:
    smtp = [e["code"] for e in catalog_entries()["smtp"]]
    assert len(smtp) == len(set(smtp))
    missing = sorted(set(REQUIRED_SMTP) - set(smtp))
    assert missing == []
    assert all(re.fullmatch(r"[2-5]\d\d", code) for code in smtp)


def test_enhanced_codes_are_well_formed_and_unique() -> None:
    enhanced = [e["code"] for e in catalog_entries()["enhanced"]]
    assert all(ENHANCED_RE.match(code) for code in enhanced), [c for c in enhanced if not ENHANCED_RE.match(c)]
    assert len(enhanced) == len(set(enhanced))


def test_every_iana_registry_code_is_present_in_at_least_one_class() -> None:
    standard = {e["code"] for e in catalog_entries()["enhanced"] if "provider" not in e}
    for yz in IANA_SUBJECT_DETAILS:
        assert any(f"{klass}.{yz}" in standard for klass in "245"), yz
    # Expansion per class: the classes each code applies to.
    for code in ("2.0.0", "4.0.0", "5.0.0", "4.1.1", "5.1.1", "2.1.5", "4.2.2", "5.2.2",
                 "4.7.28", "5.7.28", "2.7.0", "5.7.30", "4.7.12", "5.1.10"):  # fmt: skip
        assert code in standard, code


def test_provider_entries_are_not_registry_codes() -> None:
    """Provider codes add keys the registry lacks; reused IANA codes are not duplicated."""
    registry = {e["code"] for e in catalog_entries()["enhanced"] if "provider" not in e}
    providers = [e for e in catalog_entries()["enhanced"] if "provider" in e]
    assert {e["provider"] for e in providers} >= {"Microsoft 365", "Gmail"}
    for entry in providers:
        assert entry["code"] not in registry
    # IANA codes only expand the registry's own subject/detail pairs.
    for code in registry:
        assert code.split(".", 1)[1] in IANA_SUBJECT_DETAILS, code


def test_categories_and_bounces_are_valid() -> None:
    for entry in _all_entries():
        assert entry["failureCategory"] in FAILURE_CATEGORIES, entry
        assert entry["bounce"] in BOUNCES, entry
        assert entry["meaning"].strip() and "\n" not in entry["meaning"], entry
        assert entry["remedy"].strip() and "\n" not in entry["remedy"], entry


def test_success_codes_are_none_and_failures_are_not() -> None:
    data = catalog_entries()
    keyed = [(e["code"], e) for e in [*data["smtp"], *data["enhanced"]]]
    keyed += [(e["subject"], e) for e in data["subjects"]]
    for key, entry in keyed:
        if key[0] in "23":
            assert (entry["failureCategory"], entry["bounce"]) == ("none", "none"), key
        else:
            assert entry["failureCategory"] != "none", key
            assert entry["bounce"] in {"hard", "soft"}, key
        if key[0] == "4":
            assert entry["bounce"] == "soft", key  # transient is never a hard bounce


def test_subject_fallback_covers_every_class_and_subject() -> None:
    subjects = {e["subject"] for e in catalog_entries()["subjects"]}
    assert subjects == {f"{c}.{y}" for c in "245" for y in range(8)}


# ---------------------------------------------------------------------------- lookups


AUTH = "authentication SPF/DKIM/DMARC"
MS = "Microsoft 365"
# (code, expected category, expected bounce, expected provider); why, on the line above.
SPOT_CHECKS = [
    # no such user
    ("5.1.1", "invalid recipient", "hard", None),
    # over quota: transient ...
    ("4.2.2", "mailbox full", "soft", None),
    # ... and treated as soft even when the server says class 5
    ("5.2.2", "mailbox full", "soft", None),
    # multiple auth checks failed; Gmail's "unauthenticated sender" / DMARC rejection
    ("5.7.26", AUTH, "hard", None),
    # mail flood; Gmail's unusual rate of unsolicited mail
    ("4.7.28", "throttling", "soft", None),
    # Microsoft 365: traffic not accepted from this IP
    ("5.7.708", "policy/reputation", "hard", MS),
    # Microsoft 365: client blocked from sending from unregistered domains
    ("5.7.750", "policy/reputation", "hard", MS),
    # Microsoft 365: banned sending IP (5.7.606-649 range)
    ("5.7.620", "policy/reputation", "hard", MS),
    # Microsoft 365: connection refused by the destination
    ("4.4.316", "network/routing", "soft", MS),
    # Gmail: From domain not aligned with SPF/DKIM
    ("4.7.32", AUTH, "soft", "Gmail"),
    # SPF validation failed (RFC 7372)
    ("5.7.23", AUTH, "hard", None),
    # message too big for the system
    ("5.3.4", "size", "hard", None),
    # success
    ("2.0.0", "none", "none", None),
]


@pytest.mark.parametrize(("code", "category", "bounce", "provider"), SPOT_CHECKS)
def test_exact_enhanced_spot_checks(code: str, category: str, bounce: str, provider: str | None) -> None:
    info = explain_enhanced(code)
    assert info.matched == "exact"
    assert info.code == code
    assert (info.failure_category, info.bounce, info.provider) == (
        category,
        bounce,
        provider,
    )


def test_gmail_and_microsoft_wording() -> None:
    assert "Gmail" in explain_enhanced("5.7.26").meaning
    assert "traffic not accepted" in explain_enhanced("5.7.708").meaning
    assert explain_enhanced("4.2.2").meaning.startswith("Temporary failure")
    assert explain_enhanced("5.2.2").meaning.startswith("Permanent failure")


def test_enhanced_normalisation() -> None:
    assert explain_enhanced(" 5.1.1\t").matched == "exact"
    assert explain_enhanced("5. 1 .1").code == "5.1.1"
    assert explain_enhanced("5.01.001").code == "5.1.1"


def test_subject_and_class_fallback() -> None:
    info = explain_enhanced("5.1.99")
    assert info.matched == "subject"
    assert (info.failure_category, info.bounce) == ("invalid recipient", "hard")
    assert "5.1.x" in info.meaning
    assert explain_enhanced("4.7.999").matched == "subject"
    assert explain_enhanced("4.7.999").bounce == "soft"
    # Subject 9 is not defined: only the class is usable.
    klass = explain_enhanced("5.9.1")
    assert (klass.matched, klass.bounce) == ("class", "hard")


@pytest.mark.parametrize("code", ["9.9.9", "3.1.1", "5.1", "5.1.1.1", "5.1000.1", "abc", "550"])
def test_enhanced_unknown(code: str) -> None:
    assert explain_enhanced(code).matched == "unknown"


@pytest.mark.parametrize("code", [None, "", "   "])
def test_not_provided(code: str | None) -> None:
    for info in (explain_enhanced(code), explain_smtp(code)):
        assert info == CodeInfo(
            code="",
            meaning="Unknown / not provided",
            failure_category="other",
            bounce="none",
            remedy=info.remedy,
            provider=None,
            matched="unknown",
        )


def test_smtp_lookups() -> None:
    assert explain_smtp("550").matched == "exact"
    assert explain_smtp("550").failure_category == "invalid recipient"
    assert explain_smtp(" 421 ").bounce == "soft"
    assert explain_smtp("250").failure_category == "none"
    fallback = explain_smtp("599")
    assert (fallback.matched, fallback.bounce) == ("class", "hard")
    assert explain_smtp("459").matched == "class"
    assert explain_smtp("299").bounce == "none"
    for bad in ("999", "99", "5.1.1", "abc", "699"):
        assert explain_smtp(bad).matched == "unknown", bad


def test_infer_bounce() -> None:
    assert infer_bounce("550", "5.1.1") == "hard"
    assert infer_bounce("552", "5.2.2") == "soft"  # enhanced code wins
    assert infer_bounce("550", "4.2.2") == "soft"
    assert infer_bounce("421", None) == "soft"  # only the smtp code
    assert infer_bounce("550", "garbage") == "hard"  # unusable enhanced code
    assert infer_bounce("550", "5.1.99") == "hard"  # subject fallback counts as known
    assert infer_bounce(None, None) is None
    assert infer_bounce("", "") is None
    assert infer_bounce("250", "2.0.0") is None  # delivered: no bounce


# ---------------------------------------------------------------------------- KQL rendering


@pytest.fixture(scope="module")
def con() -> Any:
    return duckdb_kql.connect()


def test_kql_lets_shape() -> None:
    text = kql_catalog_lets()
    assert text is kql_catalog_lets()  # memoised
    statements = [line for line in text.splitlines() if line.startswith("let ")]
    assert statements == [
        (
            "let SmtpCodeCatalog = datatable(SmtpStatusCode:string, SmtpStatusCodeDetails:string, "
            "SmtpFailureCategory:string, SmtpBounce:string)["
        ),
        (
            "let EnhancedCodeCatalog = datatable(EnhancedSmtpStatusCode:string, "
            "EnhancedSmtpStatusCodeDetails:string, EnhancedFailureCategory:string, "
            "EnhancedBounce:string)["
        ),
        (
            "let EnhancedSubjectCatalog = datatable(EnhancedSubject:string, "
            "EnhancedSubjectDetails:string, EnhancedSubjectFailureCategory:string, "
            "EnhancedSubjectBounce:string)["
        ),
    ]
    assert text.count("];\n") == 3 and text.endswith("];\n")
    data = catalog_entries()
    rows = len(data["smtp"]) + len(data["enhanced"]) + len(data["subjects"])
    assert len(text.splitlines()) == rows + 3 * 2  # one row per line


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("SmtpCodeCatalog", "smtp"),
        ("EnhancedCodeCatalog", "enhanced"),
        ("EnhancedSubjectCatalog", "subjects"),
    ],
)
def test_kql_row_counts_match_json(con: Any, table: str, key: str) -> None:
    rows = duckdb_kql.kql(con, kql_catalog_lets() + f"{table} | count").fetchall()
    assert rows == [(len(catalog_entries()[key]),)]  # type: ignore[literal-required]


def test_kql_lookup_on_real_catalog(con: Any) -> None:
    query = kql_catalog_lets() + (
        'datatable(EnhancedSmtpStatusCode:string)["5.1.1", "5.7.708", "5.2.3", "9.9.9"]\n'
        "| lookup kind=leftouter EnhancedCodeCatalog on EnhancedSmtpStatusCode\n"
        "| project EnhancedSmtpStatusCode, EnhancedSmtpStatusCodeDetails, EnhancedBounce"
    )
    got = {row[0]: row[1:] for row in duckdb_kql.kql(con, query).fetchall()}
    assert got["5.1.1"] == (explain_enhanced("5.1.1").meaning, "hard")
    assert got["5.7.708"] == (
        "Microsoft 365: " + explain_enhanced("5.7.708").meaning,
        "hard",
    )
    # 5.2.3's meaning contains an apostrophe.
    assert got["5.2.3"][0] == explain_enhanced("5.2.3").meaning
    assert "'" in got["5.2.3"][0]
    assert got["9.9.9"] == (None, None)


def test_kql_subject_fallback_join(con: Any) -> None:
    query = kql_catalog_lets() + (
        'datatable(EnhancedSmtpStatusCode:string)["5.1.99"]\n'
        '| extend EnhancedSubject = strcat(split(EnhancedSmtpStatusCode, ".")[0], ".", '
        'split(EnhancedSmtpStatusCode, ".")[1])\n'
        "| lookup kind=leftouter EnhancedSubjectCatalog on EnhancedSubject\n"
        "| project EnhancedSubjectDetails, EnhancedSubjectBounce"
    )
    assert duckdb_kql.kql(con, query).fetchall() == [(explain_enhanced("5.1.99").meaning, "hard")]


@pytest.fixture
def tricky_catalog(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A catalog whose text needs escaping: double quotes, backslashes, a tab."""
    meaning = 'Said "no" to C:\\mail\\queue\tand left'
    fake = {
        "version": 1,
        "failureCategories": list(FAILURE_CATEGORIES),
        "classes": [],
        "smtp": [{"code": "550", "meaning": 'a "b" \\', "failureCategory": "other",
                  "bounce": "hard", "remedy": "r"}],
        "enhanced": [
            {"code": "5.9.9", "meaning": meaning, "failureCategory": "other", "bounce": "hard",
             "remedy": 'Use "\\\\" carefully', "provider": 'Odd "ISP"'},
        ],
        "subjects": [{"subject": "5.9", "meaning": "\\", "failureCategory": "other",
                      "bounce": "hard", "remedy": '"'}],
    }  # fmt: skip
    kql_catalog_lets.cache_clear()
    monkeypatch.setattr(codes, "catalog_entries", lambda: fake)
    yield meaning
    kql_catalog_lets.cache_clear()


def test_kql_escaping_survives_the_engine(con: Any, tricky_catalog: str) -> None:
    lets = kql_catalog_lets()
    query = lets + (
        'datatable(EnhancedSmtpStatusCode:string)["5.9.9"]\n'
        "| lookup kind=inner EnhancedCodeCatalog on EnhancedSmtpStatusCode\n"
        "| project EnhancedSmtpStatusCodeDetails"
    )
    assert duckdb_kql.kql(con, query).fetchall() == [('Odd "ISP": ' + tricky_catalog,)]
    assert duckdb_kql.kql(con, lets + "SmtpCodeCatalog | project SmtpStatusCodeDetails").fetchall() == [('a "b" \\',)]
    subject = duckdb_kql.kql(con, lets + "EnhancedSubjectCatalog").fetchall()
    assert subject == [("5.9", "\\", "other", "hard")]


def test_workspace_functions_return_the_same_tables(con: Any) -> None:
    """Each workspace function's body is its table's datatable: the rows a function call returns are the rows
    the inline form carries (run through the engine, one table at a time)."""
    functions = kql_catalog_functions()
    assert list(functions) == [CATALOG_FUNCTIONS[name] for name in CATALOG_TABLES]
    for name, alias in CATALOG_FUNCTIONS.items():
        assert alias.startswith("AcsEmailInsights_") and alias.endswith(name)
        from_function = duckdb_kql.kql(con, f"let {name} = {functions[alias]};\n{name}").fetchall()
        inline = duckdb_kql.kql(con, kql_catalog_lets() + name).fetchall()
        assert from_function == inline and len(inline) > 10


def test_function_lets_bind_every_catalog_name() -> None:
    lets = kql_catalog_function_lets()
    assert lets.splitlines() == [f"let {name} = {CATALOG_FUNCTIONS[name]}();" for name in CATALOG_TABLES]
    assert "datatable" not in lets
