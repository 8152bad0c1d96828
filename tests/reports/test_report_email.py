"""The daily report email: the real azure-communication-email SDK against the loopback ACS stand-in,
the send records in Azurite. Once per day, never blocking, failures recorded and reported."""

from __future__ import annotations

import base64
import logging
import re
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from local.sample import fill_store
from local.store import open_store
from shared.report.email import (
    RETRIES,
    EmailSettings,
    ReportEmailError,
    operation_id,
    report_health,
    send_daily_report,
)
from shared.services import Services
from shared.summaries.table import REPORT_SENDS_PARTITION, SummaryStore

from acs_standin import AcsEmailStandIn, Failure, Throttle
from apphost import serve
from report_data import Day, write_days

DAY = date(2026, 11, 20)
SENDER = "DoNotReply@reports.contoso.com"


@pytest.fixture
def store(azurite_connection_string: str) -> Iterator[SummaryStore]:
    summary_store = SummaryStore.from_connection_string(azurite_connection_string, "Report" + uuid.uuid4().hex[:12])
    write_days(
        summary_store,
        {
            DAY - timedelta(days=1): Day(delivered=90, bounced=10, hard=6),
            DAY: Day(delivered=180, bounced=20, hard=12, domains={"contoso.com": (120, 8, 1.5, 20.0)}),
        },
    )
    yield summary_store
    summary_store.client.delete_table()
    summary_store.close()


@pytest.fixture
def acs() -> Iterator[AcsEmailStandIn]:
    with AcsEmailStandIn() as standin:
        yield standin


def email_settings(
    acs: AcsEmailStandIn, recipients: tuple[str, ...] = ("ops@contoso.com", "noc@fabrikam.com")
) -> EmailSettings:
    return EmailSettings(
        recipients=recipients,
        sender=SENDER,
        endpoint=None,
        connection_string=acs.connection_string,
        client_id=None,
    )


