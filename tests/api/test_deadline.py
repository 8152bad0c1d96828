"""The request's budget reaches Table Storage and the journal's group commit: against a silent loopback server
(connections accepted, never answered, as a frozen store does), through the real SDK; waiters of a stuck write
stop at their own budget without leaving the commit stuck."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import AzureError

from shared import deadline
from shared.state.journal import GroupCommit
from shared.storage import STORAGE_MARGIN, BudgetSpent, connect_with_string

from azurite import connection_string


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A TCP port that accepts connections (the kernel does, from the backlog) and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server
    server.close()


def silent_table(server: socket.socket) -> Any:
    port = server.getsockname()[1]
    return connect_with_string(connection_string(f"http://127.0.0.1:{port}/devstoreaccount1"), "Silent").client


def test_a_table_call_ends_within_the_budget_when_the_store_never_answers(silent_server: socket.socket) -> None:
    client = silent_table(silent_server)
    started = time.monotonic()
    with deadline.budget(2.0), pytest.raises(AzureError):
        client.get_entity("p", "r")
    elapsed = time.monotonic() - started
    # Its attempt waited what the budget left (less the margin), its retries nothing: the SDK's own read timeout
    # (20 s an attempt, 3 attempts) is never reached.
    assert 2.0 - STORAGE_MARGIN - 0.3 < elapsed < 2.0


def test_no_attempt_starts_once_the_budget_is_spent(silent_server: socket.socket) -> None:
    client = silent_table(silent_server)
    silent_server.setblocking(False)
    with deadline.budget(STORAGE_MARGIN / 2), pytest.raises(BudgetSpent):
        client.get_entity("p", "r")
    with pytest.raises(BlockingIOError):
        silent_server.accept()  # no connection was even opened


def test_a_narrower_budget_never_outlasts_the_request() -> None:
    with deadline.budget(1.0):
        with deadline.within(10.0):
            left = deadline.remaining()
            assert left is not None and left <= 1.0
        with deadline.within(0.2):
            left = deadline.remaining()
            assert left is not None and left <= 0.2
    with deadline.within(3.0):  # outside a request: a budget of its own
        left = deadline.remaining()
        assert left is not None and 2.5 < left <= 3.0
    assert deadline.remaining() is None


def test_event_grid_invocations_get_less_than_event_grids_patience() -> None:
    assert deadline.event_budget(25.0) == deadline.EVENT_DELIVERY_SECONDS < 30
    assert deadline.event_budget(5.0) == 5.0


def test_a_waiter_gives_up_at_its_budget_and_the_commit_goes_on() -> None:
    release = threading.Event()
    written: list[list[str]] = []

    def write(items: list[Any]) -> None:
        written.append(list(items))
        if items == ["lead"]:
            release.wait(10)

    commit = GroupCommit(write, timeout=lambda: TimeoutError("budget"))
    lead = threading.Thread(target=commit.submit, args=(["lead"],))
    lead.start()
    while not written:
        time.sleep(0.01)
    started = time.monotonic()
    with deadline.budget(0.3), pytest.raises(TimeoutError):
        commit.submit(["impatient"])
    assert time.monotonic() - started < 1.0
    release.set()
    lead.join(5)
    commit.submit(["later"])  # the commit is not left busy: this writes at once
    assert written == [["lead"], ["later"]]  # the impatient items left the queue with their caller


def test_a_waiter_without_a_budget_still_waits_for_the_write() -> None:
    release = threading.Event()
    written: list[list[str]] = []

    def write(items: list[Any]) -> None:
        written.append(list(items))
        if items == ["lead"]:
            release.wait(10)

    commit = GroupCommit(write)
    lead = threading.Thread(target=commit.submit, args=(["lead"],))
    lead.start()
    while not written:
        time.sleep(0.01)
    follower = threading.Thread(target=commit.submit, args=(["patient"],))
    follower.start()
    time.sleep(0.3)
    release.set()
    lead.join(5)
    follower.join(5)
    assert written == [["lead"], ["patient"]]
