"""The delivery state's Table codec (run by hand): encode + decode of 10,000 recipient entities.

    python benchmarks/codec.py [--recipients 10000] [--repeat 7]

The fold encodes every entity it writes (and the store decodes every entity it reads), so the codec's cost is
paid per recipient on the delivery path. Recipients as a fold sees them: a final status from the events (with
its details), a third also from the logs, a fifth with a non-final status and a fifth with engagement.
Prints the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import random
import sys
import timeit
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.state.observations import EngagementObservation, StatusObservation
from shared.state.partition import RecipientState, recipient_entity, recipient_from_entity, recipient_row_key

T0 = datetime(2026, 3, 10, tzinfo=UTC)


def recipients(count: int, seed: int = 1) -> list[tuple[str, RecipientState]]:
    rng = random.Random(seed)
    made = []
    for index in range(count):
        address = f"user{index}@example{rng.randint(0, 50)}.com"
        state = RecipientState(address=address, first_seen=T0, sender="DoNotReply@contoso.com", resource_id="/r")
        at = T0 + timedelta(seconds=rng.randint(0, 86400))
        status = rng.choice(("Delivered",) * 8 + ("Bounced", "Failed"))
        details = {"mail_server": "mx.example.com", "status_message": "ok", "internet_message_id": "<a@b>"}
        state.apply_status(StatusObservation("m", address, status, at, "events", sender="d@c.com", **details))
        if rng.random() < 0.33:
            codes = {"smtp_status_code": "250", "enhanced_smtp_status_code": "2.0.0", "is_hard_bounce": "false"}
            state.apply_status(StatusObservation("m", address, status, at, "logs", **codes))
        if rng.random() < 0.2:
            state.apply_status(StatusObservation("m", address, "OutForDelivery", at, "logs"))
        if rng.random() < 0.2:
            state.apply_engagement(EngagementObservation("m", address, "view", at + timedelta(hours=1), None, "UA"))
            state.apply_engagement(EngagementObservation("m", address, "click", at + timedelta(hours=2), "https://c/1"))
        made.append((recipient_row_key(address), state))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    states = recipients(args.recipients)
    entities = [recipient_entity("m", key, state) for key, state in states]

    def encode() -> None:
        for key, state in states:
            recipient_entity("m", key, state)

    def decode() -> None:
        for entity in entities:
            recipient_from_entity(entity)

    assert all(recipient_from_entity(e) == s for e, (_, s) in zip(entities, states, strict=True))
    best_encode = min(timeit.repeat(encode, number=1, repeat=args.repeat))
    best_decode = min(timeit.repeat(decode, number=1, repeat=args.repeat))
    both = best_encode + best_decode
    print(
        f"{args.recipients:,} recipients: encode {best_encode * 1000:.1f} ms, decode {best_decode * 1000:.1f} ms, "
        f"together {both * 1000:.1f} ms ({both / args.recipients * 1e6:.2f} µs each)"
    )


if __name__ == "__main__":
    main()
