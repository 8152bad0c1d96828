"""The real-time path tells the truth (issue 16 parts 2, 3, 4 and 9): no final without knowing whom to wait for,
a push is what GET says, event times within reason, one bounce rule. Over the dev host's URLs, the state on
Azurite, the logs in DuckDB (the semantics fixture), log queries counted at the source."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_tracing import Clock, CountingSource, delivery, get

from local.embedded import DuckDbSource
from shared.insights import Insights
from shared.models import TraceParams
from shared.services import Services
from shared.state.ingest import fold_journal, ingest_events
from shared.state.observations import SendObservation, StatusObservation
from shared.state.partition import recipient_row_key
from shared.state.rules import EXPANSION_QUIET, bounce_type
from shared.state.store import StateStore, empty_partition
from shared.tracing import trace_message

from apphost import serve, settings
from conftest import FIXTURE_NOW
from test_push import Receiver, call

#: "Now" for these tests: events are dated a few minutes before it, as Event Grid delivers them.
NOW = datetime(2026, 3, 12, 12, 0, tzinfo=UTC)


@pytest.fixture
def world(
    semantic_store: Path, azurite_connection_string: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Services, CountingSource, Clock]]:
    monkeypatch.setenv("AzureWebJobsStorage", azurite_connection_string)
    tables = {"state_table": "Truth" + uuid.uuid4().hex[:10], "subscriptions_table": "Subs" + uuid.uuid4().hex[:10]}
    monkeypatch.setenv("STATE_TABLE", tables["state_table"])
    source = CountingSource(DuckDbSource(semantic_store))
    clock = Clock(NOW)
    insights = Insights(source, clock=clock)
    state = StateStore.from_settings(settings(**tables))
    state.clock = clock
    services = Services(settings(**tables), insights=insights, state=state, clock=clock)
    yield services, source, clock
    services.close()
    for name in tables.values():
        for suffix in ("", "Journal"):
            client = StateStore.from_connection_string(azurite_connection_string, name + suffix).client
            client.delete_table()
            client.close()
    source.inner.close()


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def body_of(services: Services, mid: str) -> dict[str, Any]:
    return trace_message(services, TraceParams(message_id=mid)).model_dump(mode="json", by_alias=True)


# --------------------------------------------------------------------------- 2: no final without a count


def test_register_answers_201_then_200_and_the_trace_waits_for_each_address(
    world: tuple[Services, CountingSource, Clock],
) -> None:
    services, source, _ = world
    mid = "reg-" + uuid.uuid4().hex
    with serve(services) as host:
        url = f"{host.base_url}/api/messages/{mid}"
        body = {"recipients": ["Ann@contoso.com", "bo@fabrikam.com", "ann@CONTOSO.com"]}
        status, _, created = call("PUT", url, body)
        assert status == 201, created
        assert (created["expectedRecipients"], created["recipients"]) == (2, ["Ann@contoso.com", "bo@fabrikam.com"])
        assert call("PUT", url, {"recipients": ["bo@fabrikam.com", "ann@contoso.com"]})[0] == 200  # idempotent
        assert call("PUT", url, {"expectedRecipients": 2, "recipients": body["recipients"]})[0] == 200
        conflict = call("PUT", url, {"expectedRecipients": 3})
        assert conflict[0] == 409 and conflict[2]["messageId"] == mid
        # From the first second: both waiting by address, no send row, no log query.
        status, _, pending = get(url)
        assert status == 202 and pending["pendingRecipients"] == ["Ann@contoso.com", "bo@fabrikam.com"]
        assert (pending["expectedRecipients"], pending["unresolvedCount"]) == (2, 2)
        ingest_events(services.state, [delivery(mid, "ann@contoso.com", "Delivered", ago(2))])
        status, _, pending = get(url)
        assert status == 202 and pending["pendingRecipients"] == ["bo@fabrikam.com"]
        queries = source.queries
        ingest_events(services.state, [delivery(mid, "BO@fabrikam.com", "Bounced", ago(1))])
        status, _, final = get(url)
    assert status == 200 and (final["state"], final["outcome"], final["source"]) == (
        "final",
        "partiallyDelivered",
        "state",
    )
    assert source.queries == queries  # final from the state: no log query
    assert final["send"] is None and final["expectedRecipients"] == 2


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"recipients": []},
        {"recipients": ["not an address"]},
        {"recipients": [f"r{n}@x.com" for n in range(51)]},
        {"expectedRecipients": 0},
        {"expectedRecipients": 51},
        {"expectedRecipients": 2, "recipients": ["a@x.com"]},
        {"recipients": ["a@x.com"], "other": 1},
        {"expectedRecipients": "two"},
    ],
)
def test_register_refuses_bad_input_with_400(world: tuple[Services, CountingSource, Clock], body: Any) -> None:
    services, _, _ = world
    with serve(services) as host:
        status, headers, problem = call("PUT", f"{host.base_url}/api/messages/m-{uuid.uuid4().hex}", body)
        bad_id = call("PUT", f"{host.base_url}/api/messages/bad%7Cid", {"expectedRecipients": 1})
    assert status == 400 and "problem" in headers["Content-Type"], problem
    assert bad_id[0] == 400


def test_a_registration_contradicting_the_send_row_is_409(world: tuple[Services, CountingSource, Clock]) -> None:
    services, _, _ = world
    mid = "reg-" + uuid.uuid4().hex
    services.state.apply(mid, [SendObservation(mid, ago(10), 0.1, 0, 3, 0, 0, 3)])
    with serve(services) as host:
        url = f"{host.base_url}/api/messages/{mid}"
        assert call("PUT", url, {"expectedRecipients": 2})[0] == 409
        assert call("PUT", url, {"expectedRecipients": 3})[0] == 201


def test_a_subscription_whose_registration_conflicts_is_409_and_not_created(
    world: tuple[Services, CountingSource, Clock],
) -> None:
    services, _, _ = world
    mid = "reg-" + uuid.uuid4().hex
    services.state.apply(mid, [SendObservation(mid, ago(10), 0.1, 0, 3, 0, 0, 3)])
    with serve(services) as host:
        url = f"{host.base_url}/api/subscriptions"
        hook = "http://127.0.0.1:9/hook"
        status, _, problem = call("POST", url, {"callbackUrl": hook, "messageId": mid, "recipients": ["a@x.com"]})
        assert status == 409, problem
        assert services.subscriptions.all() == []
        no_message = call("POST", url, {"callbackUrl": hook, "filter": {}, "recipients": ["a@x.com"]})
        assert no_message[0] == 400 and no_message[2]["errors"][0]["parameter"] == "recipients"
        fine = call(
            "POST", url, {"callbackUrl": hook, "messageId": mid, "recipients": ["a@x.com", "b@x.com", "c@x.com"]}
        )
        assert fine[0] == 201
    registration = services.state.read(mid)
    assert registration is not None and registration.message.expected_recipients == 3


def test_events_alone_never_make_a_message_final(world: tuple[Services, CountingSource, Clock]) -> None:
    """No send row anywhere (the logs do not know the message): one Delivered is not the whole answer."""
    services, _, clock = world
    mid = "evt-" + uuid.uuid4().hex
    ingest_events(services.state, [delivery(mid, "ann@contoso.com", "Delivered", ago(3))])
    with serve(services) as host:
        status, _, body = get(f"{host.base_url}/api/messages/{mid}")
        assert status == 202 and (body["state"], body["expectedRecipients"]) == ("pending", None)
        clock.now = NOW + services.status_grace
        status, _, body = get(f"{host.base_url}/api/messages/{mid}")
    assert status == 200 and body["state"] == "expired"


def test_events_in_every_order_with_the_registration_give_one_answer(
    world: tuple[Services, CountingSource, Clock],
) -> None:
    """Registration, events and send row in every order: the same final answer once all are in, never before."""
    import itertools

    services, _, _ = world
    for order in itertools.permutations(("register", "ann", "bo", "send")):
        mid = "ord-" + uuid.uuid4().hex
        steps = {
            "register": lambda m=mid: services.state.append(_registration(m, ("ann@contoso.com", "bo@x.com"))),
            "ann": lambda m=mid: ingest_events(services.state, [delivery(m, "ann@contoso.com", "Delivered", ago(2))]),
            "bo": lambda m=mid: ingest_events(services.state, [delivery(m, "bo@x.com", "Suppressed", ago(1))]),
            "send": lambda m=mid: services.state.append([SendObservation(m, ago(5), 0.1, 0, 2, 0, 0, 2)]),
        }
        seen = set()
        for step in order:
            steps[step]()
            seen.add(step)
            state = body_of(services, mid)["state"]
            done = {"ann", "bo"} <= seen and bool({"register", "send"} & seen)
            assert state == ("final" if done else "pending"), (order, seen)
        if order.index("send") % 2:
            fold_journal(services.state)
        final = body_of(services, mid)
        assert (final["outcome"], final["counts"]["delivered"], final["counts"]["suppressed"]) == (
            "partiallyDelivered",
            1,
            1,
        )


def _registration(mid: str, recipients: tuple[str, ...]) -> list[Any]:
    from shared.state.observations import RegistrationObservation

    return [RegistrationObservation(mid, NOW, len(recipients), recipients)]


def test_an_expanded_list_alone_is_never_final_and_resolves_through_its_members(
    world: tuple[Services, CountingSource, Clock],
) -> None:
    services, _, clock = world
    only = "dl-" + uuid.uuid4().hex
    services.state.append([SendObservation(only, ago(10), 0.1, 0, 1, 0, 0, 1)])
    ingest_events(services.state, [delivery(only, "team@contoso.com", "Expanded", ago(9))])
    lone = body_of(services, only)
    assert (lone["state"], lone["unresolvedCount"]) == ("pending", 1)  # not "notDelivered" with every count 0
    listed = "dl-" + uuid.uuid4().hex
    services.state.append([SendObservation(listed, ago(10), 0.1, 0, 2, 0, 0, 2)])
    ingest_events(
        services.state,
        [
            delivery(listed, "ann@contoso.com", "Delivered", ago(9)),
            delivery(listed, "team@contoso.com", "Expanded", ago(9)),
            delivery(listed, "member1@contoso.com", "Delivered", ago(8)),
        ],
    )
    assert body_of(services, listed)["state"] == "pending"  # members may still report
    clock.now = ago(8) + EXPANSION_QUIET
    settled = body_of(services, listed)
    assert (settled["state"], settled["outcome"], settled["counts"]["delivered"]) == ("final", "delivered", 2)
    assert body_of(services, only)["state"] == "pending"  # still nothing from any member


# --------------------------------------------------------------------------- 3: a push is what GET says


def test_the_push_is_the_final_body_get_answers_when_events_come_before_the_logs(
    world: tuple[Services, CountingSource, Clock], receivers: list[Receiver]
) -> None:
    """The usual Azure order: Event Grid first, Log Analytics later (the log trace would still say pending).
    The send row is in the state (the follower saw the SendMail row) or the app registered the recipients."""
    services, source, _ = world
    receiver = Receiver()
    receivers.append(receiver)
    counted, registered = "push-" + uuid.uuid4().hex, "push-" + uuid.uuid4().hex
    services.state.append([SendObservation(counted, ago(10), 0.1, 0, 2, 0, 0, 2)])
    with serve(services) as host:
        for mid in (counted, registered):
            body: dict[str, Any] = {"callbackUrl": receiver.url, "messageId": mid}
            if mid == registered:
                body["recipients"] = ["ann@contoso.com", "bo@fabrikam.com"]
            status, _, answer = call("POST", f"{host.base_url}/api/subscriptions", body)
            assert status == 201, answer
        url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName=ingest_email_events"
        events = [delivery(mid, r, "Delivered", ago(1)) for mid in (counted, registered) for r in ("ann@contoso.com",)]
        events += [delivery(mid, "bo@fabrikam.com", "Bounced", ago(1)) for mid in (counted, registered)]
        request_status = _post_events(url, events)
        assert request_status == 202
        fold_journal(services.state, on_change=services.push.hook())
        receiver.wait_for(2)
        gets = {mid: get(f"{host.base_url}/api/messages/{mid}") for mid in (counted, registered)}
    assert source.queries == 0  # neither the pushes nor GET asked the logs
    for _, body_bytes in receiver.received:
        pushed = json.loads(body_bytes)
        status, _, answer = gets[pushed["messageId"]]
        assert status == 200 and pushed["state"] == "final" and pushed["outcome"] == "partiallyDelivered"
        assert {**pushed, "asOf": None} == {**answer, "asOf": None}


def _post_events(url: str, events: list[dict[str, Any]]) -> int:
    import urllib.request

    request = urllib.request.Request(
        url, json.dumps(events).encode(), {"aeg-event-type": "Notification", "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(response.status)


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


# --------------------------------------------------------------------------- 4: times within reason


def test_events_dated_2100_or_year_1_are_set_aside_and_hide_nothing(
    world: tuple[Services, CountingSource, Clock],
) -> None:
    services, _, _ = world
    mid = "time-" + uuid.uuid4().hex
    services.state.append([SendObservation(mid, ago(10), 0.1, 0, 1, 0, 0, 1)])
    future = delivery(mid, "ann@contoso.com", "Delivered", datetime(2100, 1, 1, tzinfo=UTC))
    ancient = delivery(mid, "ann@contoso.com", "Delivered", datetime(1, 1, 1, tzinfo=UTC))
    real = delivery(mid, "ann@contoso.com", "Bounced", ago(2))
    with serve(services) as host:
        url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName=ingest_email_events"
        assert _post_events(url, [future, ancient]) == 202
        status, _, body = get(f"{host.base_url}/api/messages/{mid}")
        assert status == 202 and body["pendingRecipients"] == []  # neither counted
        assert _post_events(url, [real]) == 202
        fold_journal(services.state)
        status, _, body = get(f"{host.base_url}/api/messages/{mid}")
        assert status == 200 and body["recipients"][0]["finalDeliveryStatus"] == "Bounced", body
        health = get(f"{host.base_url}/api/health")[2]
    assert health["setAside"] == 2
    reasons = sorted(e["Reason"] for e in services.state.set_aside_entries())
    assert reasons[0].startswith("dated more than 10 minutes after") and "days before it arrived" in reasons[1]
    assert fold_journal(services.state).left == 0 and not services.state.journal.entries()  # type: ignore[union-attr]


def test_an_unreadable_message_is_answered_from_the_logs_and_a_fold_sets_it_aside_and_goes_on(
    world: tuple[Services, CountingSource, Clock], receivers: list[Receiver]
) -> None:
    """msg-01-final's stored state cannot be read back (a property no version of us writes that way): GET answers
    from the logs, not 500; a fold with its events and another message's sets it aside and pushes the other."""
    services, _, _ = world
    receiver = Receiver()
    receivers.append(receiver)
    services.state.ensure_table()
    alice = recipient_row_key("alice@contoso.com")
    services.state.client.create_entity(
        {"PartitionKey": "msg-01-final", "RowKey": alice, "Recipient": "alice@contoso.com", "EventStatus": "Delivered"}
        | {"EventTime": "not a time", "Kind": "recipient"}
    )
    other = "ok-" + uuid.uuid4().hex
    services.state.append([SendObservation(other, ago(10), 0.1, 0, 1, 0, 0, 1)])
    with serve(services) as host:
        status, _, answer = call(
            "POST", f"{host.base_url}/api/subscriptions", {"callbackUrl": receiver.url, "messageId": other}
        )
        assert status == 201, answer
        status, _, body = get(f"{host.base_url}/api/messages/msg-01-final")
        assert status == 200 and body["source"] == "logs" and body["outcome"] == "partiallyDelivered"
        ingest_events(
            services.state,
            [
                delivery("msg-01-final", "alice@contoso.com", "Delivered", ago(3)),
                delivery(other, "ann@contoso.com", "Delivered", ago(3)),
            ],
        )
        report = fold_journal(services.state, on_change=services.push.hook())
        receiver.wait_for(1)
        health = get(f"{host.base_url}/api/health")[2]
    assert report.set_aside == 1 and report.left == 0
    assert json.loads(receiver.received[0][1])["messageId"] == other
    assert health["setAside"] == 1
    [entry] = services.state.set_aside_entries()
    assert entry["MessageId"] == "msg-01-final" and "UnreadableState" in entry["Reason"]


