"""Every query the builder can emit passes Microsoft's Kusto parser and semantic analyzer, in both engine
forms, with representative and hostile parameters; hostile values cannot change a query's structure."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime
from typing import Any

import pytest

from local.embedded import DuckDbSource, embedded_kusto_schema
from local.store import open_store
from shared.insights import Insights, PageCursor, _filters_fingerprint
from shared.kql.builder import Filters, build_completeness_query
from shared.kql.literals import parse_literal
from shared.kql.query import KqlQuery, from_log_analytics_text
from shared.models import (
    BouncesParams,
    EngagementParams,
    RecipientParams,
    SearchParams,
    StatsParams,
    TimeSeriesParams,
    TraceParams,
)
from shared.signing import Signer

from kusto_check import assert_valid_kql

NOW = datetime(2026, 3, 12, 12, 0, tzinfo=UTC)

HOSTILE = [
    'x" | project secret',
    "a'b\\\"c\\",
    'q"; drop table ACSEmailSendMailOperational; //',
    "union * | take 1",
    "\u00e9\u00e8\u2603 \U0001f4e7",
    "let x = 1;",
    'h"z"',
]
HOSTILE_ADDRESSES = [
    "o'brien|x@contoso.com",
    '"we\\"ird@x"@example.org',
    "a.b+tag=1@xn--bcher-kva.example",
    "union*{take}@evil.com",
]
HOSTILE_SENDERS = ["DoNotReply", "x'or'1'='1", "a|b", "{}~!#$%&*+/=?^_`"]

SEARCH_VARIANTS: list[dict[str, Any]] = [
    {},
    {"recipient": "alice@contoso.com"},
    {"recipientDomain": "gmail.com", "status": "Bounced", "bounceType": "hard"},
    {"sender": "DoNotReply@contoso.com", "minDurationSeconds": 10, "minSizeMb": 1.5, "hasAttachments": True},
    {
        "internetMessageId": "<abc@contoso.com>",
        "messageId": "8a3c1e2f-0d7b-4f4e-9a51-3b6a1f0c9d21",
        "hasAttachments": False,
        "bounceType": "soft",
    },
    {
        "resourceId": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
        "Microsoft.Communication/CommunicationServices/acs"
    },
    *({"recipient": address} for address in HOSTILE_ADDRESSES),
    *({"sender": sender} for sender in HOSTILE_SENDERS),
    *({"internetMessageId": value.replace(" ", "_")} for value in HOSTILE),
]


@pytest.fixture(scope="module")
def insights() -> Insights:
    return Insights(DuckDbSource(":memory:", connection=open_store(":memory:")), clock=lambda: NOW)


def all_queries(insights: Insights) -> list[KqlQuery]:
    queries = [
        insights.trace_query(TraceParams(message_id=m, lookback_days=d))
        for m, d in [("m-1", 7), ("8a3c1e2f-0d7b-4f4e-9a51-3b6a1f0c9d21", 90), ("a.b:c_d-e", 1)]
    ]
    for variant in SEARCH_VARIANTS:
        params = SearchParams.model_validate(variant)
        queries.append(insights.search_query(params))
        cursor = PageCursor(NOW.replace(day=11), NOW, NOW.replace(hour=3), 2, _filters_fingerprint(params))
        queries.append(
            insights.search_query(
                SearchParams.model_validate(
                    {**variant, "continuationToken": cursor.encode(Signer.from_setting(None)), "top": 1000}
                )
            )
        )
    for kind, bin_ in itertools.product(
        ["domains", "senders", "mail-servers", "latency", "failures", "sizes"], ["5m", "1d"]
    ):
        queries.append(insights.stats_query(kind, StatsParams.model_validate({"bin": bin_, "top": 7})))
    for kind in ["hard", "soft", "all"]:
        queries.append(insights.bounces_query(BouncesParams.model_validate({"type": kind})))
    for address, sender in zip(HOSTILE_ADDRESSES, HOSTILE_SENDERS, strict=True):
        queries.append(
            insights.bounces_query(
                BouncesParams.model_validate({"recipientDomain": address.rpartition("@")[2], "sender": sender})
            )
        )
    queries.append(insights.daily_summary_query(date(2026, 3, 10)))
    queries.append(build_completeness_query(insights.window(NOW.replace(day=10), NOW)))
    for sender, scope in zip(HOSTILE_SENDERS, SCOPES, strict=False):
        queries.append(insights.stats_query("sizes", StatsParams.model_validate({"sender": sender, **scope})))
        queries.append(insights.stats_query("domains", StatsParams.model_validate({"sender": sender, **scope})))
        queries.append(
            build_completeness_query(insights.window(NOW.replace(day=10), NOW), scope_filters(sender, scope))
        )
        queries.append(insights.bounces_query(BouncesParams.model_validate({"sender": sender, **scope})))
    for bin_, by, scope in itertools.product(["5m", "1d"], ["status", "domain"], SCOPES[:2]):
        queries.append(insights.timeseries_query(TimeSeriesParams.model_validate({"bin": bin_, "by": by, **scope})))
    for by, scope in itertools.product(["sender", "senderDomain", "recipientDomain"], SCOPES[:2]):
        queries.append(insights.engagement_query(EngagementParams.model_validate({"by": by, **scope})))
    for address in ["alice@contoso.com", *HOSTILE_ADDRESSES]:
        queries.append(insights.recipient_query(RecipientParams.model_validate({"address": address})))
    return queries + deliverability_queries(insights)


def deliverability_queries(insights: Insights) -> list[KqlQuery]:
    """Quota (volume, evidence, failures), sender health and mailbox providers, with hostile scopes."""
    from shared.deliverability.health import health_query
    from shared.deliverability.models import ProviderStatsParams, QuotaParams, SenderHealthParams
    from shared.deliverability.quota import quota_queries
    from shared.kql.deliverability import build_provider_stats_query
    from shared.settings import Settings

    queries: list[KqlQuery] = []
    for sender, scope in zip(HOSTILE_SENDERS, SCOPES, strict=True):
        raw = {"sender": sender, **scope}
        queries += quota_queries(insights, QuotaParams.model_validate(raw), Settings.from_env({}))
        queries.append(health_query(insights, SenderHealthParams.model_validate({**raw, "window": "7d"})))
        params = ProviderStatsParams.model_validate(raw)
        queries.append(build_provider_stats_query(Filters.from_scope(params), insights.send_window(params)))
    return queries


SCOPES: list[dict[str, Any]] = [
    {},
    {"senderDomain": "notify.contoso.com"},
    {
        "resourceId": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
        "Microsoft.Communication/CommunicationServices/acs",
        "senderDomain": "x.example",
    },
    {"senderDomain": "mail.fabrikam.com"},
]


def scope_filters(sender: str, scope: dict[str, Any]) -> Filters:
    return Filters.from_scope(StatsParams.model_validate({"sender": sender, **scope}))


@pytest.mark.slow  # the Kusto parser over every query: make test runs it, make test-fast does not
def test_every_query_passes_the_kusto_language_service(insights: Insights) -> None:
    queries = all_queries(insights)
    assert len(queries) > 40
    # Log Analytics: the documented ACS tables only (the catalog travels as datatables).
    assert_valid_kql([query.log_analytics_text() for query in queries])
    # Embedded: the same tables plus the code catalog, which the embedded store holds as tables.
    assert_valid_kql([query.embedded_text() for query in queries], schema=embedded_kusto_schema())
    # Log Analytics with the code catalog deployed as workspace functions (declared to the analyzer).
    assert_valid_kql([query.log_analytics_text(catalog_functions=True) for query in queries])


#: Bound on what one Log Analytics request carries once the catalog is a set of workspace functions (issue 10).
LOG_ANALYTICS_QUERY_BOUND = 8 * 1024


def test_every_query_is_small_when_the_workspace_functions_exist(insights: Insights) -> None:
    queries = all_queries(insights)
    largest: dict[str, int] = {}
    for query in queries:
        size = len(query.log_analytics_text(catalog_functions=True).encode())
        largest[query.operation] = max(size, largest.get(query.operation, 0))
    too_large = {operation: size for operation, size in largest.items() if size > LOG_ANALYTICS_QUERY_BOUND}
    assert not too_large, too_large
    inline = [len(query.log_analytics_text(catalog_functions=False).encode()) for query in queries]
    assert max(inline) > 40_000  # the fallback still carries the catalog


def test_catalog_form_follows_the_setting(insights: Insights, monkeypatch: pytest.MonkeyPatch) -> None:
    query = insights.stats_query("failures", StatsParams.model_validate({}))
    assert query.uses_catalog
    monkeypatch.delenv("LOG_ANALYTICS_FUNCTIONS", raising=False)
    assert query.log_analytics_text() == query.log_analytics_text(catalog_functions=False)
    monkeypatch.setenv("LOG_ANALYTICS_FUNCTIONS", "true")
    assert query.log_analytics_text() == query.log_analytics_text(catalog_functions=True)
    assert "AcsEmailInsights_EnhancedCodeCatalog()" in query.log_analytics_text()
    monkeypatch.setenv("LOG_ANALYTICS_FUNCTIONS", "false")
    assert "datatable(" in query.log_analytics_text()


#: Kusto functions and operators that make `dynamic` values. The embedded engine drops duckdb-kql's JSON
#: branches (local.embedded.drop_json_branches) because our queries never hold one.
DYNAMIC_MAKERS = re.compile(
    r"\b(parse_json|todynamic|dynamic|pack|pack_all|pack_array|bag_pack|make_list\w*|make_set\w*|make_bag\w*"
    r"|split|extract_all|parse_xml|mv-expand|mv-apply|series_\w+|array_\w+|bag_\w+)\b"
)


def test_no_query_or_table_holds_a_dynamic_value(insights: Insights) -> None:
    assert all(kusto_type != "dynamic" for table in embedded_kusto_schema().values() for kusto_type in table.values())
    for query in all_queries(insights):
        body = query.embedded_text()
        assert not DYNAMIC_MAKERS.search(body), (query.operation, DYNAMIC_MAKERS.search(body))


def test_values_never_enter_the_body(insights: Insights) -> None:
    """Two searches with the same filters but different (hostile) values have the same body text."""
    for address_a, address_b in itertools.pairwise(HOSTILE_ADDRESSES):
        a = insights.search_query(SearchParams.model_validate({"recipient": address_a}))
        b = insights.search_query(SearchParams.model_validate({"recipient": address_b}))
        assert a.body == b.body
        assert a.embedded_text() == b.embedded_text()
        assert address_a not in a.body


@pytest.mark.parametrize("catalog_functions", [False, True])
def test_log_analytics_prelude_round_trips_exactly(insights: Insights, catalog_functions: bool) -> None:
    for variant in SEARCH_VARIANTS:
        query = insights.search_query(SearchParams.model_validate(variant))
        text = query.log_analytics_text(catalog_functions=catalog_functions)
        back = from_log_analytics_text(text, query.timespan)
        assert back.body == query.body
        assert {p.name: p.value for p in back.params} == {p.name: p.value for p in query.params}
        # one `let` line per parameter, nothing more: no value could add a statement
        prelude = [line for line in text.split("\n") if line.startswith("let p_")]
        assert len(prelude) == len(query.params)


def test_recipient_addresses_only_as_obfuscated_literals(insights: Insights) -> None:
    for address, history in itertools.product(HOSTILE_ADDRESSES, [False, True]):
        query = (
            insights.recipient_query(RecipientParams.model_validate({"address": address}))
            if history
            else insights.search_query(SearchParams.model_validate({"recipient": address}))
        )
        text = query.log_analytics_text()
        (line,) = [line for line in text.split("\n") if line.startswith("let p_recipient =")]
        literal = line.removeprefix("let p_recipient = ").removesuffix(";")
        assert literal.startswith('h"')
        assert parse_literal(literal) == address
        outside = text.replace(line, "")
        assert address not in outside and address.split("@")[0] not in outside


def test_hostile_values_run_harmlessly_on_duckdb(insights: Insights) -> None:
    for variant in SEARCH_VARIANTS[6:]:
        page = insights.search(SearchParams.model_validate(variant))
        assert page.value == []


def test_every_table_is_bounded_by_time(insights: Insights) -> None:
    for query in all_queries(insights):
        for view in ("SendMail", "StatusUpdates"):
            for match in re.finditer(rf"= {view}\b", query.body):
                following = query.body[match.end() : match.end() + 120]
                assert "TimeGenerated >= p_from" in following, (query.operation, view)
        start, end = query.timespan
        assert start < end


def test_filters_land_before_the_join(insights: Insights) -> None:
    query = insights.search_query(SearchParams.model_validate(SEARCH_VARIANTS[3] | SEARCH_VARIANTS[1]))
    join_at = query.body.index("| join kind=inner (Finals)")
    for fragment in (
        "RecipientId =~ p_recipient",
        "SenderUsername =~ p_sender_username",
        "Size >= p_min_size_mb",
        "AttachmentsCount > 0",
    ):
        assert query.body.index(fragment) < join_at, fragment
    message = insights.search_query(SearchParams.model_validate({"messageId": "m-1"}))
    # on both sides where the column exists
    assert message.body.count("CorrelationId == p_message_id") == 2


@pytest.mark.slow  # the Kusto parser over every query: make test runs it, make test-fast does not
def test_log_analytics_form_survives_workspaces_without_newer_columns(insights: Insights) -> None:
    """Older workspaces lack InternetMessageId, RecipientMailServerHostName, TrafficSource: still no errors."""
    from shared.schemas import TABLES

    older = {table.name: {c: t for c, t in table.columns if c not in table.optional} for table in TABLES}
    assert "InternetMessageId" not in older["ACSEmailStatusUpdateOperational"]
    queries = all_queries(insights)
    assert_valid_kql([query.log_analytics_text() for query in queries], schema=older)
