"""Push benchmark (run by hand): what idle subscriptions cost each follower run.

    python benchmarks/push.py [--subscriptions 0 1000 4000]

Each count of message subscriptions to messages nothing is known of yet (they wait for the status grace) is
created in a fresh Azurite table through ``Push.subscribe`` (as ``POST /api/subscriptions`` does); then the
push half of one follower run is timed: ``Push.hook()`` (what the fold is handed) and ``Push.run_due()``
(clean-up, what is due), on a new ``Push`` each time, as on a timer run a minute after the last (the
subscription cache long stale). The median of five runs of each is printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from shared.models import CreateSubscriptionBody  # noqa: E402
from shared.push.delivery import Push  # noqa: E402
from shared.push.subscriptions import SubscriptionStore  # noqa: E402
from shared.state.store import StateStore  # noqa: E402

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def _push(subscriptions: SubscriptionStore, state: StateStore) -> Push:
    return Push(
        lambda: subscriptions,
        state=lambda: state,
        trace=lambda message_id: (_ for _ in ()).throw(AssertionError("nothing is due")),
        clock=lambda: NOW,
        status_grace=timedelta(hours=72),
        allow_loopback_http=True,
        max_subscriptions=10**6,
    )


def measure(connection_string: str, count: int) -> dict[str, Any]:
    name = uuid.uuid4().hex[:10]
    subscriptions = SubscriptionStore.from_connection_string(connection_string, "BenchSubs" + name)
    state = StateStore.from_connection_string(connection_string, "BenchState" + name)
    state.ensure_table()
    creator = _push(subscriptions, state)
    started = time.perf_counter()
    for _ in range(count):
        body = {"callbackUrl": "http://127.0.0.1:9/hook", "messageId": "m-" + uuid.uuid4().hex}
        creator.subscribe(CreateSubscriptionBody.model_validate(body))
    created = time.perf_counter() - started
    creator.close()
    hooks, runs = [], []
    for _ in range(5):
        subscriptions.forget()
        push = _push(subscriptions, state)
        started = time.perf_counter()
        push.hook()
        hooked = time.perf_counter()
        outcome = push.run_due()
        hooks.append(hooked - started)
        runs.append(time.perf_counter() - hooked)
        push.close()
        assert outcome["attempted"] == 0, outcome
    subscriptions.client.delete_table()
    state.client.delete_table()
    return {
        "subscriptions": count,
        "create_ms_each": round(created * 1000 / max(count, 1), 1),
        "hook_ms": round(statistics.median(hooks) * 1000, 1),
        "run_due_ms": round(statistics.median(runs) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, nargs="+", default=[0, 1000, 4000])
    args = parser.parse_args()
    from azurite import running  # type: ignore[import-not-found]

    with running() as azurite:
        for count in args.subscriptions:
            print(measure(azurite.connection_string, count), flush=True)


if __name__ == "__main__":
    main()