# --------------------------------------------------------------------------- 9: one bounce rule


@pytest.mark.parametrize("status", ["Quarantined", "FilteredSpam", "Suppressed"])
def test_quarantined_filtered_and_suppressed_are_never_bounces_in_the_trace(
    world: tuple[Services, CountingSource, Clock], status: str
) -> None:
    services, _, _ = world
    mid = "nb-" + uuid.uuid4().hex
    observation = StatusObservation(mid, "ann@contoso.com", status, ago(1), "logs", is_hard_bounce="False")
    services.state.apply(mid, [SendObservation(mid, ago(5), 0.1, 0, 1, 0, 0, 1), observation])
    [ann] = body_of(services, mid)["recipients"]
    assert (ann["bounceType"], ann["bounceTypeLabel"], ann["bounceTypeSource"]) == (
        "none",
        "Not Applicable",
        "notApplicable",
    )
    assert bounce_type("Bounced", "False", None, None) == ("Soft Bounce", "reported")


def test_the_log_trace_and_the_state_use_the_same_bounce_rule(semantic_insights: Insights) -> None:
    """Every final recipient the log trace (KQL's BounceType) reports on the semantics fixture has the bounce
    type shared.state.rules.bounce_type gives from its final event: the rule written twice, pinned equal."""
    page = semantic_insights.search(
        __import__("shared.models", fromlist=["SearchParams"]).SearchParams.model_validate(
            {"from": "2026-03-09T00:00:00Z", "to": "2026-03-12T00:00:00Z", "top": 500}
        )
    )
    checked = 0
    for row in page.value:
        trace = semantic_insights.trace(TraceParams(message_id=row.message_id))
        for recipient in trace.recipients:
            if recipient.final_delivery_status is None:
                continue
            final = [e for e in recipient.events if e.delivery_status == recipient.final_delivery_status][-1]
            flag = None if final.is_hard_bounce is None else str(final.is_hard_bounce)
            label, source = bounce_type(
                recipient.final_delivery_status, flag, recipient.smtp_status_code, recipient.enhanced_smtp_status_code
            )
            assert (recipient.bounce_type_label, recipient.bounce_type_source) == (label, source), recipient
            checked += 1
    assert checked >= 10


