"""Push subscriptions end to end: created and deleted over the dev host's HTTP routes, fed by the Event Grid
webhook and the follower timer, stored in Azurite, delivered to real loopback HTTP receivers that check the
signature, answer 500 or hang."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.errors import InvalidInput
from shared.insights import Insights
from shared.push.callbacks import check_callback_url
from shared.push.subscriptions import SubscriptionStore
from shared.services import Services
from shared.state.store import StateStore

from apphost import serve, settings
from conftest import FIXTURE_NOW

#: The events' sender: the semantics fixture (which the follower reads) never uses it, so filters on it see
#: only what a test sends.
SENDER = "PushTest@fabrikam.com"
#: How long a test waits for a background delivery before failing (a bound, not a speed assertion).
WAIT_SECONDS = 30.0


class Clock:
    """The services' clock, moved by hand so that a retry comes due without waiting for it."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Receiver:
    """A webhook receiver on loopback: records each POST, answers the queued statuses (then 200), may hang."""

    def __init__(self, statuses: tuple[int, ...] = (), hang: threading.Event | None = None) -> None:
        self.statuses = list(statuses)
        self.hang = hang
        self.received: list[tuple[dict[str, str], bytes]] = []
        #: Every POST, whatever it was answered.
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.arrived = 0
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.changed:
                    receiver.arrived += 1
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    receiver.changed.notify_all()
                if receiver.hang is not None:
                    receiver.hang.wait(WAIT_SECONDS)
                with receiver.changed:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    if status < 300:
                        receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    receiver.changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, count: int, *, arrived: bool = False) -> None:
        def enough() -> bool:
            return (self.arrived if arrived else len(self.received)) >= count

        with self.changed:
            assert self.changed.wait_for(enough, WAIT_SECONDS), f"{self.arrived} arrived, {len(self.received)} taken"

    def close(self) -> None:
        if self.hang is not None:
            self.hang.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tables(azurite_connection_string: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Tables of this test alone on Azurite (the services build their stores from these settings)."""
    monkeypatch.setenv("AzureWebJobsStorage", azurite_connection_string)
    names = {"state_table": "State" + uuid.uuid4().hex[:10], "subscriptions_table": "Subs" + uuid.uuid4().hex[:10]}
    # StateStore.from_settings reads STATE_TABLE from the environment rather than from the settings.
    monkeypatch.setenv("STATE_TABLE", names["state_table"])
    yield names
    for name in names.values():
        client = StateStore.from_connection_string(azurite_connection_string, name).client
        client.delete_table()
        client.close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


def build(semantic_insights: Insights, tables: dict[str, str], clock: Clock | None = None) -> Services:
    return Services(settings(**tables), insights=semantic_insights, clock=clock or Clock())


def call(method: str, url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, headers, content = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, headers, content = error.code, dict(error.headers), error.read()
    return status, headers, json.loads(content) if content else None


def event(message_id: str, recipient: str, status: str, at: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "subject": f"sender/{SENDER}/message/{message_id}",
        "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
        "eventTime": at,
        "dataVersion": "1.0",
        "data": {
            "sender": SENDER,
            "recipient": recipient,
            "messageId": message_id,
            "status": status,
            "deliveryStatusDetails": {"statusMessage": "ok"},
            "deliveryAttemptTimeStamp": at,
        },
    }


def send_events(base_url: str, events: list[dict[str, Any]]) -> int:
    url = f"{base_url}/runtime/webhooks/eventgrid?functionName=ingest_email_events"
    request = urllib.request.Request(
        url, json.dumps(events).encode(), {"aeg-event-type": "Notification", "Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def run_timer(base_url: str) -> None:
    request = urllib.request.Request(f"{base_url}/admin/functions/follow_status_updates", b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 202


def subscribe(base_url: str, body: dict[str, Any]) -> dict[str, Any]:
    status, headers, answer = call("POST", f"{base_url}/api/subscriptions", body)
    assert status == 201, answer
    return {**answer, "location": headers["Location"]}


def verify(secret: str, headers: dict[str, str], body: bytes) -> None:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-signature"], expected)


# --------------------------------------------------------------------------- create, delete, bad input


def test_create_and_delete_over_http(semantic_insights: Insights, tables: dict[str, str]) -> None:
    clock = Clock()
    services = build(semantic_insights, tables, clock)
    with serve(services) as host:
        hook = "http://127.0.0.1:9/hook"
        created = subscribe(host.base_url, {"callbackUrl": hook, "messageId": "msg-" + uuid.uuid4().hex})
        assert len(created["id"]) == 32 and len(created["secret"]) >= 40
        assert created["kind"] == "message"
        grace = timedelta(hours=services.settings.status_grace_hours)
        assert created["expiresAt"] == (clock.now + grace + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        assert created["location"] == f"{host.base_url}/api/subscriptions/{created['id']}"
        filtered = subscribe(
            host.base_url, {"callbackUrl": hook, "filter": {"sender": "DoNotReply", "statuses": ["Bounced", "Failed"]}}
        )
        assert filtered["kind"] == "filter" and filtered["statuses"] == ["Bounced", "Failed"]
        assert filtered["expiresAt"] == (clock.now + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        assert {s.id for s in services.subscriptions.all()} == {created["id"], filtered["id"]}

        assert call("DELETE", created["location"])[0] == 204
        status, headers, _ = call("DELETE", created["location"])
        assert status == 404 and headers["Content-Type"].startswith("application/problem+json")
        assert [s.id for s in services.subscriptions.all()] == [filtered["id"]]
    # The secret is stored (it signs the pushes) but only the create answer shows it.
    stored = services.subscriptions.get(filtered["id"])
    assert stored is not None and stored.secret == filtered["secret"]
    services.close()


GOOD = "https://hooks.example.com/push?sig=abc"
BAD_BODIES: list[tuple[Any, str]] = [
    ({"callbackUrl": "ftp://example.com/x", "messageId": "m-1"}, "callbackUrl"),
    ({"callbackUrl": "http://example.com/x", "messageId": "m-1"}, "callbackUrl"),
    ({"callbackUrl": "https://10.1.2.3/x", "messageId": "m-1"}, "callbackUrl"),
    ({"callbackUrl": "https://169.254.169.254/metadata", "messageId": "m-1"}, "callbackUrl"),
    ({"callbackUrl": "https://user:pw@example.com/x", "messageId": "m-1"}, "callbackUrl"),
    ({"callbackUrl": "https://example.com/a b", "messageId": "m-1"}, "callbackUrl"),
    ({"callbackUrl": "https://example.com/" + "a" * 2048, "messageId": "m-1"}, "callbackUrl"),
    ({"callbackUrl": "/relative", "messageId": "m-1"}, "callbackUrl"),
    ({"messageId": "m-1"}, "callbackUrl"),
    ({"callbackUrl": GOOD}, "messageId"),
    ({"callbackUrl": GOOD, "messageId": "m-1", "filter": {}}, "messageId"),
    ({"callbackUrl": GOOD, "messageId": "not a message id!"}, "messageId"),
    ({"callbackUrl": GOOD, "messageId": "m" * 129}, "messageId"),
    ({"callbackUrl": GOOD, "filter": {"statuses": ["Pending"]}}, "filter.statuses.0"),
    ({"callbackUrl": GOOD, "filter": {"statuses": []}}, "filter.statuses"),
    ({"callbackUrl": GOOD, "filter": {"statuses": ["Delivered"] * 7}}, "filter.statuses"),
    ({"callbackUrl": GOOD, "filter": {"sender": "bad sender\n"}}, "filter.sender"),
    ({"callbackUrl": GOOD, "filter": {"colour": "red"}}, "filter.colour"),
    ({"callbackUrl": GOOD, "messageId": "m-1", "secret": "mine"}, "secret"),
    ({"callbackUrl": 42, "messageId": "m-1"}, "callbackUrl"),
    (["not", "an", "object"], "body"),
]


def test_bad_input_answers_400_naming_the_field(semantic_insights: Insights, tables: dict[str, str]) -> None:
    services = build(semantic_insights, tables)
    with serve(services) as host:
        url = f"{host.base_url}/api/subscriptions"
        for body, parameter in BAD_BODIES:
            status, headers, problem = call("POST", url, body)
            assert status == 400, (body, problem)
            assert headers["Content-Type"].startswith("application/problem+json")
            assert problem["errors"][0]["parameter"] == parameter, (body, problem)
            assert "sig=" not in json.dumps(problem)  # a callback URL (and its credential) is never echoed
        status, _, problem = call("POST", url, raw=b"{not json")
        assert status == 400 and problem["errors"][0]["parameter"] == "body"
        status, _, problem = call("DELETE", f"{url}/not-an-id")
        assert status == 400 and problem["errors"][0]["parameter"] == "id"
    assert services.subscriptions.all() == []
    services.close()


def test_loopback_http_is_refused_once_a_workspace_is_configured(
    semantic_insights: Insights, tables: dict[str, str]
) -> None:
    config = settings(**tables, workspace_id="00000000-0000-0000-0000-000000000000")
    services = Services(config, insights=semantic_insights)
    with serve(services) as host:
        status, _, problem = call(
            "POST", f"{host.base_url}/api/subscriptions", {"callbackUrl": "http://127.0.0.1:8080/x", "messageId": "m-1"}
        )
    assert status == 400 and problem["errors"][0]["parameter"] == "callbackUrl"
    assert "locally" in problem["errors"][0]["reason"]
    services.close()


def test_table_storage_down_answers_503(semantic_insights: Insights) -> None:
    down = SubscriptionStore.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1",
        "Subscriptions",
    )
    services = Services(settings(), insights=semantic_insights, subscriptions=down)
    with serve(services) as host:
        status, headers, problem = call(
            "POST", f"{host.base_url}/api/subscriptions", {"callbackUrl": GOOD, "messageId": "m-1"}
        )
        assert status == 503 and headers["Content-Type"].startswith("application/problem+json")
        assert int(headers["Retry-After"]) > 0 and "AccountKey" not in problem["detail"]
        assert call("DELETE", f"{host.base_url}/api/subscriptions/{'0' * 32}")[0] == 503
        # Bad input is still answered 400: the store is not needed to refuse it.
        bad = {"callbackUrl": "http://example.com/x", "messageId": "m-1"}
        assert call("POST", f"{host.base_url}/api/subscriptions", bad)[0] == 400
    services.close()


# --------------------------------------------------------------------------- deliveries


def test_a_filter_subscription_gets_each_outcome_once_signed(
    semantic_insights: Insights, tables: dict[str, str], receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    services = build(semantic_insights, tables)
    mid = str(uuid.uuid4())
    delivered = event(mid, "Ann@Contoso.com", "Delivered", "2026-03-10T10:05:00Z")
    with serve(services) as host:
        sub = subscribe(host.base_url, {"callbackUrl": receiver.url, "filter": {"sender": "pushtest"}})
        other = subscribe(host.base_url, {"callbackUrl": receiver.url, "filter": {"statuses": ["Bounced"]}})
        # The same event three times (Event Grid delivers at least once), an older status, a pending one.
        assert send_events(host.base_url, [delivered]) == 202
        assert send_events(host.base_url, [delivered, event(mid, "ann@contoso.com", "Bounced", "2026-03-10T10:01:00Z")])
        assert send_events(
            host.base_url, [delivered, event(mid, "bob@contoso.com", "OutForDelivery", "2026-03-10T10:02:00Z")]
        )
        run_timer(host.base_url)  # folds the journaled events: what became final is pushed
        receiver.wait_for(1)
        run_timer(host.base_url)  # anything due would be attempted (and waited for) here
    # The timer's follower also brings the fixture's logged outcomes (its rows arrived "now"); only this message
    # matters here.
    mine = [(h, b) for h, b in receiver.received if json.loads(b)["messageId"] == mid]
    assert len(mine) == 1, [
        (h.get("x-delivery-id"), h.get("x-subscription-id"), json.loads(b).get("finalDeliveryStatus")) for h, b in mine
    ]
    [(headers, body)] = mine
    verify(sub["secret"], headers, body)
    assert headers["x-subscription-id"] == sub["id"] and headers["x-delivery-attempt"] == "1"
    outcome = json.loads(body)
    assert outcome["messageId"] == mid and outcome["finalDeliveryStatus"] == "Delivered"
    assert outcome["recipientId"].lower() == "ann@contoso.com" and outcome["source"] == "events"
    assert outcome["bounceType"] == "Not Applicable" and outcome["sender"] == SENDER
    # The Bounced-only filter saw nothing: the older Bounced never became the recipient's final status.
    entries = [e for e in services.subscriptions.outbox() if e.subscription_id == sub["id"]]
    assert [(e.subscription_id, e.due_at) for e in entries] == [(sub["id"], None)]  # one tombstone, nothing due
    assert entries[0].id == headers["x-delivery-id"] and other["id"] != sub["id"]
    assert all(json.loads(b)["messageId"] != mid for h, b in receiver.received if h["x-subscription-id"] == other["id"])
    services.close()


def test_a_500_is_retried_on_the_schedule_then_delivered(
    semantic_insights: Insights, tables: dict[str, str], receivers: list[Receiver]
) -> None:
    receiver = Receiver(statuses=(500,))
    receivers.append(receiver)
    clock = Clock()
    services = build(semantic_insights, tables, clock)
    mid = str(uuid.uuid4())
    with serve(services) as host:
        sub = subscribe(host.base_url, {"callbackUrl": receiver.url, "filter": {"sender": SENDER}})
        assert send_events(host.base_url, [event(mid, "a@contoso.com", "Failed", "2026-03-10T10:05:00Z")]) == 202
        run_timer(host.base_url)  # the fold: the outcome is queued and attempted at once
        receiver.wait_for(1, arrived=True)
        entry = _wait_until(lambda: next((e for e in services.subscriptions.outbox() if e.attempts == 1), None))
        assert entry.due_at == clock.now + timedelta(seconds=10)  # Event Grid's first retry delay
        run_timer(host.base_url)
        assert receiver.received == []  # not due yet
        clock.advance(10)
        run_timer(host.base_url)
    [(headers, body)] = receiver.received
    verify(sub["secret"], headers, body)
    assert headers["x-delivery-attempt"] == "2" and headers["x-delivery-id"] == entry.id
    assert json.loads(body)["finalDeliveryStatus"] == "Failed"
    services.close()


def test_a_hanging_callback_blocks_neither_ingestion_nor_other_callbacks(
    semantic_insights: Insights, tables: dict[str, str], receivers: list[Receiver]
) -> None:
    release = threading.Event()
    hanging, healthy = Receiver(hang=release), Receiver()
    receivers.extend([hanging, healthy])
    services = build(semantic_insights, tables)
    messages = [str(uuid.uuid4()) for _ in range(12)]
    with serve(services) as host:
        stuck = subscribe(host.base_url, {"callbackUrl": hanging.url, "filter": {"sender": SENDER}})
        subscribe(host.base_url, {"callbackUrl": healthy.url, "filter": {"sender": SENDER}})
        for mid in messages:  # more outcomes than the delivery pool has workers
            assert send_events(host.base_url, [event(mid, "a@contoso.com", "Delivered", "2026-03-10T10:05:00Z")]) == 202
        run_timer(host.base_url)  # the fold queues every outcome; the timer is not held by the hanging callback
        healthy.wait_for(len(messages))
        # All of it happened while the hanging callback still held its first request, and only that one.
        assert not release.is_set() and hanging.arrived == 1 and hanging.received == []
        pending = [e for e in services.subscriptions.outbox() if e.subscription_id == stuck["id"] and e.due_at]
        assert len(pending) == len(messages)  # the hanging callback's outcomes wait in the outbox
    services.close()


def test_the_outbox_survives_a_restart(
    semantic_insights: Insights, tables: dict[str, str], receivers: list[Receiver]
) -> None:
    receiver = Receiver(statuses=(503,))
    receivers.append(receiver)
    clock = Clock()
    first = build(semantic_insights, tables, clock)
    mid = str(uuid.uuid4())
    with serve(first) as host:
        # Only this test's sender: the timer's follower also brings the fixture's logged bounces.
        only_mine = {"sender": "pushtest", "statuses": ["Bounced"]}
        sub = subscribe(host.base_url, {"callbackUrl": receiver.url, "filter": only_mine})
        assert send_events(host.base_url, [event(mid, "a@contoso.com", "Bounced", "2026-03-10T10:05:00Z")]) == 202
        run_timer(host.base_url)
        receiver.wait_for(1, arrived=True)
        _wait_until(lambda: next((e for e in first.subscriptions.outbox() if e.attempts == 1), None))
    first.close()  # the process goes away with a push still owed

    clock.advance(60)
    second = build(semantic_insights, tables, clock)
    with serve(second) as host:
        run_timer(host.base_url)
    [(headers, body)] = receiver.received
    verify(sub["secret"], headers, body)
    second.close()


def test_a_message_subscription_gets_the_trace_once_when_the_follower_makes_it_final(
    semantic_insights: Insights, tables: dict[str, str], receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    services = build(semantic_insights, tables, Clock(FIXTURE_NOW))  # the follower reads the fixture's days
    with serve(services) as host:
        sub = subscribe(host.base_url, {"callbackUrl": receiver.url, "messageId": "msg-01-final"})
        pending = subscribe(host.base_url, {"callbackUrl": receiver.url, "messageId": "msg-02-pending"})
        run_timer(host.base_url)  # the follower brings the send rows: msg-01-final becomes final
        receiver.wait_for(1)
        run_timer(host.base_url)
        # A new subscription to a message already final is served from the state at once.
        late = subscribe(host.base_url, {"callbackUrl": receiver.url, "messageId": "msg-01-final"})
        receiver.wait_for(2)
        run_timer(host.base_url)
    assert len(receiver.received) == 2
    (first_headers, first_body), (late_headers, late_body) = receiver.received
    verify(sub["secret"], first_headers, first_body)
    verify(late["secret"], late_headers, late_body)
    trace = json.loads(first_body)
    assert trace["messageId"] == "msg-01-final" and trace["state"] == "final"
    assert {r["finalDeliveryStatus"] for r in trace["recipients"]} == {"Delivered", "Bounced"}
    assert pending["id"] not in {h["x-subscription-id"] for h, _ in receiver.received}
    services.close()


def _wait_until(probe: Any) -> Any:
    """The first truthy value of *probe*, polled until WAIT_SECONDS (for state a background thread writes)."""
    deadline = threading.Event()
    for _ in range(int(WAIT_SECONDS / 0.05)):
        value = probe()
        if value:
            return value
        deadline.wait(0.05)
    raise AssertionError("timed out waiting")


def test_a_message_that_never_ends_is_pushed_as_it_stands_after_the_status_grace(
    semantic_insights: Insights, tables: dict[str, str], receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    clock = Clock(FIXTURE_NOW)
    services = build(semantic_insights, tables, clock)
    with serve(services) as host:
        sub = subscribe(host.base_url, {"callbackUrl": receiver.url, "messageId": "msg-02-pending"})
        run_timer(host.base_url)  # dave never gets a final status: nothing to push yet
        # The push waits in the outbox for its deadline: the grace since the send, which the follower's rows
        # made known (the subscription, knowing nothing of the message then, counted from itself).
        [waiting] = services.subscriptions.outbox()
        assert receiver.arrived == 0 and waiting.waiting and waiting.subscription_id == sub["id"]
        partition = services.state.read("msg-02-pending")
        sent = partition.send_time_bound() if partition is not None else None
        assert sent is not None and sent < FIXTURE_NOW and waiting.due_at == sent + services.status_grace
        clock.now = sent + services.status_grace - timedelta(seconds=1)
        run_timer(host.base_url)
        assert receiver.arrived == 0  # not yet
        clock.advance(1)
        run_timer(host.base_url)
        receiver.wait_for(1)
        run_timer(host.base_url)
    [(headers, body)] = receiver.received
    verify(sub["secret"], headers, body)
    assert json.loads(body)["messageId"] == "msg-02-pending"
    services.close()


def test_nothing_is_folded_while_subscriptions_cannot_be_read(
    semantic_insights: Insights, tables: dict[str, str]
) -> None:
    """Ingestion journals the event (202); the timer, unable to read subscriptions, fails before folding, so the
    next run still finds the change and pushes it: no outcome is missed for a subscriber."""
    down = SubscriptionStore.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1",
        "Subscriptions",
    )
    services = Services(settings(**tables), insights=semantic_insights, subscriptions=down)
    mid = str(uuid.uuid4())
    with serve(services) as host:
        assert send_events(host.base_url, [event(mid, "a@contoso.com", "Delivered", "2026-03-10T10:05:00Z")]) == 202
        request = urllib.request.Request(f"{host.base_url}/admin/functions/follow_status_updates", b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(request, timeout=120)
        assert failed.value.code == 500
    journal = services.state.journal
    assert journal is not None
    assert [o.message_id for e in journal.entries() for o in e.observations if o.message_id == mid] == [mid]
    assert services.state._entities(mid) == []  # no partition written: the fold waits for the subscriptions
    partition = services.state.read(mid)  # a trace still sees the event, from the journal
    assert partition is not None and partition.recipients
    services.close()


@pytest.mark.parametrize(
    ("url", "local", "accepted"),
    [
        ("https://hooks.example.com/x?sig=1", False, True),
        ("https://20.42.0.1/x", False, True),
        ("http://127.0.0.1:8080/x", True, True),
        ("http://[::1]:8080/x", True, True),
        ("http://localhost/x", True, True),
        ("http://localhost/x", False, False),
        ("https://127.0.0.1/x", False, False),
        ("https://[fe80::1]/x", False, False),
        ("http://192.168.1.2/x", True, False),
        ("https://example.com:0/x", False, False),
        ("https://example.com:99999/x", False, False),
        ("https://example.com/x#frag", False, False),
        ("mailto:a@b.com", True, False),
    ],
)
def test_the_callback_url_rule(url: str, local: bool, accepted: bool) -> None:
    try:
        check_callback_url(url, allow_loopback_http=local)
    except InvalidInput as exc:
        assert not accepted, exc.detail
        assert exc.errors[0].parameter == "callbackUrl" and url not in exc.detail
    else:
        assert accepted


def test_a_recipient_outcome_is_pushed_as_get_reads_it_not_as_one_journal_shard_folded_it(
    semantic_insights: Insights, tables: dict[str, str], receivers: list[Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Journal writes go to random shards and shards fold independently: the later ``Delivered`` in shard j1,
    the older ``Bounced`` in j0, and j0 folded first. The push must say ``Delivered`` (what GET answers), once;
    it used to say ``Bounced`` to every matching subscription, then ``Delivered``."""
    from shared.state import journal as journal_module
    from shared.state.folds import ShardLeases, fold_shard

    receiver = Receiver()
    receivers.append(receiver)
    services = build(semantic_insights, tables, Clock(FIXTURE_NOW))
    mid = str(uuid.uuid4())
    shards = iter([1, 0])

    class Shards:
        @staticmethod
        def randrange(_: int) -> int:
            return next(shards)

    with serve(services) as host:
        sub = subscribe(host.base_url, {"callbackUrl": receiver.url, "filter": {"sender": "pushtest"}})
        bounced_only = subscribe(host.base_url, {"callbackUrl": receiver.url, "filter": {"statuses": ["Bounced"]}})
        monkeypatch.setattr(journal_module, "random", Shards)
        assert send_events(host.base_url, [event(mid, "ann@contoso.com", "Delivered", "2026-03-10T10:05:00Z")]) == 202
        assert send_events(host.base_url, [event(mid, "ann@contoso.com", "Bounced", "2026-03-10T10:01:00Z")]) == 202
        state, leases = services.state, ShardLeases.of(services.state)
        fold_shard(state, "j0", leases=leases, on_change=services.push.hook())  # the older Bounced alone
        receiver.wait_for(1)
        fold_shard(state, "j1", leases=leases, on_change=services.push.hook())  # then the Delivered
        services.push.run_due()
    mine = [(h, json.loads(b)) for h, b in receiver.received if json.loads(b)["messageId"] == mid]
    assert [(h["x-subscription-id"], b["finalDeliveryStatus"]) for h, b in mine] == [(sub["id"], "Delivered")]
    assert bounced_only["id"] not in {h["x-subscription-id"] for h, _ in mine}
    services.close()


def test_a_fold_that_failed_after_some_writes_still_pushes_them_when_it_is_redone(
    semantic_insights: Insights, tables: dict[str, str], receivers: list[Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fold wrote message A's partition, then failed on message B (the store went away) before handing its
    changes to push. Redone, it finds A written already: nothing new, so nothing used to be pushed for A, ever
    for a filter subscription, and only at the status grace for A's own subscription. The lease remembers the
    failure, and the redone fold hands on A as new; the outbox keeps every outcome to one push."""
    from shared.state import journal as journal_module
    from shared.state.folds import ShardLeases, fold_shard
    from shared.state.store import StateStoreUnavailable

    receiver = Receiver()
    receivers.append(receiver)
    services = build(semantic_insights, tables, Clock(FIXTURE_NOW))
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    real_apply, a_written = StateStore.apply, threading.Event()

    def failing_on_b(store: StateStore, message_id: str, *args: Any, **kwargs: Any) -> Any:
        if message_id == second:
            a_written.wait(10)
            raise StateStoreUnavailable("the store went away", retry_after=1)
        change = real_apply(store, message_id, *args, **kwargs)
        a_written.set()
        return change

    class FirstShard:
        @staticmethod
        def randrange(_: int) -> int:
            return 0

    with serve(services) as host:
        watcher = subscribe(host.base_url, {"callbackUrl": receiver.url, "filter": {"sender": SENDER}})
        own = subscribe(
            host.base_url, {"callbackUrl": receiver.url, "messageId": first, "recipients": ["ann@contoso.com"]}
        )
        state, leases = services.state, ShardLeases.of(services.state)
        assert state.journal is not None
        for shard in state.journal.shards():  # the registration of A's recipients, folded as usual
            fold_shard(state, shard, leases=leases, on_change=services.push.hook())
        monkeypatch.setattr(journal_module, "random", FirstShard)
        events = [
            event(first, "ann@contoso.com", "Delivered", "2026-03-10T10:05:00Z"),
            event(second, "bob@contoso.com", "Delivered", "2026-03-10T10:06:00Z"),
        ]
        assert send_events(host.base_url, events) == 202
        monkeypatch.setattr(StateStore, "apply", failing_on_b)
        with pytest.raises(StateStoreUnavailable):
            fold_shard(state, "j0", leases=leases, on_change=services.push.hook())
        assert receiver.received == []  # nothing was handed on
        monkeypatch.undo()
        fold_shard(state, "j0", leases=leases, on_change=services.push.hook())
        receiver.wait_for(3)
        assert send_events(host.base_url, [events[0]]) == 202  # A's outcome again, folded cleanly: no new push
        fold_shard(state, "j0", leases=leases, on_change=services.push.hook())
        services.push.run_due()
        time.sleep(1)
    pushed = sorted((h["x-subscription-id"], json.loads(b)["messageId"]) for h, b in receiver.received)
    assert pushed == sorted([(watcher["id"], first), (watcher["id"], second), (own["id"], first)])
    services.close()
