"""The local Functions host (shared/host.py), driven over real HTTP on loopback with a toy app."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import azure.functions as func
import pytest

from shared.host import LocalHost, RouteTemplate, split_path

SETTING = "ACS_HOST_TEST_SETTING"
PRESET = "ACS_HOST_TEST_PRESET"


def make_app(ticks: list[bool]) -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    barrier = threading.Barrier(2, timeout=5)

    @app.route(route="items/{id:int}", methods=["GET"])
    def get_item(req: func.HttpRequest) -> func.HttpResponse:
        body = {
            "id": req.route_params["id"],
            "q": req.params.get("q"),
            "echo": req.headers.get("x-echo"),
            "url": req.url,
            "method": req.method,
            "setting": os.environ.get(SETTING),
            "preset": os.environ.get(PRESET),
        }
        resp = func.HttpResponse(json.dumps(body), mimetype="application/json", headers={"X-Custom": "yes"})
        resp.headers.add("Set-Cookie", "a=1; Path=/")
        resp.headers.add("Set-Cookie", "b=2; Path=/")
        return resp

    @app.route(route="items", methods=[func.HttpMethod.POST])
    def create_item(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(
            req.get_body(),
            status_code=201,
            mimetype="application/octet-stream",
            headers={"Location": f"{req.url}/7"},
        )

    @app.route(route="things/{kind}/detail", methods=["GET"])
    def thing_by_kind(req: func.HttpRequest) -> str:
        return f"kind={req.route_params['kind']}"

    @app.route(route="things/special/detail", methods=["GET"])
    def special_thing(req: func.HttpRequest) -> str:
        return "special"

    @app.route(route="boom")
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("secret internals")

    @app.route(route="hello/{name:alpha}", methods=["GET"])
    async def hello(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        await asyncio.sleep(0)
        body = {"hello": req.route_params["name"], "function": context.function_name}
        return func.HttpResponse(json.dumps(body), mimetype="application/json")

    @app.route(route="rendezvous", methods=["GET"])
    def rendezvous(req: func.HttpRequest) -> str:
        barrier.wait()  # only returns once two requests are in flight at the same time
        return "met"

    @app.timer_trigger(schedule="0 30 1 * * *", arg_name="timer", run_on_startup=False)
    def nightly(timer: func.TimerRequest) -> None:
        ticks.append(timer.past_due)

    @app.timer_trigger(schedule="0 0 * * * *", arg_name="timer", run_on_startup=False)
    def broken_timer(timer: func.TimerRequest) -> None:
        raise ValueError("timer failed")

    bp = func.Blueprint()  # type: ignore[no-untyped-call]

    @bp.route(route="bp/ping", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def bp_ping(req: func.HttpRequest) -> str:
        return "pong"

    app.register_functions(bp)
    return app


Reply = tuple[int, Message, bytes]


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


@pytest.fixture
def ticks() -> list[bool]:
    return []


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {SETTING: "from-file", PRESET: "from-file"}}))
    return path


@pytest.fixture
def host(
    ticks: list[bool], settings_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalHost]:
    monkeypatch.delenv(SETTING, raising=False)
    monkeypatch.setenv(PRESET, "from-env")
    with LocalHost(make_app(ticks), settings_file=settings_file, host_file=tmp_path / "missing-host.json") as h:
        yield h


def test_get_with_route_param_query_header_settings_and_absolute_url(host: LocalHost) -> None:
    status, headers, body = call(f"{host.base_url}/api/items/42?q=abc&code=ignored", headers={"X-Echo": "hi"})
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Custom"] == "yes"
    assert headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    data = json.loads(body)
    assert data["id"] == "42" and data["q"] == "abc" and data["echo"] == "hi" and data["method"] == "GET"
    assert data["url"] == f"{host.base_url}/api/items/42?q=abc&code=ignored"
    assert data["setting"] == "from-file"  # local.settings.json Values applied...
    assert data["preset"] == "from-env"  # ...without overriding the environment


def test_function_key_header_is_accepted_and_ignored(host: LocalHost) -> None:
    assert call(f"{host.base_url}/api/items/1", headers={"x-functions-key": "nope"})[0] == 200


def test_post_echoes_body_with_absolute_location(host: LocalHost) -> None:
    payload = b"\x00binary\xffpayload"
    status, headers, body = call(f"{host.base_url}/api/items", "POST", payload)
    assert (status, body) == (201, payload)
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Location"] == f"{host.base_url}/api/items/7"


def test_literal_segment_beats_parameter(host: LocalHost) -> None:
    assert call(f"{host.base_url}/api/things/special/detail")[2] == b"special"
    status, headers, body = call(f"{host.base_url}/api/things/other/detail")
    assert (status, body) == (200, b"kind=other")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


def test_unmatched_path_and_failed_constraint_are_404(host: LocalHost) -> None:
    assert call(f"{host.base_url}/api/nope")[0] == 404
    assert call(f"{host.base_url}/api/items/abc")[0] == 404  # {id:int}
    assert call(f"{host.base_url}/items/1")[0] == 404  # no route prefix


def test_wrong_method_is_405_with_allow(host: LocalHost) -> None:
    status, headers, body = call(f"{host.base_url}/api/items/1", "DELETE")
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"
    assert json.loads(body)["status"] == 405
    status, headers, _ = call(f"{host.base_url}/api/items", "GET")
    assert (status, headers["Allow"]) == (405, "POST")


def test_head_is_get_without_body(host: LocalHost) -> None:
    status, headers, body = call(f"{host.base_url}/api/items/5", "HEAD")
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) > 0


def test_exception_is_500_problem_json_and_logged(host: LocalHost, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="shared.host"):
        status, headers, body = call(f"{host.base_url}/api/boom", "PUT")
    assert status == 500
    assert headers["Content-Type"] == "application/problem+json"
    assert json.loads(body) == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "Function boom failed",
    }
    assert b"secret" not in body
    assert "RuntimeError: secret internals" in caplog.text


def test_async_function_with_context(host: LocalHost) -> None:
    status, _, body = call(f"{host.base_url}/api/hello/World")
    assert status == 200
    assert json.loads(body) == {"hello": "World", "function": "hello"}
    assert call(f"{host.base_url}/api/hello/W0rld")[0] == 404  # {name:alpha}


def test_blueprint_function_is_served(host: LocalHost) -> None:
    assert call(f"{host.base_url}/api/bp/ping")[2] == b"pong"


def test_requests_are_served_concurrently(host: LocalHost) -> None:
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(call(f"{host.base_url}/api/rendezvous")[2])) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [b"met", b"met"]


def test_admin_runs_timer_function(host: LocalHost, ticks: list[bool]) -> None:
    status, _, body = call(
        f"{host.base_url}/admin/functions/nightly", "POST", b"{}", {"Content-Type": "application/json"}
    )
    assert (status, body) == (202, b"")
    assert ticks == [False]
    assert call(f"{host.base_url}/admin/functions/nightly", "POST")[0] == 202  # body is optional
    assert ticks == [False, False]


def test_admin_unknown_failing_and_wrong_method(host: LocalHost) -> None:
    assert call(f"{host.base_url}/admin/functions/nosuch", "POST", b"{}")[0] == 404
    status, _, body = call(f"{host.base_url}/admin/functions/broken_timer", "POST", b'{"input": ""}')
    assert status == 500
    assert json.loads(body)["detail"] == "Function broken_timer failed"
    status, headers, _ = call(f"{host.base_url}/admin/functions/nightly", "GET")
    assert (status, headers["Allow"]) == (405, "POST")


def test_settings_removed_on_stop(ticks: list[bool], settings_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SETTING, raising=False)
    with LocalHost(make_app(ticks), settings_file=settings_file, host_file=None):
        assert os.environ[SETTING] == "from-file"
    assert SETTING not in os.environ


def test_host_json_route_prefix(ticks: list[bool], tmp_path: Path) -> None:
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps({"version": "2.0", "extensions": {"http": {"routePrefix": "v1"}}}))
    with LocalHost(make_app(ticks), settings_file=None, host_file=host_json) as h:
        assert h.route_prefix == "v1"
        assert call(f"{h.base_url}/v1/items/3")[0] == 200
        assert call(f"{h.base_url}/api/items/3")[0] == 404
    with LocalHost(make_app(ticks), settings_file=None, host_file=host_json, route_prefix="") as h:
        assert call(f"{h.base_url}/items/3")[0] == 200


def test_request_size_limit(ticks: list[bool]) -> None:
    with LocalHost(make_app(ticks), settings_file=None, host_file=None, max_body_bytes=16) as h:
        assert call(f"{h.base_url}/api/items", "POST", b"x" * 16)[0] == 201
        assert call(f"{h.base_url}/api/items", "POST", b"x" * 17)[0] == 413


def test_unsupported_parameter_is_rejected_at_startup() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="x")
    @app.blob_input(arg_name="blob", path="c/b", connection="Storage")
    def needs_blob(req: func.HttpRequest, blob: str) -> str:
        return blob

    with pytest.raises(ValueError, match=r"needs_blob.*'blob'"):
        LocalHost(app, settings_file=None, host_file=None)


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("api/messages/{messageId}", "/api/messages/abc%20d", {"messageId": "abc d"}),
        ("api/messages/{messageId}", "/API/Messages/x/", {"messageId": "x"}),
        ("api/messages/{messageId}", "/api/messages", None),
        ("api/messages/{messageId}", "/api/messages/x/y", None),
        ("api/summaries/daily/{date:datetime}", "/api/summaries/daily/2024-05-01", {"date": "2024-05-01"}),
        ("api/summaries/daily/{date:datetime}", "/api/summaries/daily/yesterday", None),
        ("api/stats/{kind?}", "/api/stats", {}),
        ("api/stats/{kind?}", "/api/stats/daily", {"kind": "daily"}),
        ("api/stats/{kind=all}", "/api/stats", {"kind": "all"}),
        ("api/files/{*path}", "/api/files/a/b/c.txt", {"path": "a/b/c.txt"}),
        ("api/files/{name}.{ext}", "/api/files/a.b.txt", {"name": "a.b", "ext": "txt"}),
        ("api/x/{id:int:min(10)}", "/api/x/9", None),
        ("api/x/{id:int:range(1,10)}", "/api/x/10", {"id": "10"}),
        ("api/x/{code:regex(^[a-z]{{3}}$)}", "/api/x/abc", {"code": "abc"}),
        ("api/x/{code:regex(^[a-z]{{3}}$)}", "/api/x/abcd", None),
        ("api/x/{id:guid}", "/api/x/not-a-guid", None),
    ],
)
def test_route_template_matching(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert RouteTemplate(template).match(split_path(path)) == expected


def test_route_precedence_order() -> None:
    literal, constrained, plain, catch_all = (
        RouteTemplate(t) for t in ("a/b/c", "a/{x:int}/c", "a/{x}/c", "a/{*rest}")
    )
    assert literal.precedence < constrained.precedence < plain.precedence < catch_all.precedence


@pytest.mark.parametrize("template", ["a/{x", "a/{x:nosuch}", "a/{x?}/b", "a/{*x}/b", "a//b"])
def test_bad_route_templates_are_rejected(template: str) -> None:
    with pytest.raises(ValueError):
        RouteTemplate(template)
