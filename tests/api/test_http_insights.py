"""Time series, engagement and recipient history over real HTTP (the local host) and the CLI, on the
semantics fixture's 2026-03-09 messages (EXPECTED.md, "Aggregates day")."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from test_http_api import Api, assert_problem, cli_json

from shared import cli
from shared.insights import Insights
from shared.models import ENGAGEMENT_NOTE
from shared.services import Services

from apphost import serve, settings


@pytest.fixture(scope="module")
def services(semantic_insights: Insights) -> Services:
    return Services(settings(), insights=semantic_insights)


@pytest.fixture(scope="module")
def api(services: Services) -> Iterator[Api]:
    with serve(services) as host:
        yield Api(host.base_url)


DAY9 = {"from": "2026-03-09T00:00:00Z", "to": "2026-03-10T00:00:00Z"}
HISTORY = {"from": "2026-03-01T00:00:00Z", "to": "2026-03-12T00:00:00Z"}


def window_args(window: dict[str, str]) -> list[str]:
    return ["--from", window["from"], "--to", window["to"]]


def test_timeseries_by_status_bins_final_statuses_by_event_time(api: Api, services: Services) -> None:
    reply = api.get("stats/timeseries", {**DAY9, "bin": "1h"})
    assert reply.status == 200, reply.body
    body = reply.json
    assert body == cli_json(services, ["timeseries", *window_args(DAY9), "--bin", "1h"])
    rows = [(row["time"][11:13], row["key"], row["count"]) for row in body["value"]]
    assert rows == [("08", "Bounced", 1), ("09", "Suppressed", 1), ("10", "Delivered", 2)]
    ten = body["value"][2]
    assert (ten["deliveryRate"], ten["binTotal"], ten["binDeliveryRate"]) == (100.0, 2, 100.0)
    assert (ten["p50LatencySeconds"], ten["p95LatencySeconds"]) == (4.0, 6.0)  # nina 4 s, oscar 6 s
    assert body["completeness"]["pendingRecipients"] == 3  # msg-12's recipients


def test_timeseries_by_domain_and_a_final_after_midnight(api: Api) -> None:
    # msg-08 was sent on the 10th and delivered at 00:01 on the 11th: it counts in the 11th's bin.
    body = api.get("stats/timeseries", {"from": "2026-03-11T00:00:00Z", "to": "2026-03-12T00:00:00Z", "by": "domain"})
    rows = [(row["time"][:13], row["key"], row["count"]) for row in body.json["value"]]
    assert rows == [("2026-03-11T00", "example.org", 1)]
    day9 = api.get("stats/timeseries", {**DAY9, "bin": "1d", "by": "domain", "sender": "news"}).json["value"]
    assert [(row["key"], row["count"], row["binTotal"]) for row in day9] == [("contoso.com", 1, 2), ("gmail.com", 1, 2)]


def test_timeseries_refuses_too_many_bins(api: Api) -> None:
    assert_problem(
        api.get("stats/timeseries", {"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z", "bin": "5m"}),
        400,
        "bin",
    )
    assert_problem(api.get("stats/timeseries", {"bin": "2h"}), 400, "bin")
    assert_problem(api.get("stats/timeseries", {"by": "sender"}), 400, "by")


def test_engagement_rates_among_delivered_mail(api: Api, services: Services) -> None:
    reply = api.get("stats/engagement", DAY9)
    assert reply.status == 200
    body = reply.json
    assert body == cli_json(services, ["engagement", *window_args(DAY9)])
    assert body["note"] == ENGAGEMENT_NOTE and "custom domains" in body["note"]
    rows = {row["key"]: row for row in body["value"]}
    news = rows["news@notify.contoso.com"]
    # nina viewed twice and clicked once; oscar never opened
    assert (news["delivered"], news["opened"], news["clicked"], news["views"], news["clicks"]) == (2, 1, 1, 2, 1)
    assert (news["openRate"], news["clickRate"]) == (50.0, 50.0)
    assert list(rows) == ["news@notify.contoso.com"]  # DoNotReply delivered nothing on the 9th
    by_domain = api.get("stats/engagement", {**DAY9, "by": "recipientDomain"}).json["value"]
    assert {row["key"]: row["opened"] for row in by_domain} == {"contoso.com": 1, "gmail.com": 0}
    spec = api.get("openapi.json").json["paths"]["/stats/engagement"]["get"]
    assert "custom domains" in spec["description"]


def test_recipient_history_names_the_hard_bounce_behind_a_suppression(
    api: Api, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reply = api.get(f"recipients/{quote('MALLORY@fabrikam.COM')}", HISTORY)
    assert reply.status == 200, reply.body
    body = reply.json
    assert body == cli_json(services, ["recipient", "mallory@FABRIKAM.com", *window_args(HISTORY)])
    assert [m["messageId"] for m in body["messages"]] == ["msg-10-suppressed", "msg-09-hard"]
    assert body["latestStatus"] == "Suppressed"
    cause = body["suppression"]
    assert (cause["messageId"], cause["smtpStatusCode"], cause["enhancedSmtpStatusCode"]) == (
        "msg-09-hard",
        "550",
        "5.1.1",
    )
    assert cause["time"].startswith("2026-03-09T08:00:02")
    assert cause["secondsBeforeSuppression"] == 3598.3
    assert cause["secondsAgo"] == pytest.approx((3 * 86400) + 4 * 3600 - 2)  # to FIXTURE_NOW 2026-03-12 12:00
    assert "mallory" not in caplog.text.lower()


def test_recipient_history_of_a_delivered_address_and_of_nobody(api: Api) -> None:
    body = api.get("recipients/nina@contoso.com", HISTORY).json
    assert body["latestStatus"] == "Delivered" and body["suppression"] is None
    assert [m["messageId"] for m in body["messages"]] == ["msg-11-engaged"]
    assert api.get("recipients/nobody@contoso.com", HISTORY).json == {
        "messages": [],
        "latestStatus": None,
        "suppression": None,
    }


def test_recipient_history_pending_without_final(api: Api) -> None:
    dave = api.get("recipients/dave@contoso.com", HISTORY).json
    assert dave["latestStatus"] == "OutForDelivery"
    assert dave["messages"][0]["finalDeliveryStatus"] is None


def test_recipient_bad_address_is_400_without_echo(api: Api) -> None:
    body = assert_problem(api.get("recipients/not-an-address"), 400, "address")
    assert "not-an-address" not in json.dumps(body)


def test_recipient_cli_bad_address_exits_2(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["recipient", "nope"], io.StringIO(), services=services) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" not in err


def test_recipient_address_reaches_log_analytics_only_obfuscated(services: Services) -> None:
    out = io.StringIO()
    assert (
        cli.run(["kql", "--engine", "log-analytics", "recipient", "Mallory@Fabrikam.com"], out, services=services) == 0
    )
    text = out.getvalue()
    assert 'h"Mallory@Fabrikam.com"' in text and text.count("Mallory@Fabrikam.com") == 1
