"""The delivery rules the state, the log trace and the trace share: written once, here (docs/semantics.md).

* **bounce type** (:func:`bounce_type`): only a ``Bounced`` or ``Failed`` recipient can bounce; its type is the
  reported ``IsHardBounce`` or, when that is empty, inferred from its codes. Every other final status is "Not
  Applicable", whatever its ``IsHardBounce`` says (ACS writes ``False`` on Suppressed, Quarantined and
  FilteredSpam). The correlation query's ``BounceType`` (``shared.kql.builder``) is the same rule in KQL, and
  ``tests/test_state_rules.py`` checks that both agree on every final row of the semantics fixture.
* **final** (:func:`message_final`): a message is final when it failed as a whole, or once its expected
  recipients are known (the send row, or the app's registration) and every known recipient has a final status,
  as many as expected. A distribution list (``Expanded``) resolves through its members: it is not final itself,
  and a message with one is final only once the member events have been quiet for :data:`EXPANSION_QUIET`.
  With no expected count the answer waits (pending, then expired at the status grace): never a guess.
* **times within reason** (:func:`time_fault`): an observation dated more than :data:`FUTURE_TOLERANCE` after it
  arrived, or more than :data:`MAX_AGE` before, is set aside with its reason, never stored as it came; so is a
  status dated more than :data:`CLOCK_SKEW_ALLOWANCE` before its message's send (``shared.state.partition``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final

from shared.codes import infer_bounce
from shared.schemas import FINAL_STATUSES

#: The only final statuses that can be bounces.
BOUNCE_STATUSES: Final = ("Bounced", "Failed")
#: A distribution list's status: its members are recipients of their own.
EXPANDED: Final = "Expanded"
#: How long a message with an expanded list waits after its latest event before it is final (members of a list
#: report minutes apart; a quarter of an hour of silence means no more are coming).
EXPANSION_QUIET: Final = timedelta(minutes=15)
#: An observation dated further ahead of its arrival than this is not believed (clocks drift by seconds).
FUTURE_TOLERANCE: Final = timedelta(minutes=10)
#: A status dated this much before its message's send is not believed (clocks drift by seconds; a status a little
#: before the send is kept and flagged ``clockSkew``).
CLOCK_SKEW_ALLOWANCE: Final = timedelta(minutes=10)
#: An observation dated further back than this before its arrival is not believed either: Event Grid retries for
#: a day, and no log row is older than Log Analytics' longest interactive retention (two years), which a follower
#: catching up or a trace's write-back may read.
MAX_AGE: Final = timedelta(days=731)

BounceLabel = str  # "Hard Bounce" | "Soft Bounce" | "Not Applicable" | "Unknown"


def is_final_status(status: str | None) -> bool:
    return status in FINAL_STATUSES


def bounce_type(
    status: str, is_hard_bounce: object, smtp_status_code: str | None, enhanced_smtp_status_code: str | None
) -> tuple[str, str]:
    """(bounce type label, its source) of a recipient's final status: the one bounce rule (module docstring)."""
    if status not in BOUNCE_STATUSES:
        return ("Not Applicable", "notApplicable") if status else ("Unknown", "unknown")
    reported = str(is_hard_bounce).strip().lower() if is_hard_bounce is not None else ""
    if reported in ("true", "false"):
        return ("Hard Bounce" if reported == "true" else "Soft Bounce"), "reported"
    inferred = infer_bounce(smtp_status_code, enhanced_smtp_status_code)
    if inferred is None:
        for code in (enhanced_smtp_status_code, smtp_status_code):
            if code and code.strip()[:1] in ("4", "5"):
                inferred = "hard" if code.strip()[0] == "5" else "soft"
                break
    if inferred in ("hard", "soft"):
        return ("Hard Bounce" if inferred == "hard" else "Soft Bounce"), "inferred"
    return "Unknown", "unknown"


def message_final(
    *,
    terminal: bool,
    expected: int | None,
    finals: int,
    waiting: int,
    lists: int,
    latest: datetime | None,
    now: datetime | None,
) -> bool:
    """Whether a message is final (module docstring).

    ``finals``: known recipients with a final status; ``waiting``: known recipients with none (registered, or
    only intermediate statuses); ``lists``: recipients whose latest status is ``Expanded``; ``latest``: the
    newest time observed of the message; ``now`` None (no clock: a write's view) never passes the quiet period.
    """
    if terminal:
        return True
    if not expected or expected <= 0 or waiting or finals < expected:
        return False
    if not lists:
        return True
    return now is not None and latest is not None and now - latest >= EXPANSION_QUIET


def unresolved_count(expected: int | None, finals: int) -> int | None:
    """Recipients still owed a final status, counted against the expected ones (None: not known)."""
    return None if not expected else max(0, expected - finals)


def send_time_bound(send_time: datetime | None, observed: Iterable[datetime]) -> datetime | None:
    """The send time, or when it is not known the earliest time observed (the send came before it)."""
    if send_time is not None:
        return send_time
    return min(observed, default=None)


def expired(started: datetime, now: datetime, status_grace: timedelta) -> bool:
    """Whether a message not final by now never will be, for us: its status grace since the send has run out.
    The trace's ``expired`` and the push's deadline (the outbox entry due at ``started + status_grace``) both ask
    this, so the push leaves exactly when GET starts answering the definite end."""
    return now >= started + status_grace


def time_fault(time: datetime, arrived_at: datetime) -> str | None:
    """Why an observation's time cannot be believed, or None when it is within reason."""
    if time > arrived_at + FUTURE_TOLERANCE:
        return f"dated more than {int(FUTURE_TOLERANCE.total_seconds() // 60)} minutes after it arrived"
    if time < arrived_at - MAX_AGE:
        return f"dated more than {MAX_AGE.days} days before it arrived"
    return None