def test_the_report_goes_out_with_recipients_subject_html_and_inline_charts(
    store: SummaryStore, acs: AcsEmailStandIn
) -> None:
    settings = email_settings(acs)
    outcome = send_daily_report(store, None, DAY, settings)

    assert outcome["status"] == "sent"
    [request] = acs.sends()
    assert request.status == 202  # the stand-in verified the HMAC signature over the http:// endpoint
    assert request.headers["operation-id"] == operation_id(DAY, settings) == outcome["operationId"]
    assert request.query["api-version"] == ["2025-09-01"]
    message = request.body
    assert message is not None
    assert message["senderAddress"] == SENDER
    assert [r["address"] for r in message["recipients"]["to"]] == list(settings.recipients)
    assert DAY.isoformat() in message["content"]["subject"] and "200 sent" in message["content"]["subject"]
    html = message["content"]["html"]
    referenced = set(re.findall(r'src="cid:([^"]+)"', html))
    attached = {a["contentId"]: a for a in message["attachments"]}
    assert referenced == set(attached) == {"history", "latency"}
    for attachment in attached.values():
        assert attachment["contentType"] == "image/png"
        assert base64.b64decode(attachment["contentInBase64"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "data:image" not in html
    assert "Hard bounces" in message["content"]["plainText"]
    # One request only: no status polling (the SDK would poll every 30 s).
    assert [r.method for r in acs.requests] == ["POST"]


def test_a_retried_run_sends_nothing_twice(store: SummaryStore, acs: AcsEmailStandIn) -> None:
    settings = email_settings(acs)
    first = send_daily_report(store, None, DAY, settings)
    again = send_daily_report(store, None, DAY, settings)
    assert (first["status"], again["status"]) == ("sent", "skipped")
    assert len(acs.sends()) == 1 and len(acs.emails) == 1


def test_a_run_that_died_before_recording_resends_as_the_same_operation(
    store: SummaryStore, acs: AcsEmailStandIn
) -> None:
    settings = email_settings(acs)
    send_daily_report(store, None, DAY, settings)
    store.client.delete_entity(REPORT_SENDS_PARTITION, DAY.isoformat())  # the record never made it

    outcome = send_daily_report(store, None, DAY, settings)

    assert outcome["status"] == "sent"
    assert len(acs.sends()) == 2
    [email] = acs.emails.values()
    assert email.sends == 2 and email.operation_id == operation_id(DAY, settings)


def test_another_day_is_another_operation(store: SummaryStore, acs: AcsEmailStandIn) -> None:
    settings = email_settings(acs)
    send_daily_report(store, None, DAY, settings)
    send_daily_report(store, None, DAY - timedelta(days=1), settings)
    assert len(acs.emails) == 2


def test_a_short_throttle_is_waited_for_and_the_send_retried(store: SummaryStore, acs: AcsEmailStandIn) -> None:
    acs.script(Throttle(retry_after=1))
    outcome = send_daily_report(store, None, DAY, email_settings(acs))
    assert outcome["status"] == "sent"
    assert [r.status for r in acs.sends()] == [429, 202]
    assert len({r.headers["operation-id"] for r in acs.sends()}) == 1


def test_a_long_throttle_is_recorded_reported_and_not_waited_for(
    store: SummaryStore, acs: AcsEmailStandIn, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = email_settings(acs)
    configure(monkeypatch, settings)
    acs.script(Throttle(retry_after=3600))
    with caplog.at_level(logging.INFO):
        outcome = send_daily_report(store, None, DAY, settings)

    assert outcome["status"] == "failed" and "429" in outcome["error"]
    assert [r.status for r in acs.sends()] == [429]
    health = report_health(store, today=DAY + timedelta(days=1))
    assert not health.reachable and "429" in health.detail and DAY.isoformat() in health.detail
    for text in [health.detail, caplog.text, outcome["error"]]:
        assert not any(address.split("@")[0] in text for address in settings.recipients)

    # The next run (the throttle is over) sends it and health recovers.
    assert send_daily_report(store, None, DAY, settings)["status"] == "sent"
    assert report_health(store, today=DAY + timedelta(days=1)).reachable


def test_server_errors_are_retried_then_recorded_as_a_failure(
    store: SummaryStore, acs: AcsEmailStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = email_settings(acs)
    configure(monkeypatch, settings)
    acs.script(Failure(500, times=RETRIES + 1))
    outcome = send_daily_report(store, None, DAY, settings)
    assert outcome["status"] == "failed" and "500" in outcome["error"]
    assert len(acs.sends()) == RETRIES + 1 and not acs.emails
    record = store.report_send(DAY)
    assert record is not None and record["Status"] == "failed" and record["Attempts"] == 1

    acs.script(Failure(500))  # one more 500: the SDK's retry gets past it
    assert send_daily_report(store, None, DAY, settings)["status"] == "sent"
    record = store.report_send(DAY)
    assert record is not None and record["Status"] == "sent" and record["Attempts"] == 2


def test_a_wrong_access_key_is_refused_by_the_signature_check(store: SummaryStore, acs: AcsEmailStandIn) -> None:
    wrong = base64.b64encode(b"not the key of this resource, 32b").decode()
    settings = EmailSettings(
        recipients=("ops@contoso.com",),
        sender=SENDER,
        endpoint=None,
        connection_string=f"endpoint={acs.endpoint};accesskey={wrong}",
        client_id=None,
    )
    outcome = send_daily_report(store, None, DAY, settings)
    assert outcome["status"] == "failed" and "401" in outcome["error"]
    assert wrong not in outcome["error"]


def configure(monkeypatch: pytest.MonkeyPatch, settings: EmailSettings) -> None:
    monkeypatch.setenv("REPORT_RECIPIENTS", ",".join(settings.recipients))
    monkeypatch.setenv("REPORT_SENDER", settings.sender)
    monkeypatch.setenv("ACS_CONNECTION_STRING", settings.connection_string or "")


# --------------------------------------------------------------------------- settings


def test_settings_need_recipients_and_sender() -> None:
    assert EmailSettings.from_env({"REPORT_SENDER": SENDER}) is None
    assert EmailSettings.from_env({"REPORT_RECIPIENTS": "ops@contoso.com"}) is None
    parsed = EmailSettings.from_env(
        {
            "REPORT_RECIPIENTS": " ops@contoso.com; noc@fabrikam.com,ops@contoso.com ",
            "REPORT_SENDER": SENDER,
            "ACS_ENDPOINT": "https://acs.communication.azure.com",
            "AZURE_CLIENT_ID": "cid",
        }
    )
    assert parsed is not None and parsed.recipients == ("ops@contoso.com", "noc@fabrikam.com")
    assert parsed.endpoint == "https://acs.communication.azure.com" and parsed.client_id == "cid"


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"REPORT_RECIPIENTS": "secret-person", "REPORT_SENDER": SENDER, "ACS_ENDPOINT": "https://a"}, "address"),
        ({"REPORT_RECIPIENTS": "ops@contoso.com", "REPORT_SENDER": SENDER}, "ACS_ENDPOINT"),
    ],
)
def test_unusable_settings_say_which_without_quoting_them(environ: dict[str, str], needle: str) -> None:
    with pytest.raises(ReportEmailError) as caught:
        EmailSettings.from_env(environ)
    assert needle in caught.value.detail and "secret-person" not in caught.value.detail


