"""The correlation contract, proved on DuckDB with the hand-checkable archive fixture.

Every expected value below is explained in tests/fixtures/semantics/EXPECTED.md.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from local.embedded import DuckDbSource
from local.store import open_store
from shared.api.render import to_body
from shared.insights import Insights
from shared.models import BouncesParams, SearchParams, StatsParams, TraceParams

DAY = {"from": "2026-03-10T00:00:00Z", "to": "2026-03-11T00:00:00Z"}


@pytest.fixture
def insights(semantic_insights: Insights) -> Insights:
    return semantic_insights


def trace(insights: Insights, message_id: str) -> dict[str, Any]:
    return to_body(insights.trace(TraceParams(message_id=message_id)))


def search_rows(insights: Insights, **filters: Any) -> list[dict[str, Any]]:
    return to_body(insights.search(SearchParams.model_validate({**DAY, **filters})))["value"]


def by_recipient(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["recipientId"]: row for row in rows}


# --------------------------------------------------------------------------- trace


def test_final_when_every_expected_recipient_has_a_final_status(insights: Insights) -> None:
    body = trace(insights, "msg-01-final")
    assert body["state"] == "final" and body["source"] == "logs"
    # alice delivered, bob hard-bounced: the outcome says so first, with counts per final status
    assert body["outcome"] == "partiallyDelivered"
    assert body["counts"] == {
        "delivered": 1,
        "failed": 0,
        "bounced": 1,
        "suppressed": 0,
        "quarantined": 0,
        "filteredSpam": 0,
    }
    assert body["pendingRecipients"] == [] and body["unresolvedCount"] is None and body["expectedRecipients"] == 2
    assert body["send"]["sender"] == "DoNotReply@contoso.com"
    assert body["send"]["messageSizeMb"] == 0.05 and "messageSize" not in body["send"]
    assert body["send"]["uniqueRecipientsCount"] == 2
    assert body["send"]["messageSizeCategory"] == "Tiny (<100KB)"
    assert [event["deliveryStatus"] for event in body["messageEvents"]] == ["OutForDelivery"]
    recipients = by_recipient(body["recipients"])
    assert set(recipients) == {"alice@Contoso.com", "bob@fabrikam.com"}
    alice, bob = recipients["alice@Contoso.com"], recipients["bob@fabrikam.com"]
    assert alice["recipientDomain"] == "contoso.com"
    assert alice["finalDeliveryStatus"] == "Delivered" and alice["bounceType"] == "none"
    assert alice["bounceTypeLabel"] == "Not Applicable"
    assert alice["durationMilliseconds"] == 3000 and "durationSeconds" not in alice
    assert bob["bounceType"] == "hard" and bob["bounceTypeLabel"] == "Hard Bounce"
    assert bob["bounceTypeSource"] == "reported"
    assert bob["events"][0]["isHardBounce"] is True  # "TRUE" in the logs, a boolean here
    assert bob["failureCategory"] == "invalid recipient"
    # the duplicated event counts once
    assert len(bob["events"]) == 1


def test_pending_while_a_recipient_has_no_final_status(insights: Insights) -> None:
    body = trace(insights, "msg-02-pending")
    assert body["state"] == "pending" and body["outcome"] == "pending"
    # 3 expected: carol final, dave known by address, the third (the Cc) never reported
    assert body["pendingRecipients"] == ["dave@contoso.com"] and body["unresolvedCount"] == 2
    assert body["counts"]["delivered"] == 1
    recipients = by_recipient(body["recipients"])
    assert recipients["carol@contoso.com"]["finalDeliveryStatus"] == "Delivered"
    dave = recipients["dave@contoso.com"]
    assert dave["finalDeliveryStatus"] is None
    assert [event["deliveryStatus"] for event in dave["events"]] == ["OutForDelivery"]


def test_message_level_failure_is_terminal(insights: Insights) -> None:
    body = trace(insights, "msg-03-msgfail")
    assert body["state"] == "final" and body["outcome"] == "failed"
    assert body["recipients"] == []
    assert body["messageEvents"][0]["deliveryStatus"] == "Failed"
    assert body["messageEvents"][0]["failureReason"] == "NoValidRecipients"


def test_trace_is_message_anchored(insights: Insights) -> None:
    body = trace(insights, "msg-04-nosend")
    assert body["send"] is None
    # No send row: how many recipients to wait for is not known, so frank's Delivered is not the whole answer
    # (never final on a guess); it is pending until the send row or a registration comes, expired at the grace.
    assert (body["state"], body["outcome"], body["expectedRecipients"]) == ("pending", "pending", None)
    assert body["pendingRecipients"] == [] and body["unresolvedCount"] is None and "PUT" in body["warning"]
    frank = body["recipients"][0]
    assert frank["recipientId"] == "frank@gmail.com" and frank["finalDeliveryStatus"] == "Delivered"
    assert frank["durationMilliseconds"] is None


def test_not_found(insights: Insights) -> None:
    body = trace(insights, "msg-99-unknown")
    assert body == {
        "messageId": "msg-99-unknown",
        "outcome": None,
        "state": "notFound",
        "source": "logs",
        "asOf": "2026-03-12T12:00:00.000000Z",
        "counts": {
            "delivered": 0,
            "failed": 0,
            "bounced": 0,
            "suppressed": 0,
            "quarantined": 0,
            "filteredSpam": 0,
        },
        "expectedRecipients": None,
        "pendingRecipients": [],
        "unresolvedCount": None,
        "send": None,
        "messageEvents": [],
        "recipients": [],
    }


def test_clock_skew_is_kept_and_flagged(insights: Insights) -> None:
    grace = trace(insights, "msg-05-skew")["recipients"][0]
    assert grace["clockSkew"] is True
    assert grace["durationMilliseconds"] == -2000


def test_latest_final_event_wins_whatever_the_arrival_order(insights: Insights) -> None:
    henry = trace(insights, "msg-06-order")["recipients"][0]
    assert henry["finalDeliveryStatus"] == "Delivered"
    assert henry["durationMilliseconds"] == 30_000
    assert [event["deliveryStatus"] for event in henry["events"]] == ["Failed", "Delivered"]


def test_bounce_types_reported_inferred_unknown(insights: Insights) -> None:
    body = trace(insights, "msg-07-bounces")
    assert body["outcome"] == "notDelivered" and body["counts"]["failed"] == 2 and body["counts"]["bounced"] == 2
    recipients = by_recipient(body["recipients"])
    assert (recipients["ivan@fabrikam.com"]["bounceType"], recipients["ivan@fabrikam.com"]["bounceTypeSource"]) == (
        "soft",
        "inferred",
    )
    assert (recipients["judy@fabrikam.com"]["bounceType"], recipients["judy@fabrikam.com"]["bounceTypeSource"]) == (
        "hard",
        "inferred",
    )
    assert (recipients["kim@fabrikam.com"]["bounceType"], recipients["kim@fabrikam.com"]["bounceTypeSource"]) == (
        "unknown",
        "unknown",
    )
    assert (recipients["leo@contoso.com"]["bounceType"], recipients["leo@contoso.com"]["bounceTypeSource"]) == (
        "soft",
        "reported",
    )
    kim = recipients["kim@fabrikam.com"]
    assert kim["smtpStatusCode"] is None and kim["enhancedSmtpStatusCode"] is None
    assert kim["smtpStatusCodeDetails"] == "Unknown / not provided"
    assert recipients["ivan@fabrikam.com"]["failureCategory"] == "mailbox full"


def test_late_event_and_last_at_domain(insights: Insights) -> None:
    weird = trace(insights, "msg-08-late")["recipients"][0]
    assert weird["recipientId"] == '"weird@local"@Example.ORG'
    assert weird["recipientDomain"] == "example.org"
    assert weird["durationMilliseconds"] == 120_000
    assert weird["finalStatusTime"].startswith("2026-03-11T00:01:00.123456")


# --------------------------------------------------------------------------- search


def test_search_is_send_anchored_newest_first(insights: Insights) -> None:
    rows = search_rows(insights)
    assert [row["recipientId"] for row in rows] == [
        '"weird@local"@Example.ORG',
        "ivan@fabrikam.com",
        "judy@fabrikam.com",
        "kim@fabrikam.com",
        "leo@contoso.com",
        "henry@fabrikam.com",
        "grace@contoso.com",
        "carol@contoso.com",
        "alice@Contoso.com",
        "bob@fabrikam.com",
    ]
    grace = by_recipient(rows)["grace@contoso.com"]
    assert grace["clockSkew"] is True and grace["messageSizeCategory"] == "Large (5-10MB)"
    henry = by_recipient(rows)["henry@fabrikam.com"]
    assert henry["messageSizeCategory"] == "Very Large (>10MB)" and henry["attachmentsCount"] == 2


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"recipient": "ALICE@contoso.com"}, ["alice@Contoso.com"]),
        (
            {"recipientDomain": "Fabrikam.com"},
            ["ivan@fabrikam.com", "judy@fabrikam.com", "kim@fabrikam.com", "henry@fabrikam.com", "bob@fabrikam.com"],
        ),
        ({"status": "Bounced"}, ["judy@fabrikam.com", "leo@contoso.com", "bob@fabrikam.com"]),
        ({"bounceType": "hard"}, ["judy@fabrikam.com", "bob@fabrikam.com"]),
        ({"bounceType": "soft"}, ["ivan@fabrikam.com", "leo@contoso.com"]),
        ({"minDurationSeconds": 25}, ['"weird@local"@Example.ORG', "henry@fabrikam.com"]),
        ({"minSizeMb": 5}, ["henry@fabrikam.com", "grace@contoso.com"]),
        ({"hasAttachments": True}, ["henry@fabrikam.com"]),
        ({"messageId": "msg-01-final"}, ["alice@Contoso.com", "bob@fabrikam.com"]),
        (
            {"internetMessageId": "<msg-07-bounces@contoso.com>"},
            ["ivan@fabrikam.com", "judy@fabrikam.com", "kim@fabrikam.com", "leo@contoso.com"],
        ),
        ({"sender": "donotreply@CONTOSO.com", "recipientDomain": "example.org"}, ['"weird@local"@Example.ORG']),
        ({"sender": "someone-else"}, []),
    ],
)
def test_search_filters(insights: Insights, filters: dict[str, Any], expected: list[str]) -> None:
    assert [row["recipientId"] for row in search_rows(insights, **filters)] == expected


def test_search_window_bounds_sends(insights: Insights) -> None:
    rows = to_body(
        insights.search(SearchParams.model_validate({"from": "2026-03-10T11:00:00Z", "to": "2026-03-10T15:00:00Z"}))
    )["value"]
    assert [row["recipientId"] for row in rows] == ["grace@contoso.com", "carol@contoso.com"]


def test_search_pages_to_the_end_without_loss_or_repeat(insights: Insights) -> None:
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params: dict[str, Any] = {**DAY, "top": 3}
        if token:
            params["continuationToken"] = token
        page = insights.search(SearchParams.model_validate(params))
        seen += [row.recipient_id for row in page.value]
        pages += 1
        token = page.continuation_token
        if token is None:
            break
    assert pages == 4
    assert seen == [row["recipientId"] for row in search_rows(insights)]


# --------------------------------------------------------------------------- stats, bounces, summary


def stats(insights: Insights, kind: str, **extra: Any) -> dict[str, Any]:
    return to_body(insights.stats(kind, StatsParams.model_validate({**DAY, **extra})))


def test_domain_stats(insights: Insights) -> None:
    body = stats(insights, "domains")
    rows = {row["recipientDomain"]: row for row in body["value"]}
    assert list(rows) == ["fabrikam.com", "contoso.com", "example.org"]
    contoso = rows["contoso.com"]
    assert (contoso["total"], contoso["delivered"], contoso["bounced"], contoso["softBounces"]) == (4, 3, 1, 1)
    assert contoso["successRate"] == 75.0
    # alice 3 s, carol 5 s, leo 23 s; grace's skewed -2 s is left out
    assert contoso["avgDurationSeconds"] == pytest.approx(10.333)
    fabrikam = rows["fabrikam.com"]
    assert (fabrikam["total"], fabrikam["delivered"], fabrikam["bounced"], fabrikam["failed"]) == (5, 1, 2, 2)
    assert (fabrikam["hardBounces"], fabrikam["softBounces"], fabrikam["successRate"]) == (2, 1, 20.0)
    assert fabrikam["avgDurationSeconds"] == pytest.approx(20.6)
    assert rows["example.org"]["avgDurationSeconds"] == pytest.approx(120.0)
    # the daily summary's rule: 12 expected recipients (msg-03 failed as a whole) less 10 with a final status
    assert body["completeness"]["pendingRecipients"] == 2
    assert body["failedMessages"] == 1  # msg-03
    assert body["completeness"]["latestEventTime"].startswith("2026-03-11T00:01:00")


def test_latency_stats_leave_out_clock_skew(insights: Insights) -> None:
    rows = {row["time"][:13]: row for row in stats(insights, "latency", bin="1h")["value"]}
    assert "2026-03-10T14" not in rows  # grace, the only send of that hour, has a skewed clock
    assert rows["2026-03-10T10"]["count"] == 1  # alice (Delivered), not bob
    assert rows["2026-03-10T15"]["avgDurationSeconds"] == 30.0


def test_size_stats(insights: Insights) -> None:
    rows = {row["messageSizeCategory"]: row for row in stats(insights, "sizes")["value"]}
    assert {key: (row["messages"], row["recipients"]) for key, row in rows.items()} == {
        "Tiny (<100KB)": (2, 3),
        "Small (100KB-1MB)": (2, 7),
        "Medium (1-5MB)": (1, 1),
        "Large (5-10MB)": (1, 1),
        "Very Large (>10MB)": (1, 1),
    }


def test_sender_and_failure_stats(insights: Insights) -> None:
    senders = stats(insights, "senders")["value"]
    assert len(senders) == 1
    assert (senders[0]["totalSent"], senders[0]["hardBounces"], senders[0]["softBounces"]) == (10, 2, 2)
    assert senders[0]["hardBounceRate"] == 20.0
    failures = stats(insights, "failures")["value"]
    assert sum(row["count"] for row in failures) == 5
    assert {row["enhancedSmtpStatusCode"] for row in failures} == {"5.1.1", "5.2.2", "4.2.2", None}


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("all", {"bob@fabrikam.com", "ivan@fabrikam.com", "judy@fabrikam.com", "kim@fabrikam.com", "leo@contoso.com"}),
        ("hard", {"bob@fabrikam.com", "judy@fabrikam.com"}),
        ("soft", {"ivan@fabrikam.com", "leo@contoso.com"}),
    ],
)
def test_bounces(insights: Insights, kind: str, expected: set[str]) -> None:
    body = to_body(insights.bounces(BouncesParams.model_validate({**DAY, "type": kind})))
    assert {row["recipientId"] for row in body["value"]} == expected
    for row in body["value"]:
        assert row["bounceCount"] == 1 and row["firstBounceTime"] == row["lastBounceTime"]


def test_daily_summary_counts_on_the_send_day(insights: Insights) -> None:
    rows, warning = insights.daily_summary(date(2026, 3, 10))
    assert warning is None
    by_key = {(row["Dimension"], row["Key"]): row for row in rows}
    total = by_key[("total", "all")]
    assert (total["Total"], total["Delivered"], total["Bounced"], total["Failed"]) == (10, 5, 3, 2)
    # 13 expected recipients less msg-03's (the message failed as a whole), 10 with a final status
    assert total["Pending"] == 2
    assert by_key[("domain", "example.org")]["Delivered"] == 1  # delivered after midnight, sent on the 10th
    assert by_key[("sender", "DoNotReply@contoso.com")]["Total"] == 10
    next_day, _ = insights.daily_summary(date(2026, 3, 11))
    assert next_day == [] or all(row["Total"] == 0 for row in next_day)


def test_unmapped_codes_are_named(tmp_path: Path) -> None:
    """Codes the catalog does not know are explained as such, on both code columns."""
    con = open_store(tmp_path / "unmapped.duckdb")
    con.execute(
        "INSERT INTO ACSEmailSendMailOperational (TimeGenerated, CorrelationId, Size, UniqueRecipientsCount,"
        " _ResourceId) VALUES ('2026-03-10 09:00:00', 'msg-u', 0.2, 1, 'r')"
    )
    con.execute(
        "INSERT INTO ACSEmailStatusUpdateOperational (TimeGenerated, CorrelationId, RecipientId, DeliveryStatus,"
        " SmtpStatusCode, EnhancedSmtpStatusCode, IsHardBounce, _ResourceId) VALUES"
        " ('2026-03-10 09:00:05', 'msg-u', 'zed@example.net', 'Failed', '599', '5.99.1', '', 'r')"
    )
    con.close()
    source = DuckDbSource(tmp_path / "unmapped.duckdb")
    (row,) = to_body(Insights(source).search(SearchParams.model_validate(DAY)))["value"]
    source.close()
    assert row["smtpStatusCodeDetails"] == "Unmapped SMTP code: 599"
    assert row["enhancedSmtpStatusCodeDetails"] == "Unmapped enhanced code: 5.99.1"
    assert (row["bounceType"], row["failureCategory"]) == ("hard", "other")  # 5xx class: hard


def test_a_trace_answer_stays_bounded_whatever_the_logs_hold() -> None:
    """A 50 MB failure message and 120 events for one recipient: text cut to MAX_TEXT_CHARS with a marker,
    the newest MAX_TRACE_EVENTS events listed and the rest counted."""
    from datetime import UTC, datetime, timedelta

    from shared.insights import assemble_trace
    from shared.logs.source import QueryResult
    from shared.models import MAX_TEXT_CHARS, MAX_TRACE_EVENTS, TRUNCATED_MARK

    huge = "x" * 50_000_000
    start = datetime(2026, 3, 10, tzinfo=UTC)
    columns = ["RowKind", "TimeGenerated", "RecipientId", "DeliveryStatus", "FailureMessage", "_ResourceId"]
    rows = [("event", start + timedelta(seconds=n), "a@example.org", "Expanded", huge, "r") for n in range(120)]
    trace = assemble_trace("m", QueryResult(columns, rows))
    [recipient] = trace.recipients
    assert len(recipient.events) == MAX_TRACE_EVENTS and recipient.events_omitted == 120 - MAX_TRACE_EVENTS
    assert recipient.events[-1].time == start + timedelta(seconds=119)  # the newest are kept
    message = recipient.events[0].failure_message or ""
    assert len(message) == MAX_TEXT_CHARS and message.endswith(TRUNCATED_MARK)
    assert len(to_body(trace).__repr__()) < 1_000_000


def test_trace_shows_each_recipients_views_and_clicks(insights: Insights) -> None:
    """msg-11-engaged (2026-03-09): nina viewed twice and clicked once; oscar, delivered too, never engaged."""
    trace = to_body(insights.trace(TraceParams(message_id="msg-11-engaged")))
    by_address = {r["recipientId"]: r for r in trace["recipients"]}
    assert by_address["nina@contoso.com"]["engagement"] == {
        "views": 2,
        "clicks": 1,
        "firstTime": "2026-03-09T10:05:00.000000Z",
        "lastTime": "2026-03-09T12:00:30.000000Z",
        "clickedUrls": ["https://www.contoso.com/offers?id=1"],
    }
    assert by_address["oscar@gmail.com"]["engagement"] is None
