"""The delivery state's Table layout, pinned: every entity the codec writes, property for property and type for
type, against a golden fixture recorded with the hand-written mapping the codec replaced, and every state read
back as it was written (no migration: the stored layout never changes by accident).

``data/codec_golden.json`` holds generated cases (a seeded generator covering every stored field with and
without a value: both sources' final records, non-final and message-level statuses, sends with and without
counts, registrations with and without addresses, views and clicks, first seen and first asked, odd text).
A case is its observations in their journal form (:func:`shared.state.journal.encode`), each with the time it
arrived (or none), applied to an empty partition, and the entities written for that partition, each value
tagged with its type. Rewrite it only for a deliberate layout change, with a migration:
``PYTHONPATH=. .venv/bin/python tests/state/test_state_codec.py --write``.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.schemas import FINAL_STATUSES
from shared.state import codec
from shared.state.journal import decode, encode
from shared.state.observations import (
    EngagementObservation,
    Observation,
    RegistrationObservation,
    SendObservation,
    StatusObservation,
)
from shared.state.partition import MessageState, Partition, RecipientState, partition_entities, partition_from_entities
from shared.state.store import empty_partition

GOLDEN = Path(__file__).parent / "data" / "codec_golden.json"
CASES = 100
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)

ADDRESSES = ("a@x.com", "A@X.com", "b@example.org", "ünï@exämple.de", "o'hara+tag@x.com", '"q u"@x.com')
STATUSES = (*FINAL_STATUSES, "Expanded", "OutForDelivery", "Dropped", "Brand new status")
TEXTS = ("", "550", "5.1.1", "mx.example.com", 'say "no"; | take 1\nnext line', "ünïcödé ✉", "x" * 60)
URLS = ("https://c.com/1", "https://c.com/a b?q=\"x\"&y='z'", "https://ünï.de/ü")
#: Longer than a clicked URL is kept (2,048 characters).
LONG_URL = "https://c.com/" + "p" * 2100


# --------------------------------------------------------------------------- generated cases


def _maybe(rng: random.Random, values: tuple[Any, ...]) -> Any:
    return None if rng.random() < 0.45 else rng.choice(values)


def _time(rng: random.Random) -> datetime:
    moment = T0 + timedelta(minutes=rng.randint(-30, 180), microseconds=rng.randint(0, 999_999))
    return moment.astimezone(timezone(timedelta(hours=2))) if rng.random() < 0.1 else moment


def _status(rng: random.Random, mid: str) -> StatusObservation:
    text = TEXTS
    return StatusObservation(
        mid,
        None if rng.random() < 0.2 else rng.choice(ADDRESSES),
        rng.choice(STATUSES),
        _time(rng),
        rng.choice(("events", "logs")),
        sender=_maybe(rng, ("DoNotReply@contoso.com", "b@contoso.com")),
        smtp_status_code=_maybe(rng, ("550", "421", "250", "")),
        enhanced_smtp_status_code=_maybe(rng, ("5.1.1", "4.2.2", "2.0.0")),
        failure_reason=_maybe(rng, text),
        failure_message=_maybe(rng, text),
        is_hard_bounce=_maybe(rng, ("true", "false", "True", "maybe")),
        mail_server=_maybe(rng, text),
        internet_message_id=_maybe(rng, ("<a@b>", "<ü@x>")),
        status_message=_maybe(rng, text),
        resource_id=_maybe(rng, ("/subscriptions/s/r1", "/subscriptions/s/r0")),
    )


def _send(rng: random.Random, mid: str) -> SendObservation:
    count = (0, 1, 2, 3, 1000)
    return SendObservation(
        mid,
        _time(rng),
        message_size=_maybe(rng, (0.0, 0.1, 12.0, 1e6, 2.5)),
        attachments_count=_maybe(rng, count),
        to_recipients_count=_maybe(rng, count),
        cc_recipients_count=_maybe(rng, count),
        bcc_recipients_count=_maybe(rng, count),
        unique_recipients_count=_maybe(rng, (1, 2, 3)),
        resource_id=_maybe(rng, ("/subscriptions/s/r1", "/subscriptions/s/r2")),
    )


def _engagement(rng: random.Random, mid: str) -> EngagementObservation:
    return EngagementObservation(
        mid,
        rng.choice(ADDRESSES),
        rng.choice(("view", "click", "click")),
        _time(rng) + timedelta(hours=rng.randint(0, 48)),
        context=LONG_URL if rng.random() < 0.01 else _maybe(rng, URLS),
        user_agent=_maybe(rng, ("UA", "Mozilla/5.0 (X11)")),
        sender=_maybe(rng, ("DoNotReply@contoso.com",)),
        resource_id=_maybe(rng, ("/subscriptions/s/r1",)),
    )


def _registration(rng: random.Random, mid: str) -> RegistrationObservation:
    named = rng.random() < 0.6
    count = rng.randint(1, 3)
    addresses = tuple(rng.sample(ADDRESSES, count)) if named else ()
    return RegistrationObservation(mid, _time(rng), count, addresses)


def generated_case(rng: random.Random, mid: str) -> dict[str, Any]:
    """A case: observations with their arrival times (or None), and the message's first question (or None)."""
    makers = (_status,) * 5 + (_send, _engagement, _engagement, _registration)
    arrivals = []
    for _ in range(rng.randint(1, 10)):
        observation = rng.choice(makers)(rng, mid)
        seen = None
        if rng.random() < 0.6:
            # Mostly believable arrivals; a few dated too far after their arrival (set aside).
            late = rng.choice((0, 5, 300, 3600)) if rng.random() < 0.9 else -3600
            seen = _observation_time(observation) + timedelta(seconds=late)
        arrivals.append((observation, seen))
    asked = T0 - timedelta(minutes=rng.randint(0, 90)) if rng.random() < 0.3 else None
    return {
        "observations": [[encode(o), None if seen is None else seen.isoformat()] for o, seen in arrivals],
        "first_asked": None if asked is None else asked.isoformat(),
    }