def test_health_without_settings_is_fine(store: SummaryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REPORT_RECIPIENTS", "REPORT_SENDER"):
        monkeypatch.delenv(name, raising=False)
    health = report_health(store)
    assert health.reachable and "not configured" in health.detail


def test_the_managed_identity_client_signs_with_a_bearer_token() -> None:
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy

    from shared.report.email import make_email_client

    settings = EmailSettings(("ops@contoso.com",), SENDER, "https://acs.communication.azure.com", None, "client-id")
    client = make_email_client(settings)
    policies = client._client._pipeline._impl_policies  # type: ignore[attr-defined]
    assert any(isinstance(getattr(p, "_policy", p), BearerTokenCredentialPolicy) for p in policies)


# --------------------------------------------------------------------------- the timer


@pytest.fixture
def timer_env(
    tmp_path: Path, azurite_connection_string: str, acs: AcsEmailStandIn, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SummaryStore]:
    """The app's settings for a timer run: a sample log store whose last day is yesterday, Azurite, ACS."""

    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    con = open_store(tmp_path / "logs.duckdb")
    fill_store(con, messages=400, days=2, seed=5, end=yesterday)
    con.close()
    table = "Timer" + uuid.uuid4().hex[:12]
    for name, value in {
        "ACS_LOCAL_STORE": str(tmp_path / "logs.duckdb"),
        "AzureWebJobsStorage": azurite_connection_string,
        "SUMMARY_STORAGE": "AzureWebJobsStorage",
        "SUMMARY_TABLE": table,
        "SUMMARY_LOOKBACK_DAYS": "1",
        "SUMMARY_BACKFILL_DAYS": "1",
        "REPORT_RECIPIENTS": "ops@contoso.com",
        "REPORT_SENDER": SENDER,
        "ACS_CONNECTION_STRING": acs.connection_string,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LOG_ANALYTICS_WORKSPACE_ID", raising=False)
    summary_store = SummaryStore.from_connection_string(azurite_connection_string, table)
    yield summary_store
    summary_store.client.delete_table()
    summary_store.close()


def _run_timer() -> None:
    """The deployed timer, as the host runs it: the admin endpoint of the dev host over the app's own services."""
    services = Services.from_env()
    try:
        with serve(services) as host:
            request = urllib.request.Request(f"{host.base_url}/admin/functions/daily_summary", b"{}", method="POST")
            with urllib.request.urlopen(request, timeout=120) as response:
                assert response.status == 202
    finally:
        services.close()


def test_the_timer_sends_the_report_once_even_when_rerun(timer_env: SummaryStore, acs: AcsEmailStandIn) -> None:
    _run_timer()
    _run_timer()

    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    assert len(acs.sends()) == 1
    [email] = acs.emails.values()
    assert yesterday in email.message["content"]["subject"]


def test_a_failing_send_never_fails_the_timer(timer_env: SummaryStore, acs: AcsEmailStandIn) -> None:
    acs.script(Failure(500, times=RETRIES + 1))
    _run_timer()  # 202: the timer did not fail
    assert not report_health(timer_env).reachable
