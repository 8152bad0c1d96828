"""The one declarative list of every function this app registers: HTTP operations and triggers.

The blueprint (``shared.api.functions``), the dispatcher (``shared.api.dispatch``), the OpenAPI 3.1
document and the Power Automate connector (``shared.api.openapi``) all read ``OPERATIONS`` and
``TRIGGERS``, and nothing else. Each function names its handler and models by string, resolved on first
use and cached, so that importing this module (which ``function_app.py`` does at host start, within Flex
Consumption's 30 s budget) loads neither pydantic nor the Azure SDKs:

* a handler is the function named like the operation (or trigger) in the registry of its ``handlers``
  module (``HTTP_HANDLERS``, ``TIMER_HANDLERS``, ...): each registry is a typed tuple, so mypy checks
  every handler's signature there (``shared.api.signatures``);
* a model is named by its class name, looked up in ``MODEL_MODULES`` (names are unique across them).

``tests/api/test_api_spec.py`` resolves every name; ``tests/infra/test_layering.py`` counts a module named in a string
as an import.

Path parameters are the ``{name}`` segments of the route; their schema, like every query parameter's,
comes from the operation's ``params`` model, so each pattern and enumeration is written once.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from shared.settings import QUEUE_CONNECTION

if TYPE_CHECKING:
    from pydantic import BaseModel

    from shared.api.signatures import EventGridHandler, HttpHandler, QueueHandler, TimerHandler

#: Where the models an operation names are defined.
MODEL_MODULES: Final = (
    "shared.models",
    "shared.deliverability.models",
    "shared.suppression.models",
    "shared.sending.models",
)
#: Modules holding handlers, each with its registries.
HANDLERS: Final = "shared.api.handlers"
TRIGGER_HANDLERS: Final = "shared.api.triggers"
DELIVERABILITY_HANDLERS: Final = "shared.api.deliverability"
SUPPRESSION_HANDLERS: Final = "shared.api.suppression"
SENDING_HANDLERS: Final = "shared.api.sending"

Auth = Literal["function", "anonymous", "admin"]
#: What a response body is: the operation's model, another model, problem+json, or a media type's text.
BodyKind = Literal["model", "problem", "csv", "html", "object", "empty"]


@cache
def model(name: str) -> type[BaseModel]:
    """The pydantic model class called *name* in ``MODEL_MODULES`` (imported on first use)."""
    found = {
        id(value): value
        for module in MODEL_MODULES
        if (value := getattr(importlib.import_module(module), name, None)) is not None
    }
    if len(found) != 1:
        raise LookupError(f"{len(found)} models named {name!r} in {', '.join(MODEL_MODULES)}")
    return cast("type[BaseModel]", next(iter(found.values())))


@cache
def registry(module: str, name: str) -> dict[str, Any]:
    """The handlers the registry *name* of *module* lists, by function name (imported on first use)."""
    return {function.__name__: function for function in getattr(importlib.import_module(module), name)}


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
    model: str | None = None
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
    body: str
    payload: str
    #: "single": one run per push; "batch": one run per array item.
    kind: Literal["single", "batch"] = "single"
    #: Other bodies the same subscriptions may push (through the API only, not the connector's trigger).
    also: tuple[str, ...] = ()

    def payloads(self) -> tuple[type[BaseModel], ...]:
        return tuple(model(name) for name in (self.payload, *self.also))


@dataclass(frozen=True)
class Operation:
    name: str  # function name; the operationId is its camelCase form
    method: Literal["GET", "PUT", "POST", "DELETE"]
    route: str
    auth: Auth
    tag: str
    summary: str  # Title Case, a few words (Power Automate shows it as the action name)
    description: str  # full sentences
    #: Query and path parameters, validated together (route values win over query values of the same name).
    params: str | None = None
    #: JSON request body model (POST).
    body: str | None = None
    #: The 200 (or 201) body.
    response: str | None = None
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
    #: The module whose ``HTTP_HANDLERS`` holds the handler named like the operation; None: the blueprint
    #: itself answers (``shared.api.functions.BLUEPRINT_HANDLERS``).
    handlers: str | None = HANDLERS
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

    def handler(self) -> HttpHandler:
        if self.handlers is None:
            raise LookupError(f"{self.name} is answered by the blueprint itself")
        return cast("HttpHandler", registry(self.handlers, "HTTP_HANDLERS")[self.name])


@dataclass(frozen=True)
class Timer:
    name: str
    #: App setting holding the NCRONTAB schedule (the host reads it as %NAME%).
    schedule_setting: str
    description: str
    #: The module whose ``TIMER_HANDLERS`` holds the handler named like the timer.
    handlers: str = TRIGGER_HANDLERS

    def handler(self) -> TimerHandler:
        return cast("TimerHandler", registry(self.handlers, "TIMER_HANDLERS")[self.name])


@dataclass(frozen=True)
class QueueTrigger:
    name: str
    #: App setting holding the queue's name (the host reads it as %NAME%).
    queue_setting: str
    #: Connection setting (prefix) of the storage account holding the queue.
    connection: str
    description: str
    #: The module whose ``QUEUE_HANDLERS`` holds the handler named like the trigger.
    handlers: str = TRIGGER_HANDLERS

    def handler(self) -> QueueHandler:
        return cast("QueueHandler", registry(self.handlers, "QUEUE_HANDLERS")[self.name])


@dataclass(frozen=True)
class EventGridTrigger:
    name: str
    description: str
    #: The module whose ``EVENT_GRID_HANDLERS`` holds the handler named like the trigger.
    handlers: str = TRIGGER_HANDLERS

    def handler(self) -> EventGridHandler:
        return cast("EventGridHandler", registry(self.handlers, "EVENT_GRID_HANDLERS")[self.name])


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
        params="TraceParams",
        response="TraceResult",
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
        params="RegisterParams",
        body="RegisterMessageBody",
        response="MessageRegistration",
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
        params="PollParams",
        response="TraceResult",
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
        handlers=SENDING_HANDLERS,
        body="SendEmailBody",
        response="SendAccepted",
        ok=Response(
            202,
            "Sent: poll the Location (the message's trace) after Retry-After seconds until it answers 200.",
            headers=("Location", "Retry-After"),
        ),
        responses=(
            Response(200, "What the Location answers once the message is final: its trace.", model="TraceResult"),
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
        params="SearchParams",
        response="SearchPage",
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
        params="TimeSeriesParams",
        response="TimeSeriesResult",
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
        params="EngagementParams",
        response="EngagementResult",
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
        handlers=DELIVERABILITY_HANDLERS,
        params="ProviderStatsParams",
        response="ProviderStatsResult",
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
        handlers=DELIVERABILITY_HANDLERS,
        params="QuotaParams",
        response="QuotaResult",
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
        handlers=DELIVERABILITY_HANDLERS,
        params="SenderHealthParams",
        response="SenderHealthResult",
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
        params="StatsRequest",
        response="StatsResult",
    ),
    Operation(
        "list_bounces",
        "GET",
        "bounces",
        "function",
        BOUNCES,
        "List Bounced Recipients",
        "Returns one row per bounced address (lowercased). Ask for CSV with format=csv or Accept: text/csv.",
        params="BouncesParams",
        response="BounceList",
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
        params="RecipientParams",
        response="RecipientHistory",
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
        handlers=SUPPRESSION_HANDLERS,
        params="SendabilityParams",
        response="Sendability",
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
        handlers=SUPPRESSION_HANDLERS,
        params="RemoveSuppressionParams",
        response="SuppressionRemoval",
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
        params="SummaryRangeParams",
        response="DailySummaryList",
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
        params="RecomputeParams",
        response="DailySummaryList",
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
        params="ReportParams",
        response="DailyReport",
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
        body="CreateSubscriptionBody",
        response="Subscription",
        ok=Response(
            201,
            "Subscribed: the body shows the signing secret this once; DELETE the Location to unsubscribe.",
            headers=("Location",),
        ),
        webhook=Webhook(
            "When a Message's Delivery Is Final",
            "Runs once the message's every recipient has a final status (or the message failed as a whole), with "
            "the message's trace.",
            body="MessageSubscriptionBody",
            payload="TraceResult",
            also=("RecipientOutcome",),
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
        params="SubscriptionParams",
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
        response="Health",
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
        ok=Response(200, "The OpenAPI 3.1 document.", body="object"),
        connector=False,
        handlers=None,
    ),
)

TRIGGERS: tuple[Timer | EventGridTrigger | QueueTrigger, ...] = (
    Timer(
        "daily_summary",
        "DAILY_SUMMARY_SCHEDULE",
        description="Computes the daily delivery summaries (recent days again, missing days backfilled).",
    ),
    EventGridTrigger(
        "ingest_email_events",
        description="Writes ACS email delivery and engagement events into the delivery state.",
    ),
    Timer(
        "follow_status_updates",
        "FOLLOW_SCHEDULE",
        description="Brings what reached Log Analytics since the last run into the journal (one query), asks for "
        "every shard with a backlog to be folded (the safety net) and delivers pushes that are due.",
    ),
    QueueTrigger(
        "fold_journal_shard",
        "FOLD_QUEUE",
        QUEUE_CONNECTION,
        description="Folds one shard of the delivery state journal into message partitions and pushes what "
        "became final (one folder per shard at a time).",
    ),
    Timer(
        "suppress_hard_bounces",
        "SUPPRESSION_SCHEDULE",
        handlers=SUPPRESSION_HANDLERS,
        description="Adds the hard bounces of the last STATUS_GRACE_HOURS to SUPPRESSION_LIST_ID (when set).",
    ),
    Timer(
        "expire_state",
        "RETENTION_SCHEDULE",
        description="Deletes delivery state first seen more than STATE_RETENTION_DAYS ago, and notFound markers "
        "past their 30-minute window.",
    ),
)

OPERATIONS_BY_NAME: dict[str, Operation] = {operation.name: operation for operation in OPERATIONS}
