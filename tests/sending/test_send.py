"""Send and track (issue 17, part 5): ``POST /api/messages`` through the dev host, the real
azure-communication-email SDK against the loopback ACS stand-in (HMAC verified), the state on Azurite and the
events through the host's Event Grid webhook. One send per repeatabilityRequestId, nothing sent on bad input,
ACS's throttle passed on, no address in any log line."""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from local.embedded import DuckDbSource
from shared.api.dispatch import dispatch
from shared.api.spec import OPERATIONS_BY_NAME
from shared.insights import Insights
from shared.services import Services
from shared.state.store import StateStore

from acs_standin import AcsEmailStandIn, Failure, Throttle
from apphost import serve, settings
from test_push import Receiver, call, event, run_timer, send_events

SENDER = "DoNotReply@send.contoso.com"
TO, CC, BCC = "Ann@Contoso.com", "bo@fabrikam.com", "cy@example.org"
ADDRESSES = (SENDER, TO, CC, BCC)


def message(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "senderAddress": SENDER,
        "recipients": {
            "to": [{"address": TO, "displayName": "Ann"}],
            "cc": [{"address": CC}],
            "bcc": [{"address": BCC}, {"address": "ann@contoso.COM"}],  # Ann again, in another case
        },
        "content": {"subject": "Invoice 42", "plainText": "Hello", "html": "<p>Hello</p>"},
        "attachments": [{"name": "a.txt", "contentType": "text/plain", "contentInBase64": "aGVsbG8="}],
    }
    body.update(overrides)
    return body


@dataclass
class World:
    services: Services
    acs: AcsEmailStandIn
    tables: dict[str, str]


