"""The dev host (tools/devhost), driven over real HTTP on loopback with a toy app: routes, admin timers, the Event
Grid webhook, keys, errors, bursts and its log lines; timers on their NCRONTAB schedules and queue triggers on
Azurite's queue service (poison after maxDequeueCount)."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.queues import queue_with_string
from tools.devhost import DevHost, HostConfigError, Keys
from tools.devhost.schedule import Schedule, ScheduleError
from tools.devhost.triggers import QueueOptions

ROOT = Path(__file__).resolve().parents[2]
SETTING = "DEVHOST_TEST_SETTING"
PRESET = "DEVHOST_TEST_PRESET"


def make_app(ticks: list[bool], events: list[func.EventGridEvent]) -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="items/{id}", methods=["GET"])
    def get_item(req: func.HttpRequest) -> func.HttpResponse:
        body = {
            "id": req.route_params["id"],
            "q": req.params.get("q"),
            "echo": req.headers.get("x-echo"),
            "url": req.url,
            "setting": os.environ.get(SETTING),
            "preset": os.environ.get(PRESET),
        }
        return func.HttpResponse(json.dumps(body), mimetype="application/json")

    @app.route(route="items/{id}/poll", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def poll_item(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("poll " + req.route_params["id"])

    @app.route(route="items", methods=["POST"])
    def create_item(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.get_body(), status_code=201, mimetype="application/octet-stream")

    @app.route(route="admin-only", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
    def admin_only(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("admin")

    @app.route(route="boom", methods=["GET"])
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("secret internals")

    @app.timer_trigger(schedule="0 30 1 * * *", arg_name="timer", run_on_startup=False)
    def nightly(timer: func.TimerRequest) -> None:
        ticks.append(timer.past_due)

    @app.event_grid_trigger(arg_name="event")
    def on_event(event: func.EventGridEvent) -> None:
        if (event.get_json() or {}).get("poison"):
            raise ValueError("cannot take this one")
        events.append(event)

    return app


Reply = tuple[int, Message, bytes]


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


def assert_problem(reply: Reply, status: int) -> dict[str, object]:
    code, headers, body = reply
    assert code == status, body
    assert headers.get_content_type() == "application/problem+json"
    document = json.loads(body)
    assert document["status"] == status and document["detail"]
    return dict(document)


@pytest.fixture
def ticks() -> list[bool]:
    return []


@pytest.fixture
def events() -> list[func.EventGridEvent]:
    return []


@pytest.fixture
def host(ticks: list[bool], events: list[func.EventGridEvent], tmp_path: Path) -> Iterator[DevHost]:
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": {SETTING: "from-file", PRESET: "from-file"}}))
    os.environ[PRESET] = "from-env"
    try:
        with DevHost(make_app(ticks, events), settings_file=settings, host_file=ROOT / "host.json") as h:
            yield h
    finally:
        os.environ.pop(PRESET, None)
    assert SETTING not in os.environ  # the settings it applied are gone again


def test_route_values_query_headers_settings_and_absolute_url(host: DevHost) -> None:
    status, _, body = call(f"{host.base_url}/api/items/42?q=x", headers={"x-echo": "hi"})
    assert status == 200
    data = json.loads(body)
    assert data == {
        "id": "42",
        "q": "x",
        "echo": "hi",
        "url": f"{host.base_url}/api/items/42?q=x",
        "setting": "from-file",
        "preset": "from-env",
    }


def test_literal_segments_win_and_bodies_pass_through(host: DevHost) -> None:
    assert call(f"{host.base_url}/api/items/9/poll")[2] == b"poll 9"
    status, _, body = call(f"{host.base_url}/api/items", "POST", b"\x00\x01raw")
    assert (status, body) == (201, b"\x00\x01raw")


def test_unknown_route_wrong_method_trace_and_long_url_are_problems(host: DevHost) -> None:
    assert_problem(call(f"{host.base_url}/api/nothing"), 404)
    status, headers, _ = call(f"{host.base_url}/api/items/1", "DELETE")
    assert status == 405 and headers["Allow"] == "GET"
    assert_problem(call(f"{host.base_url}/api/items/1", "TRACE"), 405)
    assert_problem(call(f"{host.base_url}/api/items/1?q=" + "x" * 9000), 414)


def test_a_failing_function_is_a_500_problem(host: DevHost, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="devhost"):
        assert_problem(call(f"{host.base_url}/api/boom"), 500)
    assert "GET api/boom 500" in caplog.text


def test_one_log_line_per_request_names_the_template_not_the_url(
    host: DevHost, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="devhost"):
        call(f"{host.base_url}/api/items/carol%40contoso.com?code=secret-key")
    lines = [r.getMessage() for r in caplog.records if r.name == "devhost"]
    assert len(lines) == 1 and lines[0].startswith("GET api/items/{id} 200 ")
    assert "carol" not in caplog.text and "secret-key" not in caplog.text


def test_admin_runs_a_timer(host: DevHost, ticks: list[bool]) -> None:
    assert call(f"{host.base_url}/admin/functions/nightly", "POST", b"{}")[0] == 202
    assert ticks == [False]
    assert_problem(call(f"{host.base_url}/admin/functions/nothing", "POST", b"{}"), 404)
    assert_problem(call(f"{host.base_url}/admin/functions/nightly"), 405)


def _eventgrid(host: DevHost, kind: str, body: object, name: str = "on_event") -> Reply:
    url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName={name}"
    return call(url, "POST", json.dumps(body).encode(), {"aeg-event-type": kind, "Content-Type": "application/json"})


def _event(number: int, **data: object) -> dict[str, object]:
    return {
        "id": f"e{number}",
        "topic": "/subscriptions/x",
        "subject": "s",
        "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
        "eventTime": "2026-11-30T10:00:00Z",
        "dataVersion": "1.0",
        "data": {"n": number, **data},
    }


def test_eventgrid_handshake_notification_and_deletion(host: DevHost, events: list[func.EventGridEvent]) -> None:
    validation = [{"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {"validationCode": "abc"}}]
    status, _, body = _eventgrid(host, "SubscriptionValidation", validation)
    assert (status, json.loads(body)) == (200, {"validationResponse": "abc"})
    assert _eventgrid(host, "Notification", [_event(1), _event(2)])[0] == 202
    assert [e.id for e in events] == ["e1", "e2"] and events[0].get_json() == {"n": 1}
    assert events[0].event_type == "Microsoft.Communication.EmailDeliveryReportReceived"
    assert _eventgrid(host, "SubscriptionDeletion", [])[0] == 202


def test_eventgrid_failures(host: DevHost, events: list[func.EventGridEvent]) -> None:
    # A function that raises makes the batch fail (500), so Event Grid delivers it again; the others still ran.
    assert_problem(_eventgrid(host, "Notification", [_event(1, poison=True), _event(2)]), 500)
    assert [e.id for e in events] == ["e2"]
    assert_problem(_eventgrid(host, "Nonsense", [_event(3)]), 400)
    assert_problem(_eventgrid(host, "Notification", [_event(3)], name="nothing"), 404)
    url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName=on_event"
    assert_problem(call(url, "POST", b"{not json", {"aeg-event-type": "Notification"}), 400)


def test_a_burst_of_200_connections_all_get_an_answer(host: DevHost) -> None:
    url = f"{host.base_url}/api/items/1"
    start = threading.Barrier(200, timeout=30)

    def one(_: int) -> int:
        start.wait()
        return call(url)[0]

    with ThreadPoolExecutor(max_workers=200) as pool:
        statuses = list(pool.map(one, range(200)))
    assert statuses == [200] * 200


def test_keys_are_not_needed_on_loopback_but_enforced_when_given(
    ticks: list[bool], events: list[func.EventGridEvent]
) -> None:
    keys = Keys(function="fkey", master="mkey")
    with DevHost(make_app(ticks, events), keys=keys, settings_file=None, host_file=None) as h:
        assert_problem(call(f"{h.base_url}/api/items/1"), 401)
        assert call(f"{h.base_url}/api/items/1?code=fkey")[0] == 200
        assert call(f"{h.base_url}/api/items/1", headers={"x-functions-key": "mkey"})[0] == 200
        assert call(f"{h.base_url}/api/items/1/poll")[0] == 200  # anonymous
        assert_problem(call(f"{h.base_url}/api/admin-only?code=fkey"), 401)
        assert call(f"{h.base_url}/api/admin-only?code=mkey")[0] == 200
        assert_problem(call(f"{h.base_url}/admin/functions/nightly?code=fkey", "POST", b"{}"), 401)
        assert call(f"{h.base_url}/admin/functions/nightly?code=mkey", "POST", b"{}")[0] == 202


def test_a_public_bind_without_keys_is_refused(ticks: list[bool], events: list[func.EventGridEvent]) -> None:
    with pytest.raises(HostConfigError):
        DevHost(make_app(ticks, events), host="0.0.0.0", settings_file=None)  # noqa: S104 (refused, never bound)


def test_cli_exits_2_with_one_line(tmp_path: Path) -> None:
    public = subprocess.run(
        [sys.executable, "-m", "tools.devhost", "--host", "0.0.0.0", "--settings", str(tmp_path / "x.json")],  # noqa: S104
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert public.returncode == 2 and public.stderr.count("\n") == 1 and "--master-key" in public.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = subprocess.run(
            [sys.executable, "-m", "tools.devhost", "--port", str(port), "--settings", str(tmp_path / "none.json")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert taken.returncode == 2 and taken.stderr.count("\n") == 1 and str(port) in taken.stderr


# --------------------------------------------------------------------------- timers on their schedules


def test_ncrontab_schedules_as_the_timer_trigger_reads_them() -> None:
    at = datetime(2026, 3, 10, 10, 20, 5, 500_000, tzinfo=UTC)  # a Tuesday
    assert Schedule.parse("*/2 * * * * *").next_after(at) == datetime(2026, 3, 10, 10, 20, 6, tzinfo=UTC)
    assert Schedule.parse("0 */1 * * * *").next_after(at) == datetime(2026, 3, 10, 10, 21, tzinfo=UTC)
    assert Schedule.parse("0 30 1 * * *").next_after(at) == datetime(2026, 3, 11, 1, 30, tzinfo=UTC)
    assert Schedule.parse("0 0 9 * * Mon-Fri").next_after(at) == datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
    assert Schedule.parse("0 0 12 * * 0").next_after(at) == datetime(2026, 3, 15, 12, 0, tzinfo=UTC)  # Sunday
    assert Schedule.parse("0 0 0 29 Feb *").next_after(at) == datetime(2028, 2, 29, tzinfo=UTC)
    assert Schedule.parse("*/5 * * * *").next_after(at) == datetime(2026, 3, 10, 10, 25, tzinfo=UTC)  # five fields
    for bad in ("* * * *", "61 * * * * *", "*/0 * * * * *", "0 0 0 * * Xyz", "0 0 0 31 2 *"):
        with pytest.raises(ScheduleError):
            Schedule.parse(bad).next_after(at)


def test_website_time_zone_moves_the_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    at = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    monkeypatch.setenv("WEBSITE_TIME_ZONE", "Europe/Paris")  # UTC+2 in July
    assert Schedule.parse("0 30 1 * * *").next_after(at) == datetime(2026, 7, 1, 23, 30, tzinfo=UTC)
    monkeypatch.setenv("WEBSITE_TIME_ZONE", "Not/AZone")
    with pytest.raises(ScheduleError):
        Schedule.parse("0 30 1 * * *")


def ticking_app(ticks: list[func.TimerRequest], *, on_startup: bool = False) -> func.FunctionApp:
    app = func.FunctionApp()

    @app.timer_trigger(schedule="%DEVHOST_TEST_TICK%", arg_name="timer", run_on_startup=on_startup)
    def tick(timer: func.TimerRequest) -> None:
        ticks.append(timer)

    return app


@pytest.mark.slow  # waits on purpose or runs the Kusto language service: CI, not test-fast
def test_timers_fire_on_their_schedule_and_not_with_timers_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVHOST_TEST_TICK", "*/2 * * * * *")
    ticks: list[func.TimerRequest] = []
    with DevHost(ticking_app(ticks), settings_file=None, host_file=None):
        time.sleep(5.2)
    assert 2 <= len(ticks) <= 3
    seconds = [datetime.fromisoformat(t.schedule_status["Next"]).second for t in ticks]
    assert all(second % 2 == 0 for second in seconds)  # the occurrences are the even seconds
    assert not any(t.past_due for t in ticks)
    quiet: list[func.TimerRequest] = []
    with DevHost(ticking_app(quiet), settings_file=None, host_file=None, timers=False):
        time.sleep(2.5)
    assert quiet == []


def test_run_on_startup_runs_the_timer_once_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVHOST_TEST_TICK", "0 30 1 1 1 *")  # once a year: only the startup run can come
    ticks: list[func.TimerRequest] = []
    with DevHost(ticking_app(ticks, on_startup=True), settings_file=None, host_file=None):
        deadline = time.monotonic() + 10
        while not ticks and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(ticks) == 1


def test_a_timer_whose_schedule_setting_is_missing_does_not_start(caplog: pytest.LogCaptureFixture) -> None:
    os.environ.pop("DEVHOST_TEST_TICK", None)
    ticks: list[func.TimerRequest] = []
    with caplog.at_level(logging.WARNING, "devhost"), DevHost(ticking_app(ticks), settings_file=None, host_file=None):
        pass
    assert "tick was unable to start: '%DEVHOST_TEST_TICK%' does not resolve to a value" in caplog.text


@pytest.mark.slow  # waits on purpose or runs the Kusto language service: CI, not test-fast
def test_cli_no_timers_is_honoured(tmp_path: Path) -> None:
    (tmp_path / "tickapp.py").write_text(
        "import azure.functions as func\n"
        "app = func.FunctionApp()\n"
        "@app.timer_trigger(schedule='*/1 * * * * *', arg_name='timer')\n"
        "def tick(timer: func.TimerRequest) -> None:\n"
        "    open('ticks.txt', 'a').write('tick\\n')\n"
    )

    def run(*flags: str) -> int:
        (tmp_path / "ticks.txt").unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
        command = [sys.executable, "-m", "tools.devhost", "--app", "tickapp:app", "--port", "0", *flags]
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)
        try:
            time.sleep(4.0)
        finally:
            process.terminate()
            process.wait(timeout=20)
        path = tmp_path / "ticks.txt"
        return len(path.read_text().splitlines()) if path.exists() else 0

    assert run() >= 1
    assert run("--no-timers") == 0


# --------------------------------------------------------------------------- queue triggers on Azurite


def queue_app(seen: list[func.QueueMessage]) -> func.FunctionApp:
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="message", queue_name="%DEVHOST_TEST_QUEUE%", connection="DevhostTestStorage")
    def consume(message: func.QueueMessage) -> None:
        seen.append(message)
        if message.get_body() == b"poison":
            raise ValueError("cannot take this one")

    return app


def test_queue_trigger_consumes_and_sets_poison_aside(
    azurite_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "devhost-" + uuid.uuid4().hex[:12]
    monkeypatch.setenv("DEVHOST_TEST_QUEUE", name)
    monkeypatch.setenv("DevhostTestStorage", azurite_server.storage_connection_string)
    host_file = tmp_path / "host.json"
    options = {"maxDequeueCount": 3, "visibilityTimeout": "00:00:00", "maxPollingInterval": "00:00:00.5"}
    host_file.write_text(json.dumps({"version": "2.0", "extensions": {"queues": options}}))
    sender = queue_with_string(azurite_server.storage_connection_string, name)
    raw = queue_with_string(azurite_server.storage_connection_string, name, encoded=False)
    poison = queue_with_string(azurite_server.storage_connection_string, f"{name}-poison", encoded=False)
    assert sender is not None and raw is not None and poison is not None
    sender.create_queue()
    for body in ("one", "poison", "two"):
        sender.send_message(body)
    raw.send_message("%%% not base64 %%%")
    seen: list[func.QueueMessage] = []
    with DevHost(queue_app(seen), settings_file=None, host_file=host_file, timers=False) as host:
        assert [listener.name for listener in host.listeners] == ["consume"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            parked = [m.content for m in poison.peek_messages(max_messages=32)] if _exists(poison) else []
            if len(parked) == 2 and sum(m.get_body() == b"poison" for m in seen) == 3:
                break
            time.sleep(0.2)
        # Sent in the meantime: the listener goes on after the poisoned message.
        sender.send_message("three")
        deadline = time.monotonic() + 30
        while b"three" not in [m.get_body() for m in seen] and time.monotonic() < deadline:
            time.sleep(0.1)
    bodies = [m.get_body() for m in seen]
    assert {b"one", b"two", b"three"} <= set(bodies) and bodies.count(b"one") == 1
    assert bodies.count(b"poison") == 3  # maxDequeueCount attempts, then set aside
    assert sorted(m.dequeue_count or 0 for m in seen if m.get_body() == b"poison") == [1, 2, 3]
    # Set aside as they were stored: the base64 text, and the text that was not base64.
    parked = sorted(m.content for m in poison.peek_messages(max_messages=32))
    assert parked == sorted([base64.b64encode(b"poison").decode(), "%%% not base64 %%%"])
    assert raw.peek_messages(max_messages=32) == []  # nothing left behind in the queue itself
    for client in (raw, poison):
        client.delete_queue()
    for client in (sender, raw, poison):
        client.close()


def _exists(queue: Any) -> bool:
    try:
        queue.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


def test_queue_options_from_host_json(tmp_path: Path) -> None:
    assert QueueOptions.from_host_file(ROOT / "host.json") == QueueOptions(16, 8, 5, 10.0, 2.0)
    assert QueueOptions.from_host_file(None) == QueueOptions(16, 8, 5, 0.0, 60.0)
