"""LogAnalyticsSource end to end with the real azure-monitor-query SDK, against a loopback stand-in.

    Insights -> LogAnalyticsSource -> LogsQueryClient (retry, auth policies) -> HTTP
             -> LogAnalyticsStandIn -> from_log_analytics_text -> DuckDbSource -> DuckDB

The same use cases run directly on the DuckDbSource must give identical results; scripted faults
check the error mapping and the SDK's retries.
"""

from __future__ import annotations

import math
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from local.embedded import DuckDbSource
from local.store import open_store
from shared import deadline, schemas
from shared.insights import Insights
from shared.kql.query import KqlQuery, Param, from_log_analytics_text
from shared.logs.log_analytics import LogAnalyticsSource
from shared.logs.source import (
    LogQueryError,
    LogQueryRejected,
    LogQueryThrottled,
    LogSourceUnavailable,
    QueryResult,
)
from shared.models import BouncesParams, SearchParams, StatsParams, TraceParams
from shared.services import Services

from apphost import serve
from apphost import settings as app_settings
from la_standin import (
    WORKSPACE_ID,
    Failure,
    LogAnalyticsStandIn,
    PartialError,
    Throttle,
    kusto_datetime,
    parse_timespan,
    to_tables,
)

TOKEN = "test-token-7f3a"
RETRIES = 3
T0 = datetime(2025, 3, 10, 9, 0, 0, 123456, tzinfo=UTC)
NOW = T0 + timedelta(hours=2)
RID = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-mail/providers/"
    "Microsoft.Communication/CommunicationServices/acs-one"
)
SENDER = {"SenderUsername": "DoNotReply", "SenderDomain": "mail.example.com"}
ADDRESSES = ("alice@contoso.com", "bob@fabrikam.com", "Carol@Contoso.com", "dave@fabrikam.com", "eve@example.org")
_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_OBFUSCATED = re.compile(r'h"(?:[^"\\]|\\.)*"')


# --------------------------------------------------------------------------- the store


def _insert(con: duckdb.DuckDBPyConnection, table: schemas.TableSchema, **values: Any) -> None:
    """One hand-written row; absent strings are '' (Kusto strings are never null), other columns NULL."""
    unknown = set(values) - set(table.column_names)
    assert not unknown, unknown
    names = ", ".join(f'"{name}"' for name in table.column_names)
    row = [values.get(name, "" if kusto_type == "string" else None) for name, kusto_type in table.columns]
    con.execute(f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" * len(row))})', row)


def _send(
    con: duckdb.DuckDBPyConnection, at: datetime, message_id: str, *, size: float, recipients: int, attachments: int = 0
) -> None:
    _insert(
        con,
        schemas.SEND_MAIL,
        TimeGenerated=at,
        CorrelationId=message_id,
        Size=size,
        AttachmentsCount=attachments,
        ToRecipientsCount=recipients,
        CcRecipientsCount=0,
        BccRecipientsCount=0,
        UniqueRecipientsCount=recipients,
        _ResourceId=RID,
        OperationName="SendMail",
        Category=schemas.SEND_MAIL.category,
        Type=schemas.SEND_MAIL_TABLE,
    )


def _status(
    con: duckdb.DuckDBPyConnection, at: datetime, message_id: str, recipient: str, status: str, **values: Any
) -> None:
    _insert(
        con,
        schemas.STATUS_UPDATE,
        TimeGenerated=at,
        CorrelationId=message_id,
        RecipientId=recipient,
        DeliveryStatus=status,
        _ResourceId=RID,
        Type=schemas.STATUS_UPDATE_TABLE,
        **{**SENDER, **values},
    )


def fill(con: duckdb.DuckDBPyConnection) -> None:
    s = timedelta(seconds=1)
    # msg-1: one delivered, one hard bounce (reported), an intermediate event.
    _send(con, T0, "msg-1", size=0.05, recipients=2)
    _status(con, T0 + 1 * s, "msg-1", "alice@contoso.com", "OutForDelivery")
    _status(
        con,
        T0 + 3.5 * s,
        "msg-1",
        "alice@contoso.com",
        "Delivered",
        SmtpStatusCode="250",
        RecipientMailServerHostName="mx1.contoso.com",
        InternetMessageId="<m1@mail.example.com>",
    )
    _status(
        con,
        T0 + 7 * s,
        "msg-1",
        "bob@fabrikam.com",
        "Bounced",
        SmtpStatusCode="550",
        EnhancedSmtpStatusCode="5.1.1",
        FailureReason="BadDestination",
        IsHardBounce="true",
        FailureMessage="550 5.1.1 mailbox unknown",
        RecipientMailServerHostName="mx.fabrikam.com",
    )
    # msg-2: a soft failure (inferred from the code), one recipient still pending.
    t2 = T0 + timedelta(minutes=10)
    _send(con, t2, "msg-2", size=2.5, recipients=2, attachments=1)
    _status(
        con,
        t2 + 12 * s,
        "msg-2",
        "Carol@Contoso.com",
        "Failed",
        SmtpStatusCode="452",
        EnhancedSmtpStatusCode="4.2.2",
        FailureReason="MailboxFull",
        RecipientMailServerHostName="mx1.contoso.com",
    )
    _status(con, t2 + 2 * s, "msg-2", "dave@fabrikam.com", "OutForDelivery")
    # msg-3: delivered with a final status stamped before the send (clock skew).
    t3 = T0 + timedelta(minutes=20)
    _send(con, t3, "msg-3", size=12.0, recipients=1)
    _status(
        con,
        t3 - 2 * s,
        "msg-3",
        "eve@example.org",
        "Delivered",
        SmtpStatusCode="250",
        RecipientMailServerHostName="mx.example.org",
    )
    # msg-4: dropped at message level (no recipient), no send row.
    _status(con, T0 + timedelta(minutes=30), "msg-4", "", "Dropped", FailureReason="Policy")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, duckdb.DuckDBPyConnection]]:
    path = tmp_path_factory.mktemp("la") / "x.duckdb"
    con = open_store(path)
    fill(con)
    yield path, con
    con.close()


