"""The real-time path leaks nothing (issue 16): in Azure, callbacks reach public internet addresses only, at
subscription and at each delivery (DNS can change); subscriptions are capped; idle ones cost the timer
nothing; pushes carry Standard Webhooks signatures that the reference library verifies. Driven over HTTP
through the dev host, stored in Azurite, delivered to loopback receivers; host names are answered by a
resolver the test gives (the one seam: ``Push.resolve``), as ``socket.getaddrinfo`` would answer them."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import standardwebhooks

from shared.insights import Insights
from shared.push import callbacks
from shared.push.callbacks import address_refusal, ipv4_of, post
from shared.services import Services

import test_push
from apphost import serve, settings
from test_push import SENDER, Clock, Receiver, build, call, event, run_timer, send_events, subscribe

#: test_push's fixtures: Azurite tables of the test's own, loopback receivers closed afterwards.
tables = test_push.tables
receivers = test_push.receivers

PUBLIC = "93.184.215.14"
#: What the test's resolver answers: a name per case (``.test`` names resolve nowhere else).
ANSWERS: dict[str, list[str]] = {
    "hooks.example.test": [PUBLIC],
    "loopback.example.test": ["127.0.0.1"],
    "mixed.example.test": [PUBLIC, "10.0.0.7"],
    "metadata.example.test": ["169.254.169.254"],
    "mapped.example.test": ["::ffff:127.0.0.1"],
    "six.example.test": [PUBLIC, "fd12::1"],
    "scoped.example.test": ["fe80::1%2"],
}


def resolver(answers: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int) -> Sequence[str]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    return resolve


def azure(semantic_insights: Insights, tables: dict[str, str], **overrides: Any) -> Services:
    """Services as on an Azure instance (WEBSITE_INSTANCE_ID set), with the test's resolver."""
    config = settings(**tables, azure_instance=True, link_signing_key="k" * 40, **overrides)
    services = Services(config, insights=semantic_insights, clock=Clock())
    services.push.resolve = resolver(ANSWERS)
    return services


REFUSED = [
    "https://localhost/x",
    "https://LOCALHOST./x",
    "https://2130706433/x",
    "https://0x7f000001/x",
    "https://017700000001/x",
    "https://127.1/x",
    "https://0x7f.1/x",
    "https://10.1.1/x",
    "https://167772161/x",
    "https://2852039166/x",
    "https://169.254.169.254/metadata",
    "https://168.63.129.16/x",
    "https://100.64.0.1/x",
    "https://192.0.0.8/x",
    "https://198.18.0.1/x",
    "https://224.0.0.1/x",
    "https://0.0.0.0/x",
    "https://0/x",
    "https://[::]/x",
    "https://[::1]/x",
    "https://[fe80::1]/x",
    "https://[fd00::1]/x",
    "https://[ff02::1]/x",
    "https://[::ffff:127.0.0.1]/x",
    "https://[::ffff:a9fe:a9fe]/x",
    "https://[64:ff9b::7f00:1]/x",
    "https://[64:ff9b::a9fe:a9fe]/x",
    "https://[2002:7f00:1::]/x",
    "https://[2002:a9fe:a9fe::1]/x",
    "https://[::7f00:1]/x",
    "https://loopback.example.test/x",
    "https://mixed.example.test/x",
    "https://metadata.example.test/x",
    "https://mapped.example.test/x",
    "https://six.example.test/x",
    "https://scoped.example.test/x",
    "https://unknown.example.test/x",
    "http://hooks.example.test/x",
]


@pytest.fixture
def azure_host(semantic_insights: Insights, tables: dict[str, str]) -> Iterator[tuple[str, Services]]:
    services = azure(semantic_insights, tables)
    with serve(services) as host:
        yield host.base_url, services
    services.close()


def test_every_private_callback_form_is_refused_in_azure(azure_host: tuple[str, Services]) -> None:
    base_url, services = azure_host
    for url in REFUSED:
        status, headers, problem = call(
            "POST", f"{base_url}/api/subscriptions", {"callbackUrl": url, "messageId": "m-1"}
        )
        assert status == 400, (url, problem)
        assert headers["Content-Type"].startswith("application/problem+json")
        assert problem["errors"][0]["parameter"] == "callbackUrl", (url, problem)
        host = url.split("/")[2].strip("[]")
        assert len(host) < 4 or host not in json.dumps(problem), problem  # the URL is never echoed
    assert services.subscriptions.all() == []
    # A public name, and a public address, are accepted (the same resolver, so it is not refusing everything).
    for url in ("https://hooks.example.test/x?sig=1", f"https://{PUBLIC}/x", "https://[2606:4700::1111]/x"):
        status, _, answer = call("POST", f"{base_url}/api/subscriptions", {"callbackUrl": url, "messageId": "m-1"})
        assert status == 201, (url, answer)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1.1", "10.1.0.1"),
        ("167772161", "10.0.0.1"),
        ("2852039166", "169.254.169.254"),
        ("0xa9.0376.0xfe.254", "169.254.254.254"),
        ("1.2.3.4.5", None),
        ("256.1", None),
        ("08.1", None),
        ("example.com", None),
        ("0x", "0.0.0.0"),  # noqa: S104 - an address read, not bound
    ],
)
def test_numeric_hosts_are_read_as_inet_aton_reads_them(host: str, address: str | None) -> None:
    parsed = ipv4_of(host)
    assert (str(parsed) if parsed else None) == address
    if address is not None and host != "0x":
        assert socket.inet_aton(host) == socket.inet_aton(address)  # the C library agrees


