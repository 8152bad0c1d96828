"""The time budget of the current request, readable anywhere below it without passing it along.

An HTTP call gets ``REQUEST_BUDGET_SECONDS`` (default 25 s, far below the 230 s after which Azure's front end
drops a request); whatever waits on a dependency (a Log Analytics retry after a 429, a query's server timeout)
asks ``remaining()`` first and gives up at once when the wait would not fit, so the caller hears 503 with a
``Retry-After`` in time instead of a dropped connection. Outside a request (CLI, timers) there is no budget.

The budget lives in a ``ContextVar``: code that moves work to other threads runs it in a copy of the context
(``contextvars.copy_context().run``), so the budget follows.

Table Storage honours it too (:class:`shared.storage.DeadlineTransport`: each attempt's connect and read
timeouts are cut to what is left), so a frozen store costs the request its budget, never more. A part of
the request that must leave time for another (the trace's state read, before the log query) runs in a
narrower budget (:func:`within`). An Event Grid delivery gets :func:`event_budget`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

#: Event Grid waits 30 s for the answer to a delivery and then counts it failed (and delivers again); an
#: invocation gets at most this, the rest being the host's (binding, answering) and the network's.
EVENT_DELIVERY_SECONDS: Final = 20.0

_deadline: ContextVar[float | None] = ContextVar("deadline", default=None)


@contextmanager
def budget(seconds: float | None) -> Iterator[None]:
    token = _deadline.set(None if seconds is None else time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left in the current budget (never negative), or None when there is no budget."""
    deadline = _deadline.get()
    return None if deadline is None else max(0.0, deadline - time.monotonic())


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """A narrower budget: at most *seconds* from now, and never past the current deadline (if any)."""
    current = _deadline.get()
    token = _deadline.set(min(time.monotonic() + max(0.0, seconds), current if current is not None else float("inf")))
    try:
        yield
    finally:
        _deadline.reset(token)


def event_budget(request_budget: float) -> float:
    """The budget of one Event Grid invocation: the request budget, but never past Event Grid's patience."""
    return min(request_budget, EVENT_DELIVERY_SECONDS)