@pytest.fixture
def world(semantic_store: Path, azurite_connection_string: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("AzureWebJobsStorage", azurite_connection_string)
    tables = {"state_table": "Send" + uuid.uuid4().hex[:10], "subscriptions_table": "Subs" + uuid.uuid4().hex[:10]}
    monkeypatch.setenv("STATE_TABLE", tables["state_table"])
    source = DuckDbSource(semantic_store)
    with AcsEmailStandIn() as acs:
        services = Services(
            settings(**tables, acs_connection_string=acs.connection_string, acs_endpoint=None),
            insights=Insights(source),
        )
        yield World(services, acs, tables)
        services.close()
    source.close()
    for name in tables.values():
        for suffix in ("", "Journal"):
            client = StateStore.from_connection_string(azurite_connection_string, name + suffix).client
            client.delete_table()
            client.close()


def post(base_url: str, body: Any) -> tuple[int, dict[str, str], Any]:
    return call("POST", f"{base_url}/api/messages", body)


def poll(location: str) -> tuple[int, dict[str, str], Any]:
    """GET the Location as Power Automate does: no function key, no other header."""
    return call("GET", location)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------- the happy path


def test_send_answers_202_registers_at_once_and_the_location_polls_to_final(world: World) -> None:
    with serve(world.services) as host:
        status, headers, accepted = post(host.base_url, message())
        assert status == 202, accepted
        mid = accepted["messageId"]
        # One email, whose Operation-Id is the message id, with the body as given (the stand-in checked the HMAC).
        [request] = world.acs.sends()
        assert request.status == 202 and request.headers["operation-id"] == mid
        assert world.acs.emails[mid].message == message()
        assert accepted["registered"] is True and accepted["expectedRecipients"] == 3 and "warning" not in accepted
        location = headers["Location"]
        assert location.startswith(f"{host.base_url}/api/messages/{mid}/poll?token=") and "code=" not in location
        assert int(headers["Retry-After"]) > 0
        # Registered before the answer: the trace waits for each address from the first second.
        status, _, pending = poll(location)
        assert status == 202, pending
        assert sorted(pending["pendingRecipients"]) == sorted([TO, CC, BCC])
        assert pending["expectedRecipients"] == 3
        # The events make it final; the Location (renewed by each 202) ends with the final trace.
        at = now_iso()
        assert send_events(host.base_url, [event(mid, TO.lower(), "Delivered", at)]) in (200, 202)
        status, headers, pending = poll(location)
        assert status == 202 and sorted(pending["pendingRecipients"]) == sorted([CC, BCC])
        events = [event(mid, CC, "Delivered", at), event(mid, BCC.upper(), "Bounced", at)]
        assert send_events(host.base_url, events) in (200, 202)
        status, _, final = poll(headers["Location"])
    assert status == 200, final
    assert (final["messageId"], final["state"], final["outcome"]) == (mid, "final", "partiallyDelivered")


def test_a_message_subscription_after_the_send_gets_the_final_trace_once_events_make_it_final(world: World) -> None:
    """The registration sits in the message entity; the event creates the recipient's: the fold that makes the
    message final must still see the registration (it once judged the change without it, and never pushed)."""
    receiver = Receiver()
    try:
        with serve(world.services) as host:
            status, _, accepted = post(host.base_url, message(recipients={"to": [{"address": TO}]}))
            assert status == 202, accepted
            mid = accepted["messageId"]
            run_timer(host.base_url)  # folds the registration (no subscriber yet)
            hook = {"callbackUrl": receiver.url, "messageId": mid}
            assert call("POST", f"{host.base_url}/api/subscriptions", hook)[0] == 201
            assert send_events(host.base_url, [event(mid, TO, "Delivered", now_iso())]) in (200, 202)
            run_timer(host.base_url)  # folds the event: the message became final, its push is due now
            receiver.wait_for(1)
    finally:
        receiver.close()
    [(_, body)] = [(headers, json.loads(raw)) for headers, raw in receiver.received]
    assert (body["messageId"], body["state"], body["outcome"]) == (mid, "final", "delivered")


def test_a_large_attachment_within_acs_limit_is_sent_intact_and_one_past_it_is_refused(world: World) -> None:
    """The operation's own body limit (10 MB, ACS's), not the 64 KB of the other routes."""
    payload = bytes(range(256)) * 1024  # 256 KB, binary
    attachment = {"name": "a.bin", "contentType": "application/octet-stream"}
    attachment["contentInBase64"] = base64.b64encode(payload).decode()
    with serve(world.services) as host:
        status, _, accepted = post(host.base_url, message(attachments=[attachment]))
        assert status == 202, accepted
        sent = world.acs.emails[accepted["messageId"]].message["attachments"][0]["contentInBase64"]
        assert base64.b64decode(sent) == payload
    # One byte past ACS's 10 MB: refused before anything is sent (called directly: the dev host's own 10 MB
    # limit would answer 413 first).
    huge = json.dumps(message(attachments=[dict(attachment, contentInBase64="A" * (10 * 1024 * 1024))])).encode()
    request = func.HttpRequest("POST", "http://127.0.0.1/api/messages", body=huge)
    answer = dispatch(OPERATIONS_BY_NAME["send_message"], request, lambda: world.services)
    assert answer.status_code == 400 and b"10485760 bytes" in answer.get_body()
    assert len(world.acs.sends()) == 1


# --------------------------------------------------------------------------- one send per request id


def test_a_retried_call_with_the_same_request_id_is_one_send_with_the_same_id(world: World) -> None:
    request_id = str(uuid.uuid4())
    with serve(world.services) as host:
        first = post(host.base_url, message(repeatabilityRequestId=request_id))
        again = post(host.base_url, message(repeatabilityRequestId=request_id))
        other = post(host.base_url, message(repeatabilityRequestId=str(uuid.uuid4())))
        fresh = [post(host.base_url, message())[2]["messageId"] for _ in range(2)]
        # The same id for other recipients: refused before anything is sent.
        before = len(world.acs.sends())
        changed = post(host.base_url, message(repeatabilityRequestId=request_id, recipients={"to": [{"address": CC}]}))
        assert len(world.acs.sends()) == before
    assert first[0] == again[0] == other[0] == 202
    mid = first[2]["messageId"]
    assert again[2]["messageId"] == mid and again[2]["registered"] is True
    assert other[2]["messageId"] != mid and fresh[0] != fresh[1]
    assert world.acs.emails[mid].sends == 2  # ACS saw the same operation twice: one email
    assert len(world.acs.emails) == 4
    assert changed[0] == 409 and changed[2]["messageId"] == mid


# --------------------------------------------------------------------------- ACS faults


def test_acs_throttling_is_passed_on_as_429_with_its_retry_after_and_not_retried(world: World) -> None:
    world.acs.script(Throttle(retry_after=7))
    with serve(world.services) as host:
        status, headers, problem = post(host.base_url, message(repeatabilityRequestId="r-429"))
        assert status == 429 and headers["Content-Type"].startswith("application/problem+json"), problem
        assert headers["Retry-After"] == "7"
        assert len(world.acs.sends()) == 1 and world.acs.emails == {}
        # Nothing registered for a message that was not sent; the retry after the wait sends it.
        status, _, accepted = post(host.base_url, message(repeatabilityRequestId="r-429"))
    assert status == 202 and len(world.acs.emails) == 1, accepted


def test_a_500_is_retried_once_with_the_same_operation_then_answered_503(world: World) -> None:
    world.acs.script(Failure(500))
    with serve(world.services) as host:
        status, _, accepted = post(host.base_url, message())
        assert status == 202, accepted
        operations = {r.headers["operation-id"] for r in world.acs.sends()}
        assert operations == {accepted["messageId"]} and len(world.acs.sends()) == 2
        world.acs.script(Failure(503, times=2))
        status, headers, problem = post(host.base_url, message())
    assert status == 503 and int(headers["Retry-After"]) > 0, problem
    assert len(world.acs.emails) == 1


def test_a_503_asking_for_a_longer_wait_than_the_budget_is_answered_at_once_with_its_retry_after(world: World) -> None:
    world.acs.script(Failure(503, retry_after=120))
    with serve(world.services) as host:
        started = time.monotonic()
        status, headers, problem = post(host.base_url, message())
        took = time.monotonic() - started
    assert status == 503 and headers["Retry-After"] == "120", problem
    assert len(world.acs.sends()) == 1 and took < 10  # not retried after a 120 s sleep


def test_acs_400_is_a_400_with_its_code_and_bad_credentials_a_502_naming_the_role(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.acs.script(Failure(400))
    with serve(world.services) as host:
        status, _, problem = post(host.base_url, message())
    assert status == 400 and problem["acsErrorCode"] == "InternalServerError", problem
    wrong_key = f"endpoint={world.acs.endpoint};accesskey={base64.b64encode(b'x' * 32).decode()}"
    services = Services(settings(**world.tables, acs_connection_string=wrong_key), insights=world.services.insights)
    with serve(services) as host:
        status, _, problem = post(host.base_url, message())
    services.close()
    assert status == 502 and "role" in problem["detail"] and "acs-sender.bicep" in problem["detail"], problem
    assert world.acs.emails == {}


def test_acs_unreachable_is_503_within_the_budget(world: World) -> None:
    dead = f"endpoint=http://127.0.0.1:9/;accesskey={world.acs.access_key}"
    services = Services(settings(**world.tables, acs_connection_string=dead), insights=world.services.insights)
    with serve(services) as host:
        started = time.monotonic()
        status, headers, problem = post(host.base_url, message())
    services.close()
    assert status == 503 and int(headers["Retry-After"]) > 0, problem
    assert time.monotonic() - started < services.settings.request_budget_seconds


def test_not_configured_is_503_naming_the_settings_and_sends_nothing(world: World) -> None:
    services = Services(
        settings(**world.tables, acs_connection_string=None, acs_endpoint=None), insights=world.services.insights
    )
    with serve(services) as host:
        status, _, problem = post(host.base_url, message())
    services.close()
    assert status == 503 and "ACS_ENDPOINT" in problem["detail"] and "ACS_CONNECTION_STRING" in problem["detail"]


def test_a_registration_that_fails_after_the_send_still_answers_202_with_a_warning(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    down = StateStore.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1",
        "State",
    )
    services = Services(
        settings(**world.tables, acs_connection_string=world.acs.connection_string),
        insights=world.services.insights,
        state=down,
    )
    with caplog.at_level(logging.INFO), serve(services) as host:
        status, headers, accepted = post(host.base_url, message())
    services.close()
    assert status == 202 and accepted["registered"] is False and "registered" in accepted["warning"], accepted
    assert "Location" in headers and len(world.acs.emails) == 1
    assert "not registered" in caplog.text
    assert not any(address.lower() in caplog.text.lower() for address in ADDRESSES)


# --------------------------------------------------------------------------- bad input


BAD_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("senderAddress", message(senderAddress="not-an-address")),
    ("senderAddress", message(senderAddress=None)),
    ("recipients", message(recipients={"to": [], "cc": [], "bcc": []})),
    ("recipients", message(recipients={"to": [{"address": f"u{i}@x.com"} for i in range(51)]})),
    ("recipients.to.0.address", message(recipients={"to": [{"address": "a@b.com\nBcc: c@d.com"}]})),
    ("recipients.cc.0.address", message(recipients={"to": [{"address": TO}], "cc": [{"address": "x"}]})),
    ("recipients.bcc.0.displayName", message(recipients={"bcc": [{"address": TO, "displayName": "a\r\nb"}]})),
    ("recipients.to.0.name", message(recipients={"to": [{"address": TO, "name": "Ann"}]})),
    ("content", message(content={"subject": "Hi"})),
    ("content.subject", message(content={"subject": "", "plainText": "x"})),
    ("content.subject", message(content={"subject": "a\nb", "plainText": "x"})),
    (
        "attachments.0.contentInBase64",
        message(attachments=[{"name": "a", "contentType": "text/plain", "contentInBase64": "not base64!"}]),
    ),
    (
        "attachments.0.contentType",
        message(attachments=[{"name": "a", "contentType": "text", "contentInBase64": "aGk="}]),
    ),
    ("attachments.0.name", message(attachments=[{"contentType": "text/plain", "contentInBase64": "aGk="}])),
    ("replyTo.0.address", message(replyTo=[{"address": "nobody"}])),
    ("headers.x-a", message(headers={"x-a": "b\r\nBcc: c@d.com"})),
    ("userEngagementTrackingDisabled", message(userEngagementTrackingDisabled="maybe")),
    ("repeatabilityRequestId", message(repeatabilityRequestId="x" * 129)),
    ("repeatabilityRequestId", message(repeatabilityRequestId="a\nb")),
    ("unknownField", message(unknownField=1)),
]


def test_bad_input_at_every_field_is_400_naming_it_and_nothing_is_sent(world: World) -> None:
    with serve(world.services) as host:
        answers = [(field, post(host.base_url, body)) for field, body in BAD_BODIES]
        raw = call("POST", f"{host.base_url}/api/messages", raw=b"[1, 2]")
        garbage = call("POST", f"{host.base_url}/api/messages", raw=b"{not json")
    for field, (status, headers, problem) in answers:
        assert status == 400 and headers["Content-Type"].startswith("application/problem+json"), (field, problem)
        named = [error["parameter"] for error in problem["errors"]]
        assert any(name.startswith(field) for name in named), (field, named)
        assert not any(address.lower() in json.dumps(problem).lower() for address in (TO, CC, BCC))
    assert raw[0] == garbage[0] == 400
    assert world.acs.requests == []


def test_no_address_reaches_a_log_line(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.acs.script(Throttle(retry_after=1), Failure(500), Failure(500), Failure(400))
    with caplog.at_level(logging.DEBUG), serve(world.services) as host:
        for _ in range(4):
            post(host.base_url, message())
        post(host.base_url, message(recipients={"to": [{"address": "bad"}]}))
    logged = "\n".join(record.getMessage() for record in caplog.records if not record.name.startswith("azure"))
    assert "sent message" in logged
    assert not any(address.lower() in logged.lower() for address in ADDRESSES)


def test_the_request_goes_through_urllib_untouched() -> None:
    """The helper this module posts with sends JSON as given (a guard against a silently empty body)."""
    request = urllib.request.Request("http://127.0.0.1:9/", json.dumps(message()).encode(), method="POST")
    assert json.loads(request.data or b"")["senderAddress"] == SENDER  # type: ignore[arg-type]


# --------------------------------------------------------------------------- CLI


def test_the_cli_sends_a_file_and_bad_files_exit_2_with_one_line_before_any_send(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.cli import run

    good = tmp_path / "send.json"
    good.write_text(json.dumps(message(repeatabilityRequestId="cli-1")))
    assert run(["send", str(good)], services=world.services) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["registered"] is True and printed["messageId"] in world.acs.emails
    before = len(world.acs.requests)
    bad_address = tmp_path / "bad.json"
    bad_address.write_text(json.dumps(message(senderAddress="nope")))
    not_json = tmp_path / "x.json"
    not_json.write_text("{nope")
    for path in (bad_address, not_json, tmp_path / "missing.json"):
        assert run(["send", str(path)], services=world.services) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and ("senderAddress" in error or "FILE" in error), error
    assert len(world.acs.requests) == before