@pytest.fixture(scope="module")
def embedded(store: tuple[Path, duckdb.DuckDBPyConnection]) -> DuckDbSource:
    """Shared by the direct runs and the stand-in: each query text is translated once per module."""
    path, con = store
    return DuckDbSource(path, connection=con)


# --------------------------------------------------------------------------- the SDK side


class StaticCredential:
    """A TokenCredential handing out one fixed token; records the scopes asked for."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


class FailingCredential:
    """What DefaultAzureCredential does without a managed identity or login."""

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")


@pytest.fixture
def standin(embedded: DuckDbSource) -> Iterator[LogAnalyticsStandIn]:
    with LogAnalyticsStandIn(embedded, token=TOKEN) as server:
        yield server


@pytest.fixture
def credential() -> StaticCredential:
    return StaticCredential()


MakeSource = Callable[..., LogAnalyticsSource]


@pytest.fixture
def make_la(standin: LogAnalyticsStandIn, credential: StaticCredential) -> MakeSource:
    def make(**kwargs: Any) -> LogAnalyticsSource:
        options: dict[str, Any] = {
            "endpoint": standin.endpoint,
            "credential": credential,
            "retry_total": RETRIES,
            "retry_backoff_factor": 0.01,
            "retry_backoff_max": 0.05,
            **kwargs,
        }
        workspace = options.pop("workspace_id", WORKSPACE_ID)
        return LogAnalyticsSource(workspace, **options)

    return make


@pytest.fixture
def la(make_la: MakeSource) -> LogAnalyticsSource:
    return make_la()


def _small_query(message_id: str = "msg-1") -> KqlQuery:
    """A cheap query of ours (a view, a parameter) for the fault tests."""
    body = (
        "SendMail\n| where TimeGenerated >= p_from and CorrelationId == p_message_id\n"
        "| project MessageId = CorrelationId, SendTime = TimeGenerated, MessageSize = Size"
    )
    params = (Param("p_from", "datetime", T0 - timedelta(days=1)), Param("p_message_id", "string", message_id))
    return KqlQuery("test", body, params, (T0 - timedelta(days=1), NOW))


def _clock() -> datetime:
    return NOW


# --------------------------------------------------------------------------- the use cases, both ways

UseCase = Callable[[Insights], Any]

USE_CASES: dict[str, UseCase] = {
    "trace-two-recipients": lambda i: i.trace(TraceParams(message_id="msg-1")),
    "trace-pending": lambda i: i.trace(TraceParams(message_id="msg-2")),
    "trace-message-dropped": lambda i: i.trace(TraceParams(message_id="msg-4")),
    "search-all": lambda i: i.search(SearchParams(top=15)),  # the template of the first paged page
    "search-recipient": lambda i: i.search(SearchParams(recipient="BOB@fabrikam.com")),
    "search-paged": lambda i: [
        page := i.search(SearchParams(top=2)),
        i.search(SearchParams(top=2, continuation_token=page.continuation_token)),
    ],
    "stats-domains": lambda i: i.stats("domains", StatsParams()),
    "bounces-all": lambda i: i.bounces(BouncesParams()),
    "bounces-soft": lambda i: i.bounces(BouncesParams(type="soft", recipient_domain="contoso.com")),
    "quota": lambda i: _deliverability("quota", i),
    "sender-health": lambda i: _deliverability("health", i),
    "stats-providers": lambda i: _deliverability("providers", i),
}


def _deliverability(kind: str, insights: Insights) -> Any:
    from shared.deliverability.health import sender_health
    from shared.deliverability.models import ProviderStatsParams, QuotaParams, SenderHealthParams
    from shared.deliverability.providers import provider_stats
    from shared.deliverability.quota import quota
    from shared.settings import HealthThresholds, Settings

    if kind == "quota":
        return quota(insights, QuotaParams.model_validate({"from": T0 - timedelta(days=1)}), Settings.from_env({}))
    if kind == "health":
        return sender_health(insights, SenderHealthParams.model_validate({"window": "7d"}), HealthThresholds())
    return provider_stats(insights, ProviderStatsParams())


def _dump(value: Any) -> Any:
    if isinstance(value, list):
        return [_dump(item) for item in value]
    return _nan_safe(value.model_dump())


def _nan_safe(value: Any) -> Any:
    """NaN != NaN: mark it so results holding one (avg over no latency) still compare equal."""
    if isinstance(value, float) and math.isnan(value):
        return "<NaN>"
    if isinstance(value, dict):
        return {key: _nan_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan_safe(item) for item in value]
    return value


def _queries_of(name: str) -> list[KqlQuery]:
    insights = Insights(DuckDbSource(":memory:"), clock=_clock)
    queries = {
        "trace": [insights.trace_query(TraceParams(message_id="msg-1"))],
        "search": [
            insights.search_query(
                SearchParams(
                    recipient="bob@fabrikam.com",
                    min_size_mb=0.01,
                    has_attachments=False,
                    sender="DoNotReply@mail.example.com",
                )
            )
        ],
        "stats": [
            insights.stats_query("latency", StatsParams(bin="15m")),
            insights.stats_query("sizes", StatsParams()),
        ],
        "bounces": [insights.bounces_query(BouncesParams(type="hard", recipient_domain="fabrikam.com"))],
        "daily": [insights.daily_summary_query(T0.date())],
        "deliverability": _deliverability_queries(insights),
    }
    return queries[name]


def _deliverability_queries(insights: Insights) -> list[KqlQuery]:
    from shared.deliverability.models import QuotaParams
    from shared.deliverability.quota import quota_queries
    from shared.settings import Settings

    return quota_queries(insights, QuotaParams(sender_domain="mail.example.com"), Settings.from_env({}))


@pytest.mark.parametrize("name", ["trace", "search", "stats", "bounces", "daily", "deliverability"])
def test_log_analytics_text_reads_back_to_the_embedded_form(name: str) -> None:
    """The stand-in's reading of the Log Analytics text gives exactly the embedded text and values."""
    for query in _queries_of(name):
        back = from_log_analytics_text(query.log_analytics_text(), query.timespan)
        assert back.embedded_text() == query.embedded_text()
        assert back.embedded_parameters() == query.embedded_parameters()
        assert [(p.name, p.kusto_type) for p in back.params] == [(p.name, p.kusto_type) for p in query.params]


