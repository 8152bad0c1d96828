"""Aggregates over the semantics fixture's second day (2026-03-09, EXPECTED.md "Aggregates day"): the pending
rule shared with the daily summary, what a soft bounce is, message-level failures, and the filters every
aggregate takes."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from shared.api.render import to_body
from shared.errors import InvalidInput
from shared.insights import Insights
from shared.models import BouncesParams, SearchParams, StatsParams

DAY9 = {"from": "2026-03-09T00:00:00Z", "to": "2026-03-10T00:00:00Z"}
DAY10 = {"from": "2026-03-10T00:00:00Z", "to": "2026-03-11T00:00:00Z"}


def stats(insights: Insights, kind: str, window: dict[str, str] = DAY9, **extra: Any) -> dict[str, Any]:
    return to_body(insights.stats(kind, StatsParams.model_validate({**window, **extra})))


@pytest.mark.parametrize(("window", "day"), [(DAY9, date(2026, 3, 9)), (DAY10, date(2026, 3, 10))])
def test_pending_and_failed_messages_agree_with_the_daily_summary(
    semantic_insights: Insights, window: dict[str, str], day: date
) -> None:
    body = stats(semantic_insights, "domains", window)
    rows, _ = semantic_insights.daily_summary(day)
    total = next(row for row in rows if row["Dimension"] == "total")
    assert body["completeness"]["pendingRecipients"] == total["Pending"]
    assert body["failedMessages"] == total["FailedMessages"] == 1


def test_pending_counts_recipients_still_waiting_without_any_event(semantic_insights: Insights) -> None:
    # 7 expected (msg-13 was dropped as a whole), 4 with a final status: msg-12's 3 recipients never had an event.
    assert stats(semantic_insights, "sizes")["completeness"]["pendingRecipients"] == 3


def test_a_suppressed_recipient_with_is_hard_bounce_false_is_no_soft_bounce(semantic_insights: Insights) -> None:
    fabrikam = {row["recipientDomain"]: row for row in stats(semantic_insights, "domains")["value"]}["fabrikam.com"]
    assert (fabrikam["total"], fabrikam["bounced"], fabrikam["suppressed"]) == (2, 1, 1)
    assert (fabrikam["hardBounces"], fabrikam["softBounces"]) == (1, 0)
    senders = {row["senderUsername"]: row for row in stats(semantic_insights, "senders")["value"]}
    assert (senders["DoNotReply"]["hardBounces"], senders["DoNotReply"]["softBounces"]) == (1, 0)
    soft = semantic_insights.bounces(BouncesParams.model_validate({**DAY9, "type": "soft"}))
    assert soft.value == []
    rows, _ = semantic_insights.daily_summary(date(2026, 3, 9))
    total = next(row for row in rows if row["Dimension"] == "total")
    assert (total["HardBounces"], total["SoftBounces"]) == (1, 0)
    page = semantic_insights.search(SearchParams.model_validate({**DAY9, "bounceType": "soft"}))
    assert page.value == []


def test_sender_filters_reach_every_stats_kind_and_bounces(semantic_insights: Insights) -> None:
    for kind in ("domains", "senders", "mail-servers", "latency", "failures", "sizes"):
        news = stats(semantic_insights, kind, sender="news@notify.contoso.com")
        other = stats(semantic_insights, kind, senderDomain="NOTIFY.contoso.com")
        assert news["value"] == other["value"], kind
        assert news["completeness"]["pendingRecipients"] == 0 and news["failedMessages"] == 0
    assert [row["recipientDomain"] for row in stats(semantic_insights, "domains", sender="news")["value"]] == [
        "contoso.com",
        "gmail.com",
    ]
    sizes = stats(semantic_insights, "sizes", sender="news")["value"]
    assert [(row["messages"], row["recipients"]) for row in sizes] == [(1, 2)]  # msg-11 only
    donotreply = stats(semantic_insights, "domains", sender="DoNotReply")
    assert donotreply["failedMessages"] == 1  # msg-13's message-level Dropped names its sender
    assert donotreply["completeness"]["pendingRecipients"] == 0  # msg-12 has no event: no sender to attribute
    bounces = semantic_insights.bounces(BouncesParams.model_validate({**DAY9, "senderDomain": "notify.contoso.com"}))
    assert bounces.value == []
    bounces = semantic_insights.bounces(BouncesParams.model_validate({**DAY9, "sender": "doNotReply@CONTOSO.com"}))
    assert [row.recipient_id for row in bounces.value] == ["mallory@fabrikam.com"]
    other_resource = {
        "resourceId": "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/rg/providers/"
        "Microsoft.Communication/CommunicationServices/other"
    }
    assert stats(semantic_insights, "domains", **other_resource)["value"] == []
    assert semantic_insights.bounces(BouncesParams.model_validate({**DAY9, **other_resource})).value == []


def test_status_takes_several_values_in_any_case(semantic_insights: Insights) -> None:
    page = semantic_insights.search(SearchParams.model_validate({**DAY9, "status": "bounced, SUPPRESSED"}))
    assert sorted(row.final_delivery_status or "" for row in page.value) == ["Bounced", "Suppressed"]
    assert SearchParams.model_validate({"status": "delivered"}).status == ("Delivered",)
    with pytest.raises(ValueError, match="final statuses"):
        SearchParams.model_validate({"status": "Delivered,Lost"})
    with pytest.raises(InvalidInput):
        from shared.api.params import parse_params

        parse_params(SearchParams, {"status": ","})
