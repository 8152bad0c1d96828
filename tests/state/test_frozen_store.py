"""A store that accepts connections and never answers (Azurite stopped with SIGSTOP mid-request): every answer
still comes within its budget, through the dev host's URLs, and nothing is lost once the store resumes.

Each test runs its own Azurite (frozen and thawed here, so no other test shares it); the logs are the semantics
fixture in DuckDB (tests/fixtures/semantics/EXPECTED.md: msg-01-final is final in the logs).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from test_http_events import delivery, post

from shared import tracing
from shared.deadline import EVENT_DELIVERY_SECONDS
from shared.insights import Insights
from shared.services import Services
from shared.state import journal
from shared.state.store import StateStore

import azurite as azurite_helper
from apphost import serve, settings

#: Left out of `make test-fast` (CI runs it): each test freezes an Azurite of its own and waits out a budget (~40 s).
pytestmark = pytest.mark.slow

EVENT_GRID_PATIENCE = 30.0


@pytest.fixture
def private_azurite() -> Iterator[azurite_helper.Azurite]:
    if os.environ.get("AZURITE_TABLE_ENDPOINT") or os.environ.get("AZURITE_CONNECTION_STRING"):
        pytest.skip("an external Azurite cannot be frozen by the tests")
    try:
        server = azurite_helper.start()
    except azurite_helper.AzuriteUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    if server.process is not None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


@contextmanager
def frozen(server: azurite_helper.Azurite) -> Iterator[None]:
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


def make_services(
    server: azurite_helper.Azurite, insights: Insights, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> Services:
    monkeypatch.setenv("AzureWebJobsStorage", server.connection_string)
    config = settings(state_table="State" + uuid.uuid4().hex[:10], **overrides)
    state = StateStore.from_settings(config)
    state.ensure_table()
    assert state.journal is not None
    state.journal.ensure_table()
    return Services(config, insights=insights, state=state)


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def timed_get(url: str) -> tuple[float, int, dict[str, Any]]:
    started = time.monotonic()
    status, body = get(url)
    return time.monotonic() - started, status, body


def test_a_trace_with_the_store_frozen_answers_from_the_logs_within_the_budget(
    private_azurite: azurite_helper.Azurite,
    semantic_insights: Insights,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    services = make_services(private_azurite, semantic_insights, monkeypatch)
    budget = services.settings.request_budget_seconds
    with serve(services) as host:
        url = f"{host.base_url}/api/messages/msg-01-final"
        assert get(url)[1]["source"] == "logs"  # the log trace, written back into the state
        assert get(url)[1]["source"] == "state"  # now the state answers alone
        with frozen(private_azurite), caplog.at_level(logging.WARNING, "shared.tracing"):
            elapsed, status, body = timed_get(url)
    assert status == 200 and body["state"] == "final" and body["source"] == "logs"
    assert elapsed < budget
    # The read gave up after its part of the budget, leaving the rest to the log query.
    assert tracing.STATE_READ_SECONDS - 0.5 < elapsed < tracing.STATE_READ_SECONDS + 3
    assert "delivery state unreadable, using the log query" in caplog.text
    print(f"\nfrozen-store trace: {elapsed:.2f} s (budget {budget:.0f} s)")


def test_request_budget_seconds_bounds_the_state_read(
    private_azurite: azurite_helper.Azurite, semantic_insights: Insights, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a 2 s budget the frozen read must give up well before STATE_READ_SECONDS (4 s), which it would wait
    if the request's budget were ignored."""
    services = make_services(private_azurite, semantic_insights, monkeypatch, request_budget_seconds=2.0)
    with serve(services) as host:
        url = f"{host.base_url}/api/messages/msg-01-final"
        with frozen(private_azurite):
            elapsed, status, body = timed_get(url)
    assert status == 200 and body["source"] == "logs"
    assert elapsed < 2.0


def test_an_event_grid_delivery_with_the_store_frozen_answers_5xx_in_time_and_loses_nothing_after(
    private_azurite: azurite_helper.Azurite, semantic_insights: Insights, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six events on two worker threads: three waves of invocations. Each alone would wait out its budget in
    turn (~60 s); the first hung write makes the queued ones fail at once, so the delivery answers in time."""
    monkeypatch.setenv("PYTHON_THREADPOOL_THREAD_COUNT", "2")
    services = make_services(private_azurite, semantic_insights, monkeypatch)
    ids = [str(uuid.uuid4()) for _ in range(6)]
    at = "2026-03-10T10:05:00Z"
    events = [delivery(mid, f"r{n}@contoso.com", "Delivered", at, f"f{n}") for n, mid in enumerate(ids)]
    with serve(services) as host:
        url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName=ingest_email_events"
        with frozen(private_azurite):
            started = time.monotonic()
            status, _ = post(url, events)
            elapsed = time.monotonic() - started
        assert status >= 500  # Event Grid delivers the batch again
        assert elapsed < EVENT_GRID_PATIENCE
        assert elapsed < EVENT_DELIVERY_SECONDS + 2
        print(f"\nfrozen-store Event Grid POST: {status} in {elapsed:.2f} s")
        # Resumed: Event Grid's first retry comes 10 s or more later; by then appends go to the store again.
        time.sleep(journal.STUCK_SECONDS)
        assert post(url, events)[0] == 202
    for n, mid in enumerate(ids):
        partition = services.state.read(mid)
        assert partition is not None, n
        [recipient] = partition.recipients.values()
        assert recipient.final is not None and recipient.final.status == "Delivered"


def test_request_budget_seconds_bounds_an_event_grid_delivery(
    private_azurite: azurite_helper.Azurite, semantic_insights: Insights, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = make_services(private_azurite, semantic_insights, monkeypatch, request_budget_seconds=3.0)
    event = delivery(str(uuid.uuid4()), "a@contoso.com", "Delivered", "2026-03-10T10:05:00Z", "b1")
    with serve(services) as host:
        url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName=ingest_email_events"
        with frozen(private_azurite):
            started = time.monotonic()
            status, _ = post(url, [event])
            elapsed = time.monotonic() - started
    assert status >= 500 and elapsed < 3.0