@pytest.mark.parametrize("case", list(USE_CASES))
def test_same_results_through_log_analytics_and_embedded(
    case: str, embedded: DuckDbSource, la: LogAnalyticsSource, standin: LogAnalyticsStandIn
) -> None:
    use_case = USE_CASES[case]
    direct = _dump(use_case(Insights(embedded, clock=_clock)))
    remote = _dump(use_case(Insights(la, clock=_clock)))
    assert remote == direct
    assert standin.requests and all(request.status == 200 for request in standin.requests)
    # Not vacuous: every case finds something in the store.
    first = direct[0] if isinstance(direct, list) else direct
    assert first.get("value") or first.get("recipients") or first.get("messageEvents") or first.get("messages")


def test_expected_content(embedded: DuckDbSource) -> None:
    """A few facts about the data, so the comparison above compares something meaningful."""
    insights = Insights(embedded, clock=_clock)
    trace = insights.trace(TraceParams(message_id="msg-1"))
    assert trace.state == "final" and trace.outcome == "partiallyDelivered"
    assert [(r.recipient_id, r.final_delivery_status, r.bounce_type) for r in trace.recipients] == [
        ("alice@contoso.com", "Delivered", "none"),
        ("bob@fabrikam.com", "Bounced", "hard"),
    ]
    assert insights.trace(TraceParams(message_id="msg-2")).state == "pending"
    assert insights.trace(TraceParams(message_id="msg-4")).state == "final"
    stats = insights.stats("domains", StatsParams())
    assert stats.completeness.pending_recipients == 1
    assert {row["recipientDomain"] for row in stats.value} == {"contoso.com", "fabrikam.com", "example.org"}
    # Only a clock-skewed delivery: no latency. The embedded engine says NaN (Log Analytics sends "NaN").
    skewed = next(row for row in stats.value if row["recipientDomain"] == "example.org")
    assert skewed["avgDurationSeconds"] is None or math.isnan(skewed["avgDurationSeconds"])
    page = insights.search(SearchParams(top=2))
    assert len(page.value) == 2 and page.continuation_token


