"""The time budget of the current request, readable anywhere below it without passing it along.

An HTTP call gets ``REQUEST_BUDGET_SECONDS`` (default 25 s, far below the 230 s after which Azure's front end
drops a request); whatever waits on a dependency (a Log Analytics retry after a 429, a query's server timeout)
asks ``remaining()`` first and gives up at once when the wait would not fit, so the caller hears 503 with a
``Retry-After`` in time instead of a dropped connection. Outside a request (CLI, timers) there is no budget.

The budget lives in a ``ContextVar``: code that moves work to other threads runs it in a copy of the context
(``contextvars.copy_context().run``), so the budget follows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

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