def test_public_addresses_are_public() -> None:
    import ipaddress

    for text in (PUBLIC, "20.42.0.1", "2606:4700::1111", "2002:808:808::1"):
        assert address_refusal(ipaddress.ip_address(text)) is None, text


class Listener:
    """A loopback TCP port that counts the connections made to it (and answers none of them)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.connections = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.getsockname()[1])

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self.stopped.set()
        self.server.close()


def test_a_delivery_whose_host_now_resolves_to_loopback_is_not_sent(
    semantic_insights: Insights,
    tables: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Subscribed while the name was public; by the delivery, DNS answers 127.0.0.1 (rebinding). The push uses
    the system resolver here, made to answer so (every other name resolves as before): the attempt is a
    failure with its reason, retried later, and no connection is ever made to the loopback port."""
    listener = Listener()
    real_getaddrinfo = socket.getaddrinfo

    def rebound(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.example.test":
            return real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    services = azure(semantic_insights, tables)
    clock = services.clock
    assert isinstance(clock, Clock)
    mid = str(uuid.uuid4())
    caplog.set_level(logging.INFO, "shared.push.delivery")
    with serve(services) as host:
        url = f"https://hooks.example.test:{listener.port}/hook"
        sub = subscribe(host.base_url, {"callbackUrl": url, "filter": {"sender": SENDER}})
        monkeypatch.setattr(socket, "getaddrinfo", rebound)
        services.push.resolve = callbacks.system_resolver
        assert send_events(host.base_url, [event(mid, "a@contoso.com", "Delivered", "2026-03-10T10:05:00Z")]) == 202
        run_timer(host.base_url)
        entry = _wait_for(lambda: next((e for e in services.subscriptions.outbox() if e.attempts == 1), None))
        assert entry.subscription_id == sub["id"] and entry.due_at is not None
        assert entry.due_at - clock.now == callbacks_retry_first()  # a failed attempt, on the retry schedule
    listener.close()
    monkeypatch.undo()
    assert listener.connections == 0
    assert any("not sent: its host resolves to a loopback address" in r.getMessage() for r in caplog.records)
    assert "hooks.example.test" not in caplog.text
    services.close()


def callbacks_retry_first() -> Any:
    from shared.push.delivery import RETRY_DELAYS

    return RETRY_DELAYS[0]


def _wait_for(probe: Any) -> Any:
    for _ in range(600):
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_the_connection_goes_to_the_address_that_was_checked(receivers: list[Receiver]) -> None:
    """The checked answer is the one connected to: one lookup per attempt (so no second answer can differ),
    the request still addressed to the name (Host header; TLS would check the certificate against it)."""
    receiver = Receiver()
    receivers.append(receiver)
    port = receiver.server.server_address[1]
    lookups: list[str] = []

    def answer(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if len(lookups) == 1 else ["10.9.9.9"]

    allow_all = lambda address: None  # noqa: E731 - loopback stands in for a public receiver here
    attempt = post(f"http://hooks.example.test:{port}/hook", b"{}", {}, resolve=answer, refusal=allow_all)
    assert attempt.delivered and lookups == ["hooks.example.test"]
    [(headers, _)] = receiver.received
    assert headers["host"] == f"hooks.example.test:{port}"
    # With the real rule the same answer is refused before any connection.
    lookups.clear()
    refused = post(f"http://hooks.example.test:{port}/hook", b"{}", {}, resolve=answer)
    assert refused.blocked and refused.status is None and "loopback" in refused.reason
    assert len(receiver.received) == 1 and lookups == ["hooks.example.test"]


def test_max_subscriptions_is_enforced(semantic_insights: Insights, tables: dict[str, str]) -> None:
    services = Services(settings(**tables, max_subscriptions=2), insights=semantic_insights, clock=Clock())
    hook = "http://127.0.0.1:9/hook"
    with serve(services) as host:
        url = f"{host.base_url}/api/subscriptions"
        first = subscribe(host.base_url, {"callbackUrl": hook, "messageId": "m-1"})
        subscribe(host.base_url, {"callbackUrl": hook, "filter": {"sender": SENDER}})
        status, headers, problem = call("POST", url, {"callbackUrl": hook, "messageId": "m-3"})
        assert status == 409 and headers["Content-Type"].startswith("application/problem+json")
        assert "MAX_SUBSCRIPTIONS" in problem["detail"]
        assert call("DELETE", first["location"])[0] == 204
        assert call("POST", url, {"callbackUrl": hook, "messageId": "m-3"})[0] == 201
    assert len(services.subscriptions.all()) == 2
    services.close()


def test_idle_subscriptions_cost_the_timer_nothing(
    semantic_insights: Insights, tables: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Message subscriptions waiting for their message: the timer's push half reads neither them nor the
    state of their messages (their deadlines wait in the outbox, read only when due)."""
    services = build(semantic_insights, tables)
    with serve(services) as host:
        for _ in range(5):
            subscribe(host.base_url, {"callbackUrl": "http://127.0.0.1:9/hook", "messageId": "m-" + uuid.uuid4().hex})
        reads: list[str] = []
        monkeypatch.setattr(services.state, "read", lambda *a, **k: reads.append("state") or None)
        monkeypatch.setattr(services.subscriptions, "all", lambda *a, **k: reads.append("subscriptions") or [])
        services.subscriptions.forget()  # as a minute after the last run: the cached list is stale
        hook = services.push.hook()  # what the fold is handed: one entity read says someone subscribed
        assert hook is not None
        hook([])  # a run that changed nothing
        outcome = services.push.run_due()
    assert reads == [] and outcome["attempted"] == 0
    waiting = services.subscriptions.outbox()
    assert len(waiting) == 5 and all(entry.waiting and entry.due_at for entry in waiting)
    services.close()


# --------------------------------------------------------------------------- Standard Webhooks


def test_pushes_verify_with_the_standard_webhooks_library(
    semantic_insights: Insights, tables: dict[str, str], receivers: list[Receiver]
) -> None:
    receiver = Receiver(statuses=(500,))
    receivers.append(receiver)
    clock = Clock()
    services = build(semantic_insights, tables, clock)
    mid = str(uuid.uuid4())
    with serve(services) as host:
        sub = subscribe(host.base_url, {"callbackUrl": receiver.url, "filter": {"sender": SENDER}})
        assert sub["secret"].startswith("whsec_")
        assert send_events(host.base_url, [event(mid, "a@contoso.com", "Bounced", "2026-03-10T10:05:00Z")]) == 202
        run_timer(host.base_url)
        receiver.wait_for(1, arrived=True)
        _wait_for(lambda: next((e for e in services.subscriptions.outbox() if e.attempts == 1), None))
        clock.advance(10)
        run_timer(host.base_url)
        receiver.wait_for(1)
    (failed_headers, _), (headers, body) = receiver.requests
    webhook = standardwebhooks.Webhook(sub["secret"])
    assert webhook.verify(body, headers)["messageId"] == mid
    assert headers["webhook-id"] == failed_headers["webhook-id"] == headers["x-delivery-id"]  # stable
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60  # the wall clock, not the services'
    moved = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        webhook.verify(body, moved)  # a replay given a fresh timestamp
    stale = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 600)}
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        webhook.verify(body, stale)  # an old one
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        webhook.verify(body.replace(b"Bounced", b"Delivered"), headers)  # a tampered body
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook("whsec_" + "A" * 43 + "=").verify(body, headers)  # another secret
    services.close()


def test_an_old_format_secret_signs_standard_webhooks_with_its_bytes() -> None:
    """Subscriptions made before secrets took the whsec_ form keep their secret: X-Signature as before, and the
    Standard Webhooks signature keyed with the secret's UTF-8 bytes (``Webhook(secret.encode())``)."""
    old = "Zm9vYmFy-not-whsec-but-token-urlsafe-43-chars"
    headers = callbacks.push_headers(old, "d" * 32, int(time.time()), b'{"a":1}')
    assert standardwebhooks.Webhook(old.encode()).verify(b'{"a":1}', headers) == {"a": 1}
    assert headers["X-Signature"] == callbacks.signature(old, b'{"a":1}')


def test_a_trace_that_makes_a_message_final_pushes_it_without_the_timer(
    semantic_insights: Insights, tables: dict[str, str], receivers: list[Receiver]
) -> None:
    """The trace's write-back is a state write no fold sees: it makes the waiting push due itself (the timer no
    longer scans subscriptions for such messages)."""
    receiver = Receiver()
    receivers.append(receiver)
    services = build(semantic_insights, tables, Clock(test_push.FIXTURE_NOW))
    with serve(services) as host:
        sub = subscribe(host.base_url, {"callbackUrl": receiver.url, "messageId": "msg-01-final"})
        [waiting] = services.subscriptions.outbox()
        assert waiting.waiting  # nothing known of the message yet: it waits for its deadline
        status, _, trace = call("GET", f"{host.base_url}/api/messages/msg-01-final?lookbackDays=30")
        assert status == 200 and trace["state"] == "final"
        receiver.wait_for(1)
    [(headers, body)] = receiver.received
    assert headers["x-subscription-id"] == sub["id"] and json.loads(body)["messageId"] == "msg-01-final"
    standardwebhooks.Webhook(sub["secret"]).verify(body, headers)
    services.close()