def test_request_as_the_sdk_sends_it(
    make_la: MakeSource, standin: LogAnalyticsStandIn, credential: StaticCredential
) -> None:
    query = _small_query()
    result = make_la(server_timeout=42).run(query)
    assert result.records() == [{"MessageId": "msg-1", "SendTime": T0, "MessageSize": 0.05}]
    (request,) = standin.requests
    assert request.path == f"/v1/workspaces/{WORKSPACE_ID}/query"
    assert request.authorization == f"Bearer {TOKEN}"
    assert request.prefer == "wait=42"
    assert request.headers["content-type"].startswith("application/json")
    assert request.query == query.log_analytics_text()
    assert request.body["workspaces"] is None
    assert request.timespan_range() == query.timespan
    # Tokens are asked for the public Log Analytics audience even for another endpoint.
    assert credential.scopes == [("https://api.loganalytics.io/.default",)]


def test_datetimes_travel_as_log_analytics_writes_them(embedded: DuckDbSource) -> None:
    tables = to_tables(embedded.run(_small_query()))
    assert tables[0]["columns"] == [
        {"name": "MessageId", "type": "string"},
        {"name": "SendTime", "type": "datetime"},
        {"name": "MessageSize", "type": "real"},
    ]
    assert tables[0]["rows"] == [["msg-1", "2025-03-10T09:00:00.1234560Z", 0.05]]
    assert kusto_datetime(datetime(2025, 1, 2, 3, 4, 5)) == "2025-01-02T03:04:05.0000000Z"
    odd = to_tables(QueryResult(["A", "B", "C", "D"], [(None, math.nan, True, timedelta(days=1, seconds=1.5))]))
    assert [column["type"] for column in odd[0]["columns"]] == ["string", "real", "bool", "timespan"]
    assert odd[0]["rows"] == [[None, "NaN", True, "1.00:00:01.5000000"]]
    assert parse_timespan("2025-03-10T09:00:00.123456Z/2025-03-10T10:00:00Z") == (
        T0,
        T0.replace(hour=10, microsecond=0),
    )
    assert parse_timespan("2025-03-10T09:00:00.123456Z/PT3600.0S") == (T0, T0 + timedelta(hours=1))