def test_partition_bounce_follows_the_rule() -> None:
    partition = empty_partition("m")
    partition.apply(StatusObservation("m", "a@x.com", "FilteredSpam", FIXTURE_NOW, "events", is_hard_bounce="false"))
    [recipient] = partition.recipients.values()
    assert recipient.final is not None
    from shared.state.partition import bounce_of

    assert bounce_of(recipient.final) == ("Not Applicable", "notApplicable")


def test_only_a_fault_of_the_message_sets_it_aside_never_an_outage() -> None:
    """The fold sets a message aside for what concerns it alone; a store that is down, throttles or refuses the
    credential fails the whole fold instead (the journal keeps everything for the next run)."""
    from azure.core.exceptions import HttpResponseError

    from shared.state.ingest import _this_message
    from shared.state.store import StateStoreError, StateStoreUnavailable, UnreadableState

    def failure(kind: type[Exception], status: int) -> Exception:
        cause = HttpResponseError(message="x")
        cause.status_code = status
        error = kind("x")
        error.__cause__ = cause
        return error

    assert _this_message(UnreadableState("x")) and _this_message(ValueError("x"))
    assert _this_message(failure(StateStoreError, 400)) and _this_message(failure(StateStoreError, 413))
    assert not _this_message(failure(StateStoreError, 403))
    assert not _this_message(failure(StateStoreUnavailable, 503))
    assert not _this_message(failure(StateStoreUnavailable, 429))


