"""The Kusto language check itself: it must fail bad KQL and pass good KQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import kusto_check
from kusto_check import assert_valid_kql, check_queries, run_checker

#: Left out of `make test-fast` (CI runs it): the Kusto language service's own checks on Node (~9 s in all).
pytestmark = pytest.mark.slow

SEND = "ACSEmailSendMailOperational"
STATUS = "ACSEmailStatusUpdateOperational"
ENGAGEMENT = "ACSEmailUserEngagementOperational"

VALID: dict[str, str] = {
    "simple": f"{SEND} | where TimeGenerated > ago(1d) | summarize count() by bin(TimeGenerated, 1h)",
    "query_parameters": (f"declare query_parameters(p:string); {STATUS} | where RecipientId == p"),
    "obfuscated_let": f'let p = h"a@b.com"; {STATUS} | where RecipientId == p | take 10',
    "column_ifexists": (
        f'{STATUS} | extend Host = column_ifexists("RecipientMailServerHostName", "")'
        " | where isnotempty(Host) | project TimeGenerated, Host"
    ),
    "column_ifexists_absent": (f'{SEND} | extend X = column_ifexists("NotInThisWorkspace", "") | where X == ""'),
    "arg_max_lookup_datatable": (
        "let Labels = datatable(Status:string, Label:string)"
        '["Delivered", "ok", "Failed", "bad"];\n'
        f"{STATUS}\n"
        "| where TimeGenerated between (datetime(2024-01-01) .. datetime(2024-01-02))\n"
        "| summarize arg_max(TimeGenerated, *) by CorrelationId, RecipientId\n"
        "| lookup kind=leftouter Labels on $left.DeliveryStatus == $right.Status\n"
        "| order by TimeGenerated desc\n"
        "| take 100"
    ),
    "join_and_functions": (
        f"{STATUS}\n"
        f"| join kind=inner ({SEND} | project CorrelationId, Size, SentAt = TimeGenerated)"
        " on CorrelationId\n"
        '| extend Latency = datetime_diff("second", TimeGenerated, SentAt),\n'
        '    Bucket = case(Size > 1048576, "large", Size > 1024, "medium", "small"),\n'
        '    Hard = iff(IsHardBounce == "true", 1, 0),\n'
        '    Code = extract(@"^(\\d{3})", 1, SmtpStatusCode),\n'
        '    Bag = bag_pack("size", Size), Old = pack("code", SmtpStatusCode)\n'
        "| summarize p95 = percentile(Latency, 95), Recipients = make_list(RecipientId, 100),\n"
        "    Hard = sum(Hard) by Bucket\n"
        "| top 10 by p95 desc"
    ),
    "engagement": (
        f"{ENGAGEMENT} | where EngagementType == 'Click'"
        " | summarize Clicks = count(), Users = dcount(RecipientId) by bin(TimeGenerated, 1d)"
    ),
    "standard_columns": (
        f'{SEND} | where _ResourceId has "x" and isnotempty(_SubscriptionId)'
        ' and Type == "ACSEmailSendMailOperational" | summarize sum(_BilledSize)'
    ),
}

INVALID: dict[str, str] = {
    "syntax_error": f"{SEND} | where (Size > 1 | take 5",
    "dangling_pipe": f"{SEND} | where Size > 1 |",
    "unknown_column": f"{SEND} | where NoSuchColumn == 1",
    "unknown_table": "NoSuchTable | take 1",
    "unknown_function": f"{SEND} | extend x = no_such_function(Size)",
    "type_error_predicate": f"{SEND} | where Size",
    "type_error_operator": f"{SEND} | where TimeGenerated > 5",
    "type_error_argument": f"{SEND} | extend x = strlen(TimeGenerated)",
    "datetime_diff_arity": f'{SEND} | extend d = datetime_diff("day", TimeGenerated)',
    "datetime_diff_type": f'{SEND} | extend d = datetime_diff("day", TimeGenerated, "x")',
    "undeclared_parameter": f"{STATUS} | where RecipientId == p",
    "column_lost_after_project": f"{SEND} | project Size | where CorrelationId == 'x'",
}


@pytest.fixture(scope="module")
def results() -> dict[str, list[dict[str, object]]]:
    """All named cases, checked in a single node process."""
    names = [*VALID, *INVALID]
    queries = [VALID.get(name) or INVALID[name] for name in names]
    return dict(zip(names, check_queries(queries), strict=True))


@pytest.mark.parametrize("name", list(VALID))
def test_valid_query_passes(name: str, results: dict[str, list[dict[str, object]]]) -> None:
    assert results[name] == [], kusto_check.format_failures([VALID[name]], [results[name]])


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_query_fails(name: str, results: dict[str, list[dict[str, object]]]) -> None:
    errors = results[name]
    assert errors, f"expected a Kusto error for {INVALID[name]!r}"
    for error in errors:
        assert error["severity"] == "Error"
        assert isinstance(error["code"], str) and error["code"].startswith("KS")
        assert isinstance(error["start"], int) and isinstance(error["length"], int)


def test_unknown_column_is_located(results: dict[str, list[dict[str, object]]]) -> None:
    query = INVALID["unknown_column"]
    (error,) = results["unknown_column"]
    assert error["code"] == "KS142"
    start, length = error["start"], error["length"]
    assert isinstance(start, int) and isinstance(length, int)
    assert query[start : start + length] == "NoSuchColumn"


def test_assert_valid_kql_reports_query_and_caret() -> None:
    good = VALID["simple"]
    bad = f"{SEND}\n| where NoSuchColumn == 1"
    assert_valid_kql([good])
    with pytest.raises(AssertionError) as excinfo:
        assert_valid_kql([good, bad])
    message = str(excinfo.value)
    assert "1 of 2 KQL queries" in message
    assert "query 1" in message and "KS142" in message
    assert "   2 | | where NoSuchColumn == 1\n" in message
    assert "\n" + " " * len("   2 | | where ") + "^" * len("NoSuchColumn") in message


def test_custom_schema_and_warnings_are_separate() -> None:
    schema = {"T": {"A": "long", "B": "string"}}
    queries = ['T | extend x = pack("a", A) | where B == "x"', "T | where C == 1"]
    deprecated, unknown = run_checker(queries, schema, analyzers=True)
    assert deprecated and all(d["severity"] != "Error" for d in deprecated)
    assert any(d["source"] == "analyzer" and d["severity"] == "Warning" for d in deprecated)
    assert [(d["severity"], d["code"]) for d in unknown] == [("Error", "KS142")]


def test_missing_node_modules_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kusto_check, "_PACKAGE_JSON", Path("/nonexistent/package.json"))
    with pytest.raises(kusto_check.KustoCheckUnavailable, match="npm ci --prefix tools/kusto-check"):
        check_queries([VALID["simple"]])


@pytest.mark.slow  # the Kusto parser over every query: make test runs it, make test-fast does not
def test_large_batch_runs_in_one_call(capsys: pytest.CaptureFixture[str]) -> None:
    columns = ["Size", "AttachmentsCount", "ToRecipientsCount", "UniqueRecipientsCount"]
    queries: list[str] = []
    for i in range(300):
        column = columns[i % len(columns)]
        if i % 3 == 0:
            queries.append(
                f"declare query_parameters(n:int); {SEND} | where {column} > n + {i}"
                f" | summarize percentile({column}, 95) by bin(TimeGenerated, {i % 24 + 1}h)"
            )
        elif i % 3 == 1:
            queries.append(
                f'let r = h"user{i}@example.com"; {STATUS} | where RecipientId == r'
                " | summarize arg_max(TimeGenerated, DeliveryStatus) by CorrelationId"
                f" | take {i}"
            )
        else:
            queries.append(f"{SEND} | where NoSuchColumn{i} == {i}")
    started = time.perf_counter()
    errors = check_queries(queries)
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nkusto-check: {len(queries)} queries in {elapsed:.2f}s")
    assert len(errors) == 300
    for i, diags in enumerate(errors):
        if i % 3 == 2:
            assert [d["code"] for d in diags] == ["KS142"], queries[i]
        else:
            assert diags == [], kusto_check.format_failures([queries[i]], [diags])


def test_bad_schema_is_reported() -> None:
    with pytest.raises(RuntimeError, match="unknown Kusto type 'nosuch'"):
        check_queries(["T | take 1"], {"T": {"A": "nosuch"}})