def test_recipient_addresses_only_travel_obfuscated(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    insights = Insights(la, clock=_clock)
    page = insights.search(SearchParams(recipient="BOB@fabrikam.com"))
    assert [row.recipient_id for row in page.value] == ["bob@fabrikam.com"]
    insights.trace(TraceParams(message_id="msg-1"))
    insights.bounces(BouncesParams(type="soft", recipient_domain="contoso.com"))
    texts = standin.queries()
    assert len(texts) == 3
    assert 'let p_recipient = h"BOB@fabrikam.com";' in texts[0]
    for text in texts:
        clear = _OBFUSCATED.sub('h"…"', text)
        assert not _ADDRESS.findall(clear), _ADDRESS.findall(clear)
        for address in ADDRESSES:
            assert address.lower() not in clear.lower()


# --------------------------------------------------------------------------- throttling


def test_throttled_twice_then_answered(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    standin.script(Throttle(times=2, retry_after=0))
    started = time.monotonic()
    result = la.run(_small_query())
    assert [record["MessageId"] for record in result.records()] == ["msg-1"]
    assert [request.status for request in standin.requests] == [429, 429, 200]
    assert not standin.pending
    # The retried requests are the same request.
    assert len({request.query for request in standin.requests}) == 1
    assert time.monotonic() - started < 3


def test_retry_after_is_honoured(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    standin.script(Throttle(times=1, retry_after=1))
    started = time.monotonic()
    la.run(_small_query())
    assert time.monotonic() - started >= 0.9
    assert [request.status for request in standin.requests] == [429, 200]


def test_throttled_beyond_the_retry_budget(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    # The SDK gives up after RETRIES retries; the last answer's Retry-After reaches the caller.
    standin.script(Throttle(times=RETRIES, retry_after=0), Throttle(times=1, retry_after=7))
    with pytest.raises(LogQueryThrottled) as caught:
        la.run(_small_query())
    assert caught.value.retry_after == 7.0
    assert caught.value.status == 503
    assert len(standin.requests) == RETRIES + 1
    assert not standin.pending


def test_throttled_without_retry_after_is_retried(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    """Queries are read-only, so the source lets azure-core retry the POST on a bare 429 too."""
    standin.script(Throttle(times=1, retry_after=None))
    assert la.run(_small_query()).rows
    assert [request.status for request in standin.requests] == [429, 200]


def test_throttled_without_retry_after_defaults_to_30s(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    standin.script(Throttle(times=RETRIES + 1, retry_after=None))
    with pytest.raises(LogQueryThrottled) as caught:
        la.run(_small_query())
    assert caught.value.retry_after == 30.0
    assert len(standin.requests) == RETRIES + 1


# --------------------------------------------------------------------------- partial results


def test_partial_result_is_kept_and_flagged(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    standin.script(PartialError(message="Query exceeded the result size limit"))
    result = la.run(_small_query())
    assert isinstance(result, QueryResult)
    assert [record["MessageId"] for record in result.records()] == ["msg-1"]
    assert result.partial_error == "PartialError: Query exceeded the result size limit"


def test_partial_result_through_search(
    embedded: DuckDbSource, la: LogAnalyticsSource, standin: LogAnalyticsStandIn
) -> None:
    params = SearchParams(recipient="BOB@fabrikam.com")
    standin.script(PartialError(message="Partial query failure: low memory condition"))
    page = Insights(la, clock=_clock).search(params)
    direct = Insights(embedded, clock=_clock).search(params)
    assert page.partial is True
    assert page.warning == "PartialError: Partial query failure: low memory condition"
    assert page.value == direct.value and page.value
    assert page.model_dump(mode="json", exclude_none=True)["partial"] is True


def test_partial_result_in_stats_keeps_the_warning(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    standin.script(PartialError(message="one shard timed out"))  # one of the two parallel queries
    result = Insights(la, clock=_clock).stats("domains", StatsParams())
    assert result.partial is True
    assert result.warning == "PartialError: one shard timed out"


def test_partial_error_without_inner_message(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    standin.script(PartialError(message="Query result is incomplete", inner={"code": "-2133196347"}))
    result = la.run(_small_query())
    assert result.partial_error is not None
    assert "None" not in result.partial_error


# --------------------------------------------------------------------------- errors


def test_server_error_is_retried_then_unavailable(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    """A transient failure of the service (5xx) answers 503 with Retry-After: the same request may work later."""
    standin.script(Failure(status=500, message="Internal server error", times=RETRIES + 1))
    with pytest.raises(LogSourceUnavailable) as caught:
        la.run(_small_query())
    assert caught.value.status == 503 and caught.value.retry_after == 30.0
    assert "HTTP 500" in caught.value.detail
    assert len(standin.requests) == RETRIES + 1


def test_one_server_error_is_retried_away(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    standin.script(Failure(status=500))
    assert la.run(_small_query()).rows
    assert [request.status for request in standin.requests] == [500, 200]


def test_bad_gateway_is_retried_then_unavailable(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    standin.script(Failure(status=502, times=RETRIES + 1))
    with pytest.raises(LogSourceUnavailable) as caught:
        la.run(_small_query())
    assert caught.value.status == 503
    assert len(standin.requests) == RETRIES + 1


def test_forbidden_is_a_502_that_names_the_fix(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    """A missing role is configuration: 502, no Retry-After (retrying cannot help), the detail says what to do."""
    standin.script(Failure(status=403, message="The provided credentials have insufficient access"))
    with pytest.raises(LogQueryError) as caught:
        la.run(_small_query())
    assert not isinstance(caught.value, LogSourceUnavailable)
    assert caught.value.status == 502 and caught.value.retry_after is None
    assert caught.value.code == "InsufficientAccessError"
    assert "HTTP 403" in caught.value.detail and "Log Analytics Reader" in caught.value.detail
    assert len(standin.requests) == 1


def test_wrong_token_is_a_502_that_names_the_fix(make_la: MakeSource, standin: LogAnalyticsStandIn) -> None:
    with pytest.raises(LogQueryError) as caught:
        make_la(credential=StaticCredential("someone-elses-token")).run(_small_query())
    assert caught.value.status == 502 and "AZURE_CLIENT_ID" in caught.value.detail
    assert [request.status for request in standin.requests] == [401]


def test_unknown_workspace_is_a_502_that_names_the_setting(make_la: MakeSource, standin: LogAnalyticsStandIn) -> None:
    with pytest.raises(LogQueryError, match="LOG_ANALYTICS_WORKSPACE_ID") as caught:
        make_la(workspace_id="11111111-2222-3333-4444-555555555555").run(_small_query())
    assert caught.value.status == 502 and caught.value.retry_after is None
    assert [request.status for request in standin.requests] == [404]


def test_credential_failure_is_a_502_that_names_the_identity(make_la: MakeSource, standin: LogAnalyticsStandIn) -> None:
    with pytest.raises(LogQueryError) as caught:
        make_la(credential=FailingCredential()).run(_small_query())
    assert not standin.requests
    assert caught.value.status == 502 and "AZURE_CLIENT_ID" in caught.value.detail


def test_a_long_retry_after_answers_at_once_within_the_budget(
    la: LogAnalyticsSource, standin: LogAnalyticsStandIn
) -> None:
    """Retry-After 120 during a 5 s budget: no sleeping inside the request, 503 with the service's Retry-After."""
    standin.script(Throttle(times=1, retry_after=120))
    started = time.monotonic()
    with deadline.budget(5), pytest.raises(LogQueryThrottled) as caught:
        la.run(_small_query())
    assert time.monotonic() - started < 4
    assert caught.value.retry_after == 120.0 and caught.value.status == 503
    assert len(standin.requests) == 1


def test_a_short_retry_after_is_waited_for_within_the_budget(
    la: LogAnalyticsSource, standin: LogAnalyticsStandIn
) -> None:
    standin.script(Throttle(times=1, retry_after=1))
    with deadline.budget(10):
        assert la.run(_small_query()).rows
    assert [request.status for request in standin.requests] == [429, 200]


def test_a_server_error_whose_retry_does_not_fit_answers_503(
    la: LogAnalyticsSource, standin: LogAnalyticsStandIn
) -> None:
    standin.script(Failure(status=503, times=1, retry_after=60))
    with deadline.budget(5), pytest.raises(LogSourceUnavailable) as caught:
        la.run(_small_query())
    assert caught.value.status == 503 and caught.value.retry_after == 60.0


def test_unreachable_endpoint_means_unavailable(credential: StaticCredential) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = LogAnalyticsSource(
        WORKSPACE_ID,
        endpoint=f"http://127.0.0.1:{port}",
        credential=credential,
        retry_total=1,
        retry_backoff_factor=0.01,
        retry_backoff_max=0.05,
    )
    with pytest.raises(LogSourceUnavailable, match="could not be reached"):
        source.run(_small_query())


def test_query_the_service_cannot_run_is_rejected(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    broken = KqlQuery("broken", "SendMail | frobnicate CorrelationId", (), (T0, NOW))
    with pytest.raises(LogQueryRejected) as caught:
        la.run(broken)
    assert caught.value.code == "BadArgumentError"
    assert "recognition error" in caught.value.detail
    assert [request.status for request in standin.requests] == [400]


def test_scripted_bad_request_is_rejected(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    standin.script(
        Failure(
            status=400,
            message="The request had some invalid properties",
            innererror={"code": "SemanticError", "message": "'Sizee' is not a column"},
        )
    )
    with pytest.raises(LogQueryRejected, match="'Sizee' is not a column") as caught:
        la.run(_small_query())
    assert caught.value.status == 502
    assert len(standin.requests) == 1


# --------------------------------------------------------------------------- endpoint and health


@pytest.mark.parametrize(
    "endpoint", ["http://example.com", "http://10.0.0.5:8080", "http://localhost.evil.test", "http://127.0.0.1.nip.io"]
)
def test_plain_http_is_refused_unless_loopback(endpoint: str, credential: StaticCredential) -> None:
    with pytest.raises(ValueError, match="https"):
        LogAnalyticsSource(WORKSPACE_ID, endpoint=endpoint, credential=credential)


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:8080",
        "http://localhost:1234",
        "http://[::1]:99",
        "https://api.loganalytics.io/",
        "https://la.example.com",
    ],
)
def test_https_or_loopback_is_accepted(endpoint: str, credential: StaticCredential) -> None:
    source = LogAnalyticsSource(WORKSPACE_ID, endpoint=endpoint, credential=credential)
    assert source.endpoint == endpoint.rstrip("/")


def test_health_probe(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    ok, detail = la.check()
    assert ok, detail
    assert WORKSPACE_ID in detail
    (request,) = standin.requests
    assert request.query == "print Ok = 1"
    assert request.status == 200
    start, end = request.timespan_range() or (None, None)
    assert start is not None and end is not None and end - start == timedelta(minutes=5)


def test_health_probe_reports_failure(la: LogAnalyticsSource, standin: LogAnalyticsStandIn) -> None:
    standin.script(Failure(status=403, message="The provided credentials have insufficient access"))
    ok, detail = la.check()
    assert not ok
    assert "403" in detail and "Log Analytics Reader" in detail


def test_http_answers_a_long_throttle_with_503_within_the_request_budget(
    la: LogAnalyticsSource, standin: LogAnalyticsStandIn
) -> None:
    """The whole path: dev host -> dispatcher (budget from REQUEST_BUDGET_SECONDS) -> SDK -> stand-in (429, 120 s)."""
    standin.script(Throttle(times=1, retry_after=120))
    services = Services(app_settings(request_budget_seconds=5.0), insights=Insights(la, clock=lambda: NOW))
    started = time.monotonic()
    with serve(services) as host:
        request = urllib.request.Request(f"{host.base_url}/api/messages/msg-1")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=60)
    assert time.monotonic() - started < 10
    assert caught.value.code == 503 and caught.value.headers["Retry-After"] == "120"
    assert caught.value.headers.get_content_type() == "application/problem+json"
