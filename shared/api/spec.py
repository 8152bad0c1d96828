"""The one declarative list of every function this app registers: HTTP operations and triggers.

The blueprint (``shared.api.functions``), the dispatcher (``shared.api.dispatch``), the OpenAPI 3.1
document and the Power Automate connector (``shared.api.openapi``) all read ``OPERATIONS`` and
``TRIGGERS``, and nothing else. Each operation names its handler and models as real references;
they are wrapped in ``lambda`` so that importing this module (which ``function_app.py`` does at host
start, within Flex Consumption's 30 s budget) loads neither pydantic nor the Azure SDKs: only the
first request does. mypy checks every reference through the ``TYPE_CHECKING`` imports.

Path parameters are the ``{name}`` segments of the route; their schema, like every query parameter's,
comes from the operation's ``params`` model, so each pattern and enumeration is written once.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from shared.settings import QUEUE_CONNECTION

if TYPE_CHECKING:
    from pydantic import BaseModel

    from shared import models
    from shared.api import deliverability, handlers, sending, triggers
    from shared.api import suppression as suppression_handlers
    from shared.deliverability import models as deliverability_models
    from shared.sending import models as sending_models
    from shared.suppression import models as suppression_models
else:

    class _Deferred:
        """A module imported on first attribute access (so the references below cost nothing at import)."""

        def __init__(self, name: str) -> None:
            self._name = name
            self._module: ModuleType | None = None

        def __getattr__(self, attribute: str) -> Any:
            if self._module is None:
                self._module = importlib.import_module(self._name)
            return getattr(self._module, attribute)

    models = _Deferred("shared.models")
    handlers = _Deferred("shared.api.handlers")
    triggers = _Deferred("shared.api.triggers")
    suppression_handlers = _Deferred("shared.api.suppression")
    suppression_models = _Deferred("shared.suppression.models")
    deliverability = _Deferred("shared.api.deliverability")
    deliverability_models = _Deferred("shared.deliverability.models")
    sending = _Deferred("shared.api.sending")
    sending_models = _Deferred("shared.sending.models")

Auth = Literal["function", "anonymous", "admin"]
#: What a response body is: the operation's model, another model, problem+json, or a media type's text.
BodyKind = Literal["model", "problem", "csv", "html", "object", "empty"]
ModelRef = Callable[[], "type[BaseModel]"]

#: Response headers an operation may declare, with their description (one place for OpenAPI and Swagger).
HEADERS: dict[str, str] = {
    "Location": "Absolute URL: where to poll a pending answer (it carries its own short-lived credential), or the "
    "created subscription (DELETE it to unsubscribe).",
    "Retry-After": "Seconds to wait before retrying.",
}


@dataclass(frozen=True)
class Response:
    """A response besides the generic ones (400 for bad input, 401 without a key, 5XX from dependencies)."""

    status: int
    description: str
    body: BodyKind = "model"
    #: The body's model when ``body == "model"``; default: the operation's ``response`` model.
    model: ModelRef | None = None
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Webhook:
    """The operation subscribes a webhook: the connector shows it as a Power Automate trigger.

    The connector's form of the operation takes ``body`` (whose callback URL field is marked
    ``x-ms-notification-url`` in the model) and documents ``payload``, the body each push carries, as its
    created response: the flow's trigger outputs. Unsubscribing goes through the created response's
    ``Location``, an operation of its own (hidden from flow makers with ``visibility="internal"``).
    """

    summary: str  # the trigger's name in the designer, Title Case
    description: str
    body: ModelRef
    payload: ModelRef
    #: "single": one run per push; "batch": one run per array item.
    kind: Literal["single", "batch"] = "single"
    #: Other bodies the same subscriptions may push (through the API only, not the connector's trigger).
    also: tuple[ModelRef, ...] = ()

    def payloads(self) -> tuple[type[BaseModel], ...]:
        return (self.payload(), *(ref() for ref in self.also))


@dataclass(frozen=True)
class Operation:
    name: str  # function name; the operationId is its camelCase form
    method: Literal["GET", "PUT", "POST", "DELETE"]
    route: str
    auth: Auth
    tag: str
    summary: str  # Title Case, a few words (Power Automate shows it as the action name)
    description: str  # full sentences
    handler: Callable[[], Callable[..., Any]]
    #: Query and path parameters, validated together (route values win over query values of the same name).
    params: ModelRef | None = None
    #: JSON request body model (POST).
    body: ModelRef | None = None
    #: The 200 (or 201) body.
    response: ModelRef | None = None
    ok: Response = Response(200, "OK")
    responses: tuple[Response, ...] = ()
    #: Media types of the success body besides JSON ("text/csv", "text/html").
    alternates: tuple[str, ...] = ()
    #: Search-style paging: the body's ``nextLink`` (Power Automate's x-ms-pageable).
    pageable: bool = False
    #: Part of the Power Automate connector.
    connector: bool = True
    #: The connector shows it as a webhook trigger (see ``Webhook``).
    webhook: Webhook | None = None
    #: The connector's x-ms-visibility of the operation ("internal": used by the platform, not offered to makers).
    visibility: Literal["important", "advanced", "internal"] | None = None
    #: Answers 202 with a Location to poll until the final answer (its 200): marked for client generators in
    #: OpenAPI; Power Automate follows the Location itself and its action ends with the polled 200 body.
    long_running: bool = False
    #: Largest JSON request body (bytes); default ``shared.api.dispatch.MAX_BODY_BYTES``.
    max_body_bytes: int | None = None

    @property
    def operation_id(self) -> str:
        head, *rest = self.name.split("_")
        return head + "".join(word.title() for word in rest)

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(re.findall(r"{(\w+)}", self.route))


@dataclass(frozen=True)
class Timer:
    name: str
    #: App setting holding the NCRONTAB schedule (the host reads it as %NAME%).
    schedule_setting: str
    handler: Callable[[], Callable[..., Any]]
    description: str


@dataclass(frozen=True)
class QueueTrigger:
    name: str
    #: App setting holding the queue's name (the host reads it as %NAME%).
    queue_setting: str
    #: Connection setting (prefix) of the storage account holding the queue.
    connection: str
    handler: Callable[[], Callable[..., Any]]
    description: str


@dataclass(frozen=True)
class EventGridTrigger:
    name: str
    handler: Callable[[], Callable[..., Any]]
    description: str


DELIVERABILITY = "Deliverability"
MESSAGES, STATISTICS, BOUNCES, SUMMARIES, SUBSCRIPTIONS, OPERATIONS_TAG, RECIPIENTS = (
    "Messages",
    "Statistics",
    "Bounces",
    "Summaries",
    "Subscriptions",
    "Operations",
    "Recipients",
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "trace_message",
        "GET",
        "messages/{messageId}",
        "function",
        MESSAGES,
        "Trace a Message",
        "Returns what happened to one message: its send, its message-level events and every recipient's final "
        "status and timeline. The answer is 200 when every recipient is final, 202 while some are pending (poll the "
        "Location) and 404 while nothing is logged yet.",
        handler=lambda: handlers.trace_message,
        params=lambda: models.TraceParams,
        response=lambda: models.TraceResult,
        ok=Response(200, "The message reached a final state for every recipient."),
        responses=(
            Response(
                202,
                "Some recipients have no final status yet: poll the Location after Retry-After seconds.",
                headers=("Location", "Retry-After"),
            ),
            Response(
                404,
                "Nothing is logged for this message yet: logs arrive minutes after a send.",
                body="problem",
                headers=("Retry-After",),
            ),
        ),
    ),
    Operation(
        "register_message",
        "PUT",
        "messages/{messageId}",
        "function",
        MESSAGES,
        "Register a Sent Message",
        "Tells the service whom a message was sent to (its recipients, or their number) right after the send, "
        "so the trace lists them waiting from the first second and is final as soon as each has a final status, "
        "without waiting for the send to be logged. Repeating the same registration is harmless (200); one that "
        "contradicts the logged send or an earlier registration is refused (409).",
        handler=lambda: handlers.register_message,
        params=lambda: models.RegisterParams,
        body=lambda: models.RegisterMessageBody,
        response=lambda: models.MessageRegistration,
        ok=Response(201, "Registered."),
        responses=(
            Response(200, "The same registration was stored already."),
            Response(409, "It contradicts the logged send or an earlier registration.", body="problem"),
        ),
    ),
    Operation(
        "poll_message_trace",
        "GET",
        "messages/{messageId}/poll",
        "anonymous",
        MESSAGES,
        "Poll a Message Trace",
        "The Location a 202 trace answer gives: the same answers as the trace, without a function key. Its token is "
        "signed for this one message and expires an hour after it was issued; each 202 gives a fresh one.",
        handler=lambda: handlers.poll_message_trace,
        params=lambda: models.PollParams,
        response=lambda: models.TraceResult,
        ok=Response(200, "The message reached a final state for every recipient."),
        responses=(
            Response(
                202,
                "Still pending: poll the new Location after Retry-After seconds.",
                headers=("Location", "Retry-After"),
            ),
            Response(404, "Nothing is logged for this message yet.", body="problem", headers=("Retry-After",)),
        ),
        connector=False,
    ),
    Operation(
        "send_message",
        "POST",
        "messages",
        "function",
        MESSAGES,
        "Send an Email and Wait for Its Delivery",
        "Sends an email through Azure Communication Services (the ACS send body: senderAddress, recipients, "
        "content, attachments), registers its recipients at once, and answers 202 with the message id and a "
        "Location that polls its trace until every recipient has a final status: Power Automate follows it and "
        "the action ends with the final trace. Bad input is refused (400) before anything is sent; ACS's 429 is "
        "passed on with its Retry-After. A retried call with the same repeatabilityRequestId is the same send: "
        "the same message id, sent once.",
        handler=lambda: sending.send_message,
        body=lambda: sending_models.SendEmailBody,
        response=lambda: sending_models.SendAccepted,
        ok=Response(
            202,
            "Sent: poll the Location (the message's trace) after Retry-After seconds until it answers 200.",
            headers=("Location", "Retry-After"),
        ),
        responses=(
            Response(
                200, "What the Location answers once the message is final: its trace.", model=lambda: models.TraceResult
            ),
            Response(409, "The repeatabilityRequestId was used for a send to other recipients.", body="problem"),
            Response(
                429,
                "ACS throttles this resource's sends: retry after Retry-After.",
                body="problem",
                headers=("Retry-After",),
            ),
            Response(502, "ACS refused the app's credentials or endpoint.", body="problem"),
            Response(
                503,
                "ACS or the link key unavailable, or sending not configured (ACS_ENDPOINT / ACS_CONNECTION_STRING).",
                body="problem",
                headers=("Retry-After",),
            ),
        ),
        long_running=True,
        max_body_bytes=10 * 1024 * 1024,
        visibility="important",
    ),
    Operation(
        "search_messages",
        "GET",
        "messages",
        "function",
        MESSAGES,
        "Search Deliveries",
        "Returns one row per recipient with its final status, newest send first. Pages are linked by nextLink.",
        handler=lambda: handlers.search_messages,
        params=lambda: models.SearchParams,
        response=lambda: models.SearchPage,
        pageable=True,
    ),
    Operation(
        "get_stats_timeseries",
        "GET",
        "stats/timeseries",
        "function",
        STATISTICS,
        "Get a Delivery Time Series",
        "Returns final statuses per time bin by event time (when each recipient's final status was logged), keyed "
        "by status or recipient domain, with delivery rates and p50/p95 send-to-final latency per bin.",
        handler=lambda: handlers.get_stats_timeseries,
        params=lambda: models.TimeSeriesParams,
        response=lambda: models.TimeSeriesResult,
    ),
    Operation(
        "get_stats_engagement",
        "GET",
        "stats/engagement",
        "function",
        STATISTICS,
        "Get Engagement Rates",
        "Returns open and click rates among delivered recipients of the window's sends, by sender, sender domain "
        "or recipient domain. Engagement is logged only for verified custom domains with user engagement tracking "
        "enabled, never for Azure managed domains.",
        handler=lambda: handlers.get_stats_engagement,
        params=lambda: models.EngagementParams,
        response=lambda: models.EngagementResult,
    ),
    Operation(
        "get_stats_providers",
        "GET",
        "stats/providers",
        "function",
        STATISTICS,
        "Get Mailbox Provider Statistics",
        "Returns per mailbox provider (Google, Microsoft 365, Outlook.com, Yahoo/AOL, Apple iCloud, filtering "
        "gateways, ...: told by the receiving mail server's host name, else the recipient domain) the delivery, "
        "bounce, hard-bounce and spam rates, p50/p95 send-to-final latency and the most frequent failure codes.",
        handler=lambda: deliverability.get_stats_providers,
        params=lambda: deliverability_models.ProviderStatsParams,
        response=lambda: deliverability_models.ProviderStatsResult,
    ),
    Operation(
        "get_sending_quota",
        "GET",
        "sending/quota",
        "function",
        DELIVERABILITY,
        "Get Quota Headroom",
        "Returns send requests (and recipients) per minute and per hour in the send window against the ACS limits "
        "(SEND_LIMIT_PER_MINUTE, SEND_LIMIT_PER_HOUR): peaks, p95, the busiest minutes and the headroom, when the "
        "hourly limit is reached at the last hour's rate, and the evidence a quota-increase request asks for.",
        handler=lambda: deliverability.get_sending_quota,
        params=lambda: deliverability_models.QuotaParams,
        response=lambda: deliverability_models.QuotaResult,
    ),
    Operation(
        "get_senders_health",
        "GET",
        "senders/health",
        "function",
        DELIVERABILITY,
        "Check Sender Health",
        "Returns per sender domain (and sender) the failure, hard-bounce and spam / quarantine rates of the window "
        "and of the one before it, and a verdict about reputation: ok, watch or atRisk, with the reasons. A flow "
        "can hold a campaign while the verdict is atRisk.",
        handler=lambda: deliverability.get_senders_health,
        params=lambda: deliverability_models.SenderHealthParams,
        response=lambda: deliverability_models.SenderHealthResult,
        visibility="important",
    ),
    Operation(
        "get_stats",
        "GET",
        "stats/{kind}",
        "function",
        STATISTICS,
        "Get Delivery Statistics",
        "Returns aggregates over the send window (domains, senders, mail servers, latency, failures or sizes) "
        "and how complete the data is.",
        handler=lambda: handlers.get_stats,
        params=lambda: models.StatsRequest,
        response=lambda: models.StatsResult,
    ),
    Operation(
        "list_bounces",
        "GET",
        "bounces",
        "function",
        BOUNCES,
        "List Bounced Recipients",
        "Returns one row per bounced address (lowercased). Ask for CSV with format=csv or Accept: text/csv.",
        handler=lambda: handlers.list_bounces,
        params=lambda: models.BouncesParams,
        response=lambda: models.BounceList,
        ok=Response(200, "Bounced recipients as JSON, or as CSV with format=csv / Accept: text/csv."),
        alternates=("text/csv",),
    ),
    Operation(
        "get_recipient_history",
        "GET",
        "recipients/{address}",
        "function",
        RECIPIENTS,
        "Get Recipient History",
        "Returns every message to one address (matched in any case), newest first, with its final status. When the "
        "newest was Suppressed, suppression names the earlier hard bounce that most likely caused it.",
        handler=lambda: handlers.get_recipient_history,
        params=lambda: models.RecipientParams,
        response=lambda: models.RecipientHistory,
    ),
    Operation(
        "get_recipient_sendability",
        "GET",
        "recipients/{address}/sendability",
        "function",
        RECIPIENTS,
        "Check Whether an Address Is Sendable",
        "Says whether a send to the address would most likely be attempted now, and why not: an entry in our "
        "suppression list (since when), ACS's managed suppression after a hard bounce (estimated: 24 h, doubled by "
        "each send during it, up to 14 days), a recent Suppressed status, the earlier hard bounce with its code, "
        "and the recipient domain's results. The history window defaults to the 90 days before now.",
        handler=lambda: suppression_handlers.get_recipient_sendability,
        params=lambda: suppression_models.SendabilityParams,
        response=lambda: suppression_models.Sendability,
    ),
    Operation(
        "remove_suppression",
        "DELETE",
        "suppressions/{address}",
        "admin",
        RECIPIENTS,
        "Remove an Address from the Suppression List",
        "Removes every entry of the address from our customer-managed suppression list (SUPPRESSION_LIST_ID) and "
        "records who asked; the timer does not add it again for a bounce logged before the removal. ACS's own "
        "managed suppression has no API and is not affected.",
        handler=lambda: suppression_handlers.remove_suppression,
        params=lambda: suppression_models.RemoveSuppressionParams,
        response=lambda: suppression_models.SuppressionRemoval,
        ok=Response(200, "Removed: the entries that were deleted."),
        responses=(
            Response(404, "The address is not in the list, or no list is configured.", body="problem"),
            Response(409, "The list changed meanwhile: retry.", body="problem"),
        ),
        connector=False,
    ),
    Operation(
        "list_daily_summaries",
        "GET",
        "summaries/daily",
        "function",
        SUMMARIES,
        "List Daily Summaries",
        "Returns the persisted daily delivery summaries. No log query is run. Ask for CSV with format=csv or "
        "Accept: text/csv (columns in docs/reports.md).",
        handler=lambda: handlers.list_daily_summaries,
        params=lambda: models.SummaryRangeParams,
        response=lambda: models.DailySummaryList,
        ok=Response(200, "Daily summaries as JSON, or as CSV with format=csv / Accept: text/csv."),
        alternates=("text/csv",),
    ),
    Operation(
        "recompute_daily_summary",
        "POST",
        "summaries/daily/{date}",
        "admin",
        SUMMARIES,
        "Recompute a Daily Summary",
        "Recomputes and persists the summaries of one UTC send day, and returns them.",
        handler=lambda: handlers.recompute_daily_summary,
        params=lambda: models.RecomputeParams,
        response=lambda: models.DailySummaryList,
        connector=False,
    ),
    Operation(
        "get_daily_report",
        "GET",
        "reports/daily/{date}",
        "function",
        SUMMARIES,
        "Get the Daily Report",
        "Returns the delivery report of one UTC day as one self-contained HTML page (charts inline), or its numbers "
        "as JSON with format=json. It is built from the persisted summaries and at most one log query.",
        handler=lambda: handlers.get_daily_report,
        params=lambda: models.ReportParams,
        response=lambda: models.DailyReport,
        ok=Response(200, "The report: HTML by default, JSON with format=json."),
        alternates=("text/html",),
        connector=False,
    ),
    Operation(
        "create_subscription",
        "POST",
        "subscriptions",
        "function",
        SUBSCRIPTIONS,
        "Subscribe to Delivery Outcomes",
        "Subscribes a webhook: with messageId, the message's trace is POSTed once the message is final; with a "
        "filter, each matching recipient's outcome is POSTed when it becomes final. Each push is signed "
        "(X-Signature: sha256=HMAC-SHA256 of the body with the secret) and carries X-Delivery-Id for dedup; failed "
        "pushes are retried after 10 s, 30 s, 1 min, 5 min and on to a day. A message subscription lasts the "
        "status grace plus a day, a filter subscription 7 days.",
        handler=lambda: handlers.create_subscription,
        body=lambda: models.CreateSubscriptionBody,
        response=lambda: models.Subscription,
        ok=Response(
            201,
            "Subscribed: the body shows the signing secret this once; DELETE the Location to unsubscribe.",
            headers=("Location",),
        ),
        webhook=Webhook(
            "When a Message's Delivery Is Final",
            "Runs once the message's every recipient has a final status (or the message failed as a whole), with "
            "the message's trace.",
            body=lambda: models.MessageSubscriptionBody,
            payload=lambda: models.TraceResult,
            also=(lambda: models.RecipientOutcome,),
        ),
    ),
    Operation(
        "delete_subscription",
        "DELETE",
        "subscriptions/{id}",
        "function",
        SUBSCRIPTIONS,
        "Delete a Subscription",
        "Deletes a push subscription; pushes still pending for it are dropped.",
        handler=lambda: handlers.delete_subscription,
        params=lambda: models.SubscriptionParams,
        ok=Response(204, "Deleted.", body="empty"),
        responses=(Response(404, "No such subscription (deleted or expired).", body="problem"),),
        visibility="internal",
    ),
    Operation(
        "health",
        "GET",
        "health",
        "anonymous",
        OPERATIONS_TAG,
        "Check Health",
        "Says whether the log source and the summary table store are reachable, and why not.",
        handler=lambda: handlers.health,
        response=lambda: models.Health,
        ok=Response(200, "Every dependency is reachable."),
        responses=(Response(503, "A dependency is unreachable; the body says which and why."),),
    ),
    Operation(
        "openapi",
        "GET",
        "openapi.json",
        "anonymous",
        OPERATIONS_TAG,
        "Get the OpenAPI Document",
        "Returns this API's OpenAPI 3.1 document.",
        handler=lambda: handlers.openapi,
        ok=Response(200, "The OpenAPI 3.1 document.", body="object"),
        connector=False,
    ),
)

TRIGGERS: tuple[Timer | EventGridTrigger | QueueTrigger, ...] = (
    Timer(
        "daily_summary",
        "DAILY_SUMMARY_SCHEDULE",
        handler=lambda: triggers.daily_summary,
        description="Computes the daily delivery summaries (recent days again, missing days backfilled).",
    ),
    EventGridTrigger(
        "ingest_email_events",
        handler=lambda: triggers.ingest_email_events,
        description="Writes ACS email delivery and engagement events into the delivery state.",
    ),
    Timer(
        "follow_status_updates",
        "FOLLOW_SCHEDULE",
        handler=lambda: triggers.follow_status_updates,
        description="Brings what reached Log Analytics since the last run into the journal (one query), asks for "
        "every shard with a backlog to be folded (the safety net) and delivers pushes that are due.",
    ),
    QueueTrigger(
        "fold_journal_shard",
        "FOLD_QUEUE",
        QUEUE_CONNECTION,
        handler=lambda: triggers.fold_journal_shard,
        description="Folds one shard of the delivery state journal into message partitions and pushes what "
        "became final (one folder per shard at a time).",
    ),
    Timer(
        "suppress_hard_bounces",
        "SUPPRESSION_SCHEDULE",
        handler=lambda: suppression_handlers.suppress_hard_bounces,
        description="Adds the hard bounces of the last STATUS_GRACE_HOURS to SUPPRESSION_LIST_ID (when set).",
    ),
    Timer(
        "expire_state",
        "RETENTION_SCHEDULE",
        handler=lambda: triggers.expire_state,
        description="Deletes delivery state first seen more than STATE_RETENTION_DAYS ago, and notFound markers "
        "past their 30-minute window.",
    ),
)

OPERATIONS_BY_NAME: dict[str, Operation] = {operation.name: operation for operation in OPERATIONS}