@pytest.mark.parametrize("send_first", [True, False])
def test_a_status_dated_before_its_send_is_set_aside_in_either_order(
    world: tuple[Services, CountingSource, Clock], send_first: bool
) -> None:
    services, _, _ = world
    mid = "early-" + uuid.uuid4().hex
    send = [SendObservation(mid, ago(10), 0.1, 0, 1, 0, 0, 1)]
    early = [delivery(mid, "ann@contoso.com", "Delivered", ago(10) - timedelta(days=1))]
    skewed = delivery(mid, "bo@contoso.com", "Delivered", ago(10) - timedelta(seconds=2))  # kept: clock skew
    if send_first:
        services.state.apply(mid, send)
        ingest_events(services.state, early)
    else:
        ingest_events(services.state, early)
        fold_journal(services.state)
        services.state.apply(mid, send)
    fold_journal(services.state)
    body = body_of(services, mid)
    assert body["state"] == "pending" and body["pendingRecipients"] == ["ann@contoso.com"], json.dumps(body)
    # A fold that did not read the message entity (no subscriber) may have stored it; the next write of the
    # partition takes it out and keeps it apart, once.
    services.state.apply(mid, send)
    ann = services.state.client.get_entity(mid, recipient_row_key("ann@contoso.com"))
    assert "EventStatus" not in ann and "FinalStatus" not in ann
    assert [e["Reason"] for e in services.state.set_aside_entries()] == [
        "dated before its message's send, beyond the clock-skew allowance"
    ]
    ingest_events(services.state, [skewed])
    bo = {r["recipientId"]: r for r in body_of(services, mid)["recipients"]}["bo@contoso.com"]
    assert bo["finalDeliveryStatus"] == "Delivered" and bo["clockSkew"] is True
