"""Quota headroom, sender health and mailbox providers on the deliverability fixture, by use case, over real HTTP
(the local host) and the CLI. Every expected value is explained in tests/fixtures/deliverability/EXPECTED.md."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_http_api import Api, assert_problem, cli_json

from local.embedded import DuckDbSource
from local.store import open_store
from shared import cli
from shared.api.render import to_body
from shared.deliverability.health import judge, rates, sender_health
from shared.deliverability.models import ProviderStatsParams, QuotaParams, SenderHealthParams
from shared.deliverability.providers import provider_stats
from shared.deliverability.quota import minutes_to_limit, quota
from shared.insights import Insights
from shared.kql.builder import Window
from shared.kql.deliverability import build_sender_health_alert_query
from shared.kql.literals import string_literal
from shared.kql.query import KqlQuery
from shared.models import SearchParams, TraceParams
from shared.providers import PROVIDER_TABLES, host_depths, provider_of, provider_rows
from shared.services import Services
from shared.settings import HealthThresholds, Settings

from apphost import serve, settings

FIXTURE = Path(__file__).parents[1] / "fixtures" / "deliverability"
#: "Now" for the fixture: the end of its main day, 2026-04-01.
NOW = datetime(2026, 4, 2, tzinfo=UTC)
DAY = {"from": "2026-04-01T00:00:00Z", "to": "2026-04-02T00:00:00Z"}


@pytest.fixture(scope="module")
def insights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Insights]:
    from local.importers import import_paths

    path = tmp_path_factory.mktemp("deliverability") / "store.duckdb"
    con = open_store(path)
    import_paths(con, [FIXTURE])
    con.close()
    source = DuckDbSource(path)
    yield Insights(source, clock=lambda: NOW)
    source.close()


def limits(minute: int = 30, hour: int = 100, **extra: str) -> Settings:
    return Settings.from_env({"SEND_LIMIT_PER_MINUTE": str(minute), "SEND_LIMIT_PER_HOUR": str(hour), **extra})


def quota_body(insights: Insights, config: Settings, **params: str) -> dict[str, Any]:
    return to_body(quota(insights, QuotaParams.model_validate({**DAY, **params}), config))


# --------------------------------------------------------------------------- quota


def test_quota_counts_send_requests_per_minute_and_hour_with_recipients_beside(insights: Insights) -> None:
    body = quota_body(insights, limits())
    assert (body["messages"], body["recipients"]) == (11, 14)
    minute, hour = body["minute"], body["hour"]
    assert (minute["busyPeriods"], minute["peakMessages"], minute["peakRecipients"]) == (7, 4, 6)
    assert (hour["busyPeriods"], hour["peakMessages"], hour["peakRecipients"]) == (3, 7, 9)
    assert minute["p95Messages"] == 4 and hour["p95Messages"] == 7  # p95 of few periods: the largest
    assert (minute["limit"], minute["headroomPercent"], minute["periodsOverLimit"]) == (30, 86.67, 0)
    assert (hour["limit"], hour["headroomPercent"], hour["periodsOverLimit"]) == (100, 93.0, 0)
    busiest = [(row["time"][11:16], row["messages"], row["recipients"]) for row in body["busiestMinutes"]]
    assert busiest == [("10:00", 4, 6), ("10:01", 2, 2), ("10:30", 1, 1), ("11:10", 1, 2), ("12:00", 1, 1)]


def test_quota_limits_come_from_the_settings(insights: Insights) -> None:
    body = quota_body(insights, limits(minute=3, hour=5))
    assert (body["minute"]["limit"], body["minute"]["periodsOverLimit"]) == (3, 1)  # 10:00 held 4
    assert body["minute"]["headroomPercent"] == -33.33
    assert (body["hour"]["limit"], body["hour"]["periodsOverLimit"], body["hour"]["headroomPercent"]) == (5, 1, -40.0)
    with pytest.raises(ValueError, match="SEND_LIMIT_PER_MINUTE"):
        limits(minute=0)


def test_the_hourly_limit_is_reached_in_twenty_minutes_at_the_last_hours_rate(insights: Insights) -> None:
    # [09:02, 10:02): 6 messages, 0.1 a minute; 2 more reach 8 after 20 minutes, before any send rolls out.
    body = quota_body(insights, limits(hour=8), to="2026-04-01T10:02:00Z")
    last = body["lastHour"]
    assert (last["start"][11:16], last["messages"], last["recipients"]) == ("09:02", 6, 8)
    assert (last["ratePerMinute"], last["minutesToLimit"], last["headroomPercent"]) == (0.1, 20, 25.0)
    assert "reached in 20 minutes" in last["note"]
    assert quota_body(insights, limits(hour=6), to="2026-04-01T10:02:00Z")["lastHour"]["minutesToLimit"] == 0
    assert quota_body(insights, limits(hour=100), to="2026-04-01T10:02:00Z")["lastHour"]["minutesToLimit"] is None


def test_minutes_to_limit_lets_old_sends_roll_out_of_the_sliding_hour() -> None:
    start = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
    # 9 sends in the hour's first minute: they roll out after a minute, and 0.15 a minute never makes 10.
    assert minutes_to_limit({start: 9}, start, 10) is None
    # 9 sends in its last minute: 9 + 0.15 * 7 >= 10 at minute 7.
    assert minutes_to_limit({start.replace(minute=59): 9}, start, 10) == 7
    assert minutes_to_limit({}, start, 10) is None


def test_quota_evidence_peaks_failure_rates_and_suppression_sync(insights: Insights) -> None:
    evidence = quota_body(insights, limits())["evidence"]
    peaks = {row["period"]: row for row in evidence["peaks"]}
    assert (peaks["minute"]["peakMessages7d"], peaks["hour"]["peakMessages7d"]) == (4, 7)
    assert (peaks["day"]["peakMessages7d"], peaks["day"]["peakRecipients7d"]) == (11, 14)
    assert peaks["day"]["peakMessages30d"] == 11
    domains = {row["senderDomain"]: row for row in evidence["senderDomains"]}
    # contoso.com over 7 days: 13 recipients (2 on 03-31, 11 on 04-01), 2 not delivered
    assert (domains["contoso.com"]["recipients"], domains["contoso.com"]["failureRate"]) == (13, 15.38)
    assert domains["contoso.com"]["underBar"] is False and domains["notify.contoso.com"]["underBar"] is True
    assert evidence["allDomainsUnderBar"] is False and evidence["suppressionSync"] is False
    synced = quota_body(insights, limits(SUPPRESSION_LIST_ID="/subscriptions/x/suppressionLists/y"))
    assert synced["evidence"]["suppressionSync"] is True


def test_quota_sender_domain_filter(insights: Insights) -> None:
    body = quota_body(insights, limits(), senderDomain="NOTIFY.contoso.com")
    assert (body["messages"], body["minute"]["peakMessages"], body["hour"]["peakMessages"]) == (3, 1, 3)
    assert [row["senderDomain"] for row in body["evidence"]["senderDomains"]] == ["notify.contoso.com"]


# --------------------------------------------------------------------------- sender health


def health(insights: Insights, thresholds: HealthThresholds | None = None, **params: str) -> dict[str, Any]:
    result = sender_health(insights, SenderHealthParams.model_validate(params), thresholds or HealthThresholds())
    return to_body(result)


def test_health_rates_and_the_previous_window(insights: Insights) -> None:
    body = health(insights)  # 24 h back from now (2026-04-02 00:00)
    assert (body["from"][:10], body["to"][:10], body["previousFrom"][:10]) == ("2026-04-01", "2026-04-02", "2026-03-31")
    domains = {row["senderDomain"]: row for row in body["value"]}
    contoso = domains["contoso.com"]
    current = contoso["current"]
    assert (current["recipients"], current["delivered"], current["failures"]) == (11, 9, 2)
    assert (current["failureRate"], current["hardBounceRate"], current["spamRate"]) == (18.18, 9.09, 9.09)
    assert (contoso["previous"]["recipients"], contoso["previous"]["failureRate"]) == (2, 0.0)
    assert contoso["failureRateUnderBar"] is False
    news = domains["notify.contoso.com"]
    assert (news["verdict"], news["reasons"], news["previous"]["failureRate"]) == ("ok", [], None)
    assert [s["sender"] for s in contoso["senders"]] == ["DoNotReply@contoso.com"]


def test_too_few_recipients_make_an_at_risk_domain_only_watched(insights: Insights) -> None:
    body = health(insights)
    contoso = body["value"][0]
    assert contoso["senderDomain"] == "contoso.com" and contoso["verdict"] == "watch" and body["verdict"] == "watch"
    assert any("hard-bounce rate 9.09 % is at or above the at risk level of 5 %" in r for r in contoso["reasons"])
    assert any("only 11 recipients" in r for r in contoso["reasons"])
    at_risk = health(insights, HealthThresholds(min_recipients=10))
    assert at_risk["verdict"] == "atRisk" and at_risk["value"][0]["verdict"] == "atRisk"


def test_health_thresholds_come_from_the_settings(insights: Insights) -> None:
    lenient = HealthThresholds.from_env(
        {
            "HEALTH_HARD_BOUNCE_WATCH_PERCENT": "50",
            "HEALTH_HARD_BOUNCE_AT_RISK_PERCENT": "60",
            "HEALTH_SPAM_WATCH_PERCENT": "50",
            "HEALTH_SPAM_AT_RISK_PERCENT": "60",
            "HEALTH_FAILURE_WATCH_PERCENT": "50",
            "HEALTH_MIN_RECIPIENTS": "1",
        }
    )
    assert health(insights, lenient)["verdict"] == "ok"
    spam_only = HealthThresholds(hard_bounce_watch=50, hard_bounce_at_risk=50, failure_watch=50, min_recipients=1)
    contoso = health(insights, spam_only)["value"][0]
    assert contoso["verdict"] == "atRisk" and len(contoso["reasons"]) == 1 and "spam" in contoso["reasons"][0]
    with pytest.raises(ValueError, match="HEALTH_SPAM_WATCH_PERCENT"):
        HealthThresholds.from_env({"HEALTH_SPAM_WATCH_PERCENT": "-1"})


def test_health_windows_and_filters(insights: Insights) -> None:
    week = health(insights, window="7d")
    assert week["from"][:10] == "2026-03-26" and week["value"][0]["current"]["recipients"] == 13
    news = health(insights, sender="news@notify.contoso.com")
    assert [row["senderDomain"] for row in news["value"]] == ["notify.contoso.com"]
    early = health(insights, **{"from": "2026-04-01T10:00:00Z", "to": "2026-04-01T10:02:00Z"})
    assert early["previousFrom"][11:16] == "09:58" and early["value"][0]["current"]["recipients"] == 8


@pytest.mark.parametrize(
    "thresholds",
    [
        HealthThresholds(),
        HealthThresholds(min_recipients=10),
        HealthThresholds(hard_bounce_at_risk=10, spam_at_risk=10, min_recipients=1),
        HealthThresholds(
            hard_bounce_watch=50, hard_bounce_at_risk=50, spam_watch=50, spam_at_risk=50, failure_watch=50
        ),
    ],
)
def test_the_alert_rules_kql_verdict_is_the_apis(insights: Insights, thresholds: HealthThresholds) -> None:
    window = Window(datetime(2026, 4, 1, tzinfo=UTC), NOW)
    query = build_sender_health_alert_query(thresholds.rules(), thresholds.min_recipients, window)
    (row,) = insights.run_query(query).records()
    verdicts = [d["verdict"] for d in health(insights, thresholds)["value"]]
    assert row["AtRiskDomains"] == verdicts.count("atRisk") and row["WatchDomains"] == verdicts.count("watch")
    assert row["Domains"] == 2


def test_judge_names_each_metric_once_at_its_highest_level() -> None:
    current = rates({"recipients": 100, "delivered": 90, "hard_bounces": 6, "spam": 0})
    verdict, reasons = judge(current, rates({}), HealthThresholds())
    assert verdict == "atRisk"
    assert len(reasons) == 2 and "at risk level of 5 %" in reasons[0] and "no sends in the previous" in reasons[0]
    assert "failure rate 10.00 %" in reasons[1]


# --------------------------------------------------------------------------- mailbox providers


def test_provider_stats_per_mailbox_provider(insights: Insights) -> None:
    body = to_body(provider_stats(insights, ProviderStatsParams.model_validate(DAY)))
    rows = {row["provider"]: row for row in body["value"]}
    assert {name: row["recipients"] for name, row in rows.items()} == {
        "Google": 3,
        "Microsoft 365": 2,
        "Outlook.com": 2,
        "Apple iCloud": 2,
        "Yahoo/AOL": 1,
        "GMX/Web.de": 1,
        "Proofpoint": 1,
        "Other": 1,
        "Unknown": 1,
    }
    google = rows["Google"]
    assert (google["delivered"], google["deliveryRate"], google["bounceRate"], google["hardBounceRate"]) == (
        2,
        66.67,
        33.33,
        33.33,
    )
    assert (google["p50LatencySeconds"], google["p95LatencySeconds"]) == (4.0, 6.0)
    (code,) = google["topFailureCodes"]
    assert (code["finalDeliveryStatus"], code["enhancedSmtpStatusCode"], code["count"]) == ("Bounced", "5.1.1", 1)
    assert (rows["Proofpoint"]["spam"], rows["Proofpoint"]["spamRate"]) == (1, 100.0)
    assert body["value"][0]["provider"] == "Google"  # most recipients first
    top = to_body(provider_stats(insights, ProviderStatsParams.model_validate({**DAY, "top": 2})))
    assert len(top["value"]) == 2


def test_search_rows_and_trace_recipients_name_the_provider(insights: Insights) -> None:
    rows = to_body(insights.search(SearchParams.model_validate(DAY)))["value"]
    providers = {row["recipientId"]: row["provider"] for row in rows}
    assert providers["f@fabrikam.com"] == "Microsoft 365"  # host in capitals
    assert providers["j@me.com"] == "Apple iCloud"  # no host: the domain tells
    assert providers["n@unknown-isp.net"] == "Unknown" and providers["g@example.org"] == "Other"
    trace = to_body(insights.trace(TraceParams(message_id="dl-01")))
    assert {r["recipientId"]: r["provider"] for r in trace["recipients"]} == {
        "a@gmail.com": "Google",
        "b@contoso.com": "Microsoft 365",
        "c@outlook.com": "Outlook.com",
    }


HOSTILE_HOSTS = [
    "",
    "google.com",
    "xgoogle.com",
    "a.b.c.d.e.google.com.",
    "GOOGLE.COM",
    "mail.icloud.com",
    "icloud.com",
]


def test_kql_and_python_name_the_same_provider_for_every_catalog_entry(insights: Insights) -> None:
    cases = [
        (f"mx.{suffix}", "")
        for name in PROVIDER_TABLES
        if name != "MailboxProviderDomains"
        for suffix, _ in provider_rows(name)
    ]
    cases += [("", domain) for domain, _ in provider_rows("MailboxProviderDomains")]
    cases += [(host, "example.com") for host in HOSTILE_HOSTS] + [("mx.example.net", "gmail.com"), ('"|x', "")]
    rows = ",\n".join(f"{string_literal(host)}, {string_literal(domain)}" for host, domain in cases)
    from shared.providers import PROVIDER_ENRICHMENT

    body = "\n".join(
        [
            f"datatable(RecipientMailServerHostName:string, RecipientDomain:string)[\n{rows}\n]",
            PROVIDER_ENRICHMENT,
            "| project RecipientMailServerHostName, RecipientDomain, MailboxProvider",
        ]
    )
    result = insights.run_query(KqlQuery("adhoc", body, (), (NOW, NOW)))
    answers = {
        (r["RecipientMailServerHostName"] or "", r["RecipientDomain"] or ""): r["MailboxProvider"]
        for r in result.records()
    }
    assert len(answers) == len(set(cases))
    for (host, domain), provider in answers.items():
        assert provider == provider_of(host, domain), (host, domain)
    assert answers[("xgoogle.com", "example.com")] == "Other" and answers[("GOOGLE.COM", "example.com")] == "Google"
    assert answers[("icloud.com", "example.com")] == "Other"  # only mail.icloud.com hosts are Apple's
    assert host_depths() == (4, 3, 2)


# --------------------------------------------------------------------------- HTTP and CLI


@pytest.fixture(scope="module")
def services(insights: Insights) -> Services:
    return Services(settings(send_limit_per_minute=3, send_limit_per_hour=8), insights=insights, clock=lambda: NOW)


@pytest.fixture(scope="module")
def api(services: Services) -> Iterator[Api]:
    with serve(services) as host:
        yield Api(host.base_url)


def test_routes_answer_as_the_cli(api: Api, services: Services) -> None:
    window = ["--from", DAY["from"], "--to", DAY["to"]]
    reply = api.get("sending/quota", DAY)
    assert reply.status == 200, reply.body
    assert reply.json == cli_json(services, ["quota", *window])
    assert reply.json["minute"]["limit"] == 3 and reply.json["minute"]["periodsOverLimit"] == 1
    reply = api.get("senders/health", {"to": DAY["to"], "window": "24h"})
    assert reply.status == 200 and reply.json["verdict"] == "watch"
    assert reply.json == cli_json(services, ["health", "--to", DAY["to"], "--window", "24h"])
    reply = api.get("stats/providers", DAY)
    assert reply.status == 200 and reply.json["value"][0]["provider"] == "Google"
    assert reply.json == cli_json(services, ["providers", *window])


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("sending/quota", {"from": "2026-04-02T00:00:00Z", "to": "2026-04-01T00:00:00Z"}, None),
        ("sending/quota", {"senderDomain": 'x" | take 1'}, "senderDomain"),
        ("sending/quota", {"resourceId": "/subscriptions/x\n| union *"}, "resourceId"),
        ("sending/quota", {"from": "1999-01-01T00:00:00Z"}, "from"),
        ("senders/health", {"window": "1y"}, "window"),
        ("senders/health", {"window": "7d", "from": "2026-04-01T00:00:00Z"}, None),
        ("senders/health", {"sender": "a\"b@x'y"}, "sender"),
        ("senders/health", {"extra": "1"}, "extra"),
        ("stats/providers", {"top": "0"}, "top"),
        ("stats/providers", {"from": "2026-01-01T00:00:00Z", "to": "2026-04-30T00:00:00Z"}, None),
    ],
)
def test_bad_input_is_a_400_problem(api: Api, path: str, params: dict[str, str], parameter: str | None) -> None:
    assert_problem(api.get(path, params), 400, parameter)


def test_cli_bad_input_exits_2_with_one_line(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["health", "--window", "30d"], ["quota", "--sender-domain", "a b"], ["providers", "--top", "-1"]):
        assert cli.run(argv, io.StringIO(), services=services) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1, err


# --------------------------------------------------------------------------- the daily report


@pytest.fixture
def summary_store(azurite_connection_string: str) -> Iterator[Any]:
    import uuid

    from shared.summaries.table import SummaryStore

    store = SummaryStore.from_connection_string(azurite_connection_string, "Health" + uuid.uuid4().hex[:12])
    store.ensure_table()
    yield store
    store.client.delete_table()
    store.close()


def test_the_daily_report_shows_each_sender_domains_verdict(insights: Insights, summary_store: Any) -> None:
    from datetime import date

    from shared.report.daily import build_daily_report
    from shared.report.html import render_report_html, render_report_text
    from shared.summaries.job import summarize_one_day

    for day in (date(2026, 3, 31), date(2026, 4, 1)):
        summarize_one_day(insights, summary_store, day, today=date(2026, 4, 3))
    report = build_daily_report(summary_store, None, date(2026, 4, 1), now=NOW)
    verdicts = {e.sender_domain: (e.verdict, e.recipients, e.hard_bounce_rate) for e in report.sender_health}
    # the summaries give the API's numbers: contoso.com watched (11 recipients < 20), notify.contoso.com ok
    assert verdicts == {"contoso.com": ("watch", 11, 9.09), "notify.contoso.com": ("ok", 3, 0.0)}
    assert report.sender_health[0].previous_day_hard_bounce_rate == 0.0
    api = {d["senderDomain"]: d["verdict"] for d in health(insights)["value"]}
    assert {domain: v[0] for domain, v in verdicts.items()} == api
    strict = build_daily_report(
        summary_store, None, date(2026, 4, 1), now=NOW, health=HealthThresholds(min_recipients=5)
    )
    assert strict.sender_health[0].verdict == "atRisk"
    html = render_report_html(strict)
    assert "Sender health" in html and 'data-verdict="atRisk"' in html and "contoso.com" in html
    assert "Sender health contoso.com: atRisk" in render_report_text(strict)