def _observation_time(observation: Observation) -> datetime:
    return observation.send_time if isinstance(observation, SendObservation) else observation.time


def partition_of(case: dict[str, Any], mid: str) -> Partition:
    partition = empty_partition(mid)
    for values, seen in case["observations"]:
        partition.apply(decode(values), seen_at=None if seen is None else datetime.fromisoformat(seen))
    if case["first_asked"] is not None:
        partition.message.first_asked = datetime.fromisoformat(case["first_asked"])
    return partition


# --------------------------------------------------------------------------- typed values

_TAGS: dict[type, str] = {str: "s", int: "i", float: "f", bool: "b", datetime: "t"}


def typed(entities: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[Any]]]:
    """Entities with each value tagged by its exact type (so 1, 1.0 and True differ; a datetime keeps its instant)."""
    out: dict[str, dict[str, list[Any]]] = {}
    for key, entity in entities.items():
        out[key] = {}
        for name, value in entity.items():
            tag = _TAGS[type(value)]
            out[key][name] = [tag, value.astimezone(UTC).isoformat() if tag == "t" else value]
    return out


def untyped(entities: dict[str, dict[str, list[Any]]]) -> list[dict[str, Any]]:
    return [
        {name: datetime.fromisoformat(value) if tag == "t" else value for name, (tag, value) in entity.items()}
        for entity in entities.values()
    ]


def _mid(index: int) -> str:
    return f"golden-{index:04d}"


def _golden() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(GOLDEN.read_text(encoding="utf-8"))["cases"]
    return cases


def write_golden() -> None:
    rng = random.Random(17)
    cases = []
    for index in range(CASES):
        case = generated_case(rng, _mid(index))
        case["entities"] = typed(partition_entities(partition_of(case, _mid(index))))
        cases.append(case)
    GOLDEN.parent.mkdir(exist_ok=True)
    lines = ",\n".join(json.dumps(case, ensure_ascii=False, separators=(",", ":")) for case in cases)
    GOLDEN.write_text('{"cases": [\n' + lines + "\n]}\n", encoding="utf-8")


# --------------------------------------------------------------------------- the layout, pinned


def test_the_codec_writes_the_recorded_entities_property_for_property() -> None:
    cases = _golden()
    assert len(cases) == CASES
    for index, case in enumerate(cases):
        assert typed(partition_entities(partition_of(case, _mid(index)))) == case["entities"], f"case {index}"


def test_the_recorded_entities_read_back_as_the_state_that_wrote_them() -> None:
    for index, case in enumerate(_golden()):
        read = partition_from_entities(_mid(index), untyped(case["entities"]))
        assert read == partition_of(case, _mid(index)), f"case {index}"
        assert typed(partition_entities(read)) == case["entities"], f"case {index}"


def test_the_cases_cover_every_stored_field_with_and_without_a_value() -> None:
    """Each field of the stored dataclasses is empty (None, (), False) in some case and set in another."""
    seen: dict[str, set[bool]] = {}

    def note(record: object, prefix: str) -> None:
        for item in fields(record):  # type: ignore[arg-type]
            if item.name == "etag":
                continue
            value = getattr(record, item.name)
            seen.setdefault(prefix + item.name, set()).add(value not in (None, (), False, ""))
            if hasattr(value, "__dataclass_fields__"):
                note(value, f"{prefix}{item.name}.")

    for index, case in enumerate(_golden()):
        partition = partition_of(case, _mid(index))
        note(partition.message, "message.")
        for recipient in partition.recipients.values():
            note(recipient, "recipient.")
    always = {"message.message_id", "recipient.address"}
    always |= {f"recipient.{side}.{name}" for side in ("event_final", "log_final") for name in ("status", "time")}
    always |= {"message.send.send_time", "message.send.message_id"}
    always |= {f"message.registration.{name}" for name in ("message_id", "time", "expected_recipients")}
    assert {name for name, values in seen.items() if values != {True, False}} == always
    assert all(seen[name] == {True} for name in always)


def test_each_column_is_declared_once_and_the_declarations_are_the_recorded_layout() -> None:
    """The columns the dataclasses declare are exactly those the fixture's entities hold: none twice, none missing
    (a column no case wrote would be declared for nothing), none unknown."""
    declared = {"message": codec.columns(MessageState), "recipient": codec.columns(RecipientState)}
    keys = {"message": {"RowKey", "Kind"}, "recipient": {"PartitionKey", "RowKey", "Kind"}}
    for kind, names in declared.items():
        assert len(names) == len(set(names)), kind
        assert not keys[kind] & set(names), kind
        recorded = {name for case in _golden() for e in case["entities"].values() if e["Kind"][1] == kind for name in e}
        assert recorded == set(names) | keys[kind], kind


@settings(max_examples=150, deadline=None)
@given(st.randoms(use_true_random=False))
def test_any_generated_state_reads_back_as_it_was_written(rng: random.Random) -> None:
    partition = partition_of(generated_case(rng, "m"), "m")
    entities = partition_entities(partition)
    read = partition_from_entities("m", [dict(entity) for entity in entities.values()])
    assert read == partition
    assert typed(partition_entities(read)) == typed(entities)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_golden()
        print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size:,} bytes)")
