"""`python -m shared sample` writes the matching Event Grid events; `events send` replays them to a running host,
whose trace then answers from the delivery state with an empty log store (issue 9 item 8)."""

from __future__ import annotations

import io
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest

from local.sample_events import EVENT_STATUSES, events_path
from local.store import open_store
from shared import cli
from shared.push.subscriptions import SubscriptionStore
from shared.schemas import FINAL_STATUSES
from shared.services import Services
from shared.state.events import parse_events
from shared.state.store import StateStore

from apphost import serve, settings


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    store = tmp_path_factory.mktemp("sample") / "logs.duckdb"
    out = io.StringIO()
    assert (
        cli.run(
            ["sample", "--messages", "300", "--days", "1"], out, services=Services(settings(local_store=str(store)))
        )
        == 0
    )
    summary = json.loads(out.getvalue())
    assert summary["events"]["file"] == str(events_path(store))
    events = json.loads(events_path(store).read_text())
    assert summary["events"]["deliveryEvents"] + summary["events"]["engagementEvents"] == len(events)
    return store, events


def test_one_event_per_recipient_status_row_in_event_grid_schema_with_casing_variants(
    sample: tuple[Path, list[Any]],
) -> None:
    store, events = sample
    con = open_store(store, read_only=True)
    statuses = ", ".join(f"'{s}'" for s in EVENT_STATUSES)
    (rows,) = con.execute(
        'SELECT count(*) FROM "ACSEmailStatusUpdateOperational" WHERE "RecipientId" <> \'\' '
        f'AND "DeliveryStatus" IN ({statuses})'
    ).fetchall()[0]
    (engagements,) = con.execute('SELECT count(*) FROM "ACSEmailUserEngagementOperational"').fetchall()[0]
    con.close()
    reports, errors = parse_events(events)
    assert errors == [] and len(reports) == len(events) == rows + engagements and rows > 0
    delivery = [e for e in events if e["eventType"].endswith("EmailDeliveryReportReceived")]
    keys = {key for e in delivery for key in e["data"]}
    assert {"deliveryAttemptTimestamp", "deliveryAttemptTimeStamp"} <= keys  # both casings, as in the wild
    for event in delivery:
        assert event["subject"] == f"sender/{event['data']['sender']}/message/{event['data']['messageId']}"
        if event["data"]["status"] == "Suppressed":
            assert "internetMessageId" not in event["data"]
    assert len({e["id"] for e in events}) == len(events)


@pytest.fixture
def empty_log_host(tmp_path: Path, azurite_connection_string: str) -> Iterator[tuple[str, Services]]:
    logs = tmp_path / "empty.duckdb"
    open_store(logs).close()
    state = StateStore.from_connection_string(azurite_connection_string, "Replay" + uuid.uuid4().hex[:10])
    subscriptions = SubscriptionStore.from_connection_string(azurite_connection_string, "Subs" + uuid.uuid4().hex[:10])
    services = Services(settings(local_store=str(logs)), state=state, subscriptions=subscriptions)
    with serve(services) as host:
        yield host.base_url, services
    state.client.delete_table()
    services.close()


def test_replayed_events_answer_the_trace_from_the_state_with_an_empty_log_store(
    sample: tuple[Path, list[Any]], empty_log_host: tuple[str, Services]
) -> None:
    store, events = sample
    base_url, services = empty_log_host
    url = f"{base_url}/runtime/webhooks/eventgrid?functionName=ingest_email_events"
    out = io.StringIO()
    assert cli.run(["events", "send", str(events_path(store)), "--to", url, "--batch", "500"], out) == 0
    assert json.loads(out.getvalue()) == {"events": len(events), "batches": -(-len(events) // 500)}
    statuses: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event["eventType"].endswith("EmailDeliveryReportReceived"):
            statuses[event["data"]["messageId"]].add(event["data"]["status"])
    message_id = next(m for m, s in sorted(statuses.items()) if s <= set(FINAL_STATUSES))
    with urlopen(f"{base_url}/api/messages/{message_id}") as response:
        # Events carry no recipient count, and the logs hold nothing: pending, never final on a guess.
        assert response.status == 202
        assert json.loads(response.read())["expectedRecipients"] is None
    recipients = sorted({e["data"]["recipient"] for e in events if e["data"]["messageId"] == message_id})
    register = Request(
        f"{base_url}/api/messages/{message_id}",
        json.dumps({"recipients": recipients}).encode(),
        {"Content-Type": "application/json"},
        method="PUT",
    )
    with urlopen(register) as response:
        assert response.status == 201
    with urlopen(f"{base_url}/api/messages/{message_id}") as response:
        assert response.status == 200  # the app said whom to wait for: final from the state at once
        body = json.loads(response.read())
    assert body["source"] == "state" and body["state"] == "final"
    assert body["outcome"] in ("delivered", "partiallyDelivered", "notDelivered")
    assert sum(body["counts"].values()) == len(body["recipients"]) > 0
    partition = services.state.read(message_id)
    assert partition is not None and partition.message.send is None  # events only: no send row anywhere
    assert {r.source for r in partition.recipients.values()} == {"events"}


def test_events_send_bad_input_exits_2_and_an_unreachable_host_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    url = "http://127.0.0.1:9/runtime/webhooks/eventgrid?functionName=ingest_email_events"
    assert cli.run(["events", "send", str(bad), "--to", url], io.StringIO()) == 2
    good = tmp_path / "good.json"
    good.write_text("[]")
    assert cli.run(["events", "send", str(good), "--to", "ftp://x/"], io.StringIO()) == 2
    assert cli.run(["events", "send", str(good), "--to", url, "--batch", "0"], io.StringIO()) == 2
    good.write_text(json.dumps([{"id": "1"}]))
    assert cli.run(["events", "send", str(good), "--to", url], io.StringIO()) == 1
    assert cli.run(["events", "send", str(tmp_path / "missing.json"), "--to", url], io.StringIO()) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 5 and all(line.startswith("error: ") and "Traceback" not in line for line in errors)
