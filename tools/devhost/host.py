"""A small stand-in for the Azure Functions host, for local runs and tests (Core Tools cannot be installed here).

It serves the functions a ``func.FunctionApp`` registers at the URLs the real host uses, and only what this
app needs:

* HTTP functions at ``/<routePrefix>/<route>`` (prefix from ``host.json``, default ``api``), routes with plain
  ``{name}`` segments; a real ``func.HttpRequest`` goes to the function's own code;
* timers on their NCRONTAB schedules and queue triggers fed from Azurite's queue service
  (:mod:`tools.devhost.triggers`; ``timers=False`` / ``--no-timers`` turns the timers off, as for tests);
* ``POST /admin/functions/<name>`` runs a timer function now (202), as the admin API does;
* ``POST /runtime/webhooks/eventgrid?functionName=<name>`` delivers Event Grid schema events to an Event Grid
  trigger function one event per invocation, the invocations of a delivery running concurrently on a thread
  pool the size of the Python worker's (``PYTHON_THREADPOOL_THREAD_COUNT``, else min(32, cores + 4)),
  answering the ``SubscriptionValidation`` handshake (200 with ``validationResponse``), ``Notification``
  (202; 500 if an invocation failed, so Event Grid retries) and ``SubscriptionDeletion`` (202), as the Event
  Grid extension does;
* keys: on a loopback address no key is needed (like Core Tools); any other bind address requires keys
  (``--function-key``, ``--master-key``), which are then enforced as Azure does: function-level routes take
  either key (``x-functions-key`` header or ``code``), admin routes and the webhook the master key only;
* errors as problem+json: unknown route 404, wrong method 405 with ``Allow`` (any method, TRACE included),
  over-long URL 414, body too large 413; one log line per request (method, route template, status, ms: never
  the URL, which may hold an address or a key).

Not shipped: ``tools/`` is in ``.funcignore``; nothing in ``shared/`` imports it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func
from azure.functions.timer import TimerRequest

from shared.settings import load_local_settings
from tools.devhost.schedule import Schedule, ScheduleError
from tools.devhost.triggers import QueueListener, QueueOptions, TimerRunner

log = logging.getLogger("devhost")

MAX_URL_LENGTH = 8192
MAX_BODY_BYTES = 10 * 1024 * 1024
#: Connections the listening socket queues before accept: a burst of clients all get an answer.
LISTEN_BACKLOG = 1024
SUPPORTED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
Reply = tuple[int, dict[str, str], bytes]


class HostConfigError(ValueError):
    """The host cannot start as asked (e.g. a public bind address without keys)."""


def read_route_prefix(host_file: str | Path | None) -> str:
    """``extensions.http.routePrefix`` of a ``host.json`` ("api" when the file or key is absent)."""
    if host_file is None or not Path(host_file).is_file():
        return "api"
    data = json.loads(Path(host_file).read_text(encoding="utf-8-sig"))
    prefix = ((data.get("extensions") or {}).get("http") or {}).get("routePrefix")
    return "api" if prefix is None else str(prefix).strip("/")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def problem(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Reply:
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    return status, {"Content-Type": "application/problem+json", **(headers or {})}, json.dumps(body).encode()


@dataclass(frozen=True)
class Keys:
    function: str | None = None
    master: str | None = None

    def allows(self, auth_level: str, given: str | None) -> bool:
        if auth_level == "anonymous":
            return True
        accepted = {self.master} if auth_level == "admin" else {self.function, self.master}
        return given is not None and given in accepted - {None}


@dataclass(frozen=True)
class Function:
    name: str
    trigger: str  # httpTrigger | timerTrigger | eventGridTrigger | queueTrigger
    argument: str
    code: Callable[..., Any]
    route: tuple[str, ...] = ()
    methods: frozenset[str] = frozenset()
    auth_level: str = "function"
    #: The trigger binding as the app declares it (schedule, queueName, connection, ...).
    binding: Mapping[str, Any] = field(default_factory=dict)

    @property
    def template(self) -> str:
        return "/".join(self.route)

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.route):
            return None
        values: dict[str, str] = {}
        for pattern, segment in zip(self.route, segments, strict=True):
            if pattern.startswith("{") and pattern.endswith("}"):
                if not segment:
                    return None
                values[pattern[1:-1]] = segment
            elif pattern.lower() != segment.lower():
                return None
        return values

    def literal_count(self) -> int:
        return sum(1 for part in self.route if not part.startswith("{"))


def discover(app: func.FunctionApp, route_prefix: str) -> list[Function]:
    """The app's functions as the host indexes them (bindings read from the app, not guessed)."""
    found = []
    for fn in app.get_functions():
        bindings = [json.loads(raw) for raw in fn.get_raw_bindings()]
        trigger = next(b for b in bindings if str(b.get("type", "")).endswith("Trigger"))
        name, kind = str(fn.get_function_name()), str(trigger["type"])
        if kind != "httpTrigger":
            found.append(Function(name, kind, trigger["name"], fn.get_user_function(), binding=trigger))
            continue
        route = [part for part in f"{route_prefix}/{trigger.get('route') or name}".split("/") if part]
        methods = frozenset(str(m).upper() for m in trigger.get("methods") or SUPPORTED_METHODS)
        level = str(trigger.get("authLevel", "function")).lower()
        found.append(Function(name, kind, trigger["name"], fn.get_user_function(), tuple(route), methods, level))
    return found


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG
    dev_host: DevHost


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # every method reaches the host, which answers 405 for the unsupported ones
            return self._serve
        raise AttributeError(name)

    def _serve(self) -> None:
        started = time.perf_counter()
        try:
            status, headers, body, template = self.server.dev_host.handle(self)
        except Exception:  # a bug of the host itself, never a function's failure
            log.exception("dev host failed on %s", self.command)
            (status, headers, body), template = problem(500, "dev host error"), "-"
            self.close_connection = True
        # Logged before the answer goes out, so a client that has its answer can rely on the line being written.
        log.info("%s %s %d %dms", self.command, template, status, round((time.perf_counter() - started) * 1000))
        self._send(status, headers, body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Framing errors found before dispatch (e.g. a request line over 64 KiB) as problem+json too."""
        self.close_connection = True
        self._send(*problem(code, message or HTTPStatus(code).phrase))

    def _send(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        if status >= 200 and status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def read_body(self) -> bytes | None:
        """The body, or None when it is larger than the host accepts."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def log_message(self, format: str, *args: Any) -> None:  # the one line per request is logged above
        pass


def worker_threads() -> int:
    """The Python worker's thread pool size for synchronous functions."""
    configured = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return min(32, (os.cpu_count() or 1) + 4)


class DevHost:
    """``with DevHost(app) as host: urlopen(host.base_url + "/api/health")``; ``port=0`` picks a free port."""

    def __init__(
        self,
        app: func.FunctionApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        keys: Keys | None = None,
        settings_file: str | Path | None = "local.settings.json",
        host_file: str | Path | None = "host.json",
        timers: bool = True,
        queues: bool = True,
    ) -> None:
        keys = keys or Keys()
        if not is_loopback(host) and not (keys.function and keys.master):
            raise HostConfigError(
                f"binding {host} exposes every route beyond this machine: give --function-key and --master-key"
            )
        self.host, self.port, self.keys = host, port, keys
        self.enforce_keys = bool(keys.function or keys.master)
        self.settings_file = settings_file
        self.run_timers, self.run_queues = timers, queues
        self.queue_options = QueueOptions.from_host_file(host_file)
        self.timers: list[TimerRunner] = []
        self.listeners: list[QueueListener] = []
        self.functions = discover(app, read_route_prefix(host_file))
        # Literal segments win over parameters (messages/{id}/poll before messages/{id}), as in the real host.
        self.http = sorted(
            (f for f in self.functions if f.trigger == "httpTrigger"), key=lambda f: (-f.literal_count(), f.name)
        )
        self._server: _Server | None = None
        self._applied: dict[str, str] = {}
        self._invokers: ThreadPoolExecutor | None = None

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104 (a URL, not a bind)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> Self:
        import threading

        self._applied = load_local_settings(self.settings_file)
        self._invokers = ThreadPoolExecutor(worker_threads(), thread_name_prefix="devhost-invocation")
        self._server = _Server((self.host, self.port), _Handler)
        self._server.dev_host = self
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="devhost", daemon=True).start()
        self._start_triggers()
        return self

    def _start_triggers(self) -> None:
        """Timers and queue listeners; one that cannot start is logged and left out, as the host does."""
        assert self._invokers is not None
        for function in self.functions:
            try:
                if function.trigger == "timerTrigger" and self.run_timers:
                    self.timers.append(self._timer(function))
                elif function.trigger == "queueTrigger" and self.run_queues:
                    listener = self._listener(function)
                    if listener is not None:
                        self.listeners.append(listener)
            except (ScheduleError, KeyError) as exc:
                log.warning("the listener for function %s was unable to start: %s", function.name, exc)
        for runner in self.timers:
            runner.start()
        for listener in self.listeners:
            listener.start()

    def _timer(self, function: Function) -> TimerRunner:
        schedule = Schedule.parse(resolve(str(function.binding["schedule"])))

        def invoke(timer: TimerRequest) -> None:
            function.code(**{function.argument: timer})

        return TimerRunner(function.name, schedule, invoke, on_startup=bool(function.binding.get("runOnStartup")))

    def _listener(self, function: Function) -> QueueListener | None:
        from shared.queues import connect_queue

        name = resolve(str(function.binding["queueName"])).lower()
        prefix = str(function.binding.get("connection") or "AzureWebJobsStorage")
        queue = connect_queue(prefix, name, environ=os.environ, encoded=False)
        poison = connect_queue(prefix, f"{name}-poison", environ=os.environ, encoded=False)
        if queue is None or poison is None:
            log.warning(
                "the listener for function %s was unable to start: %s names no queue service", function.name, prefix
            )
            return None

        def invoke(message: func.QueueMessage) -> None:
            function.code(**{function.argument: message})

        assert self._invokers is not None
        return QueueListener(function.name, queue, poison, invoke, self.queue_options, self._invokers)

    def stop(self) -> None:
        for runner in self.timers:
            runner.stop()
        for listener in self.listeners:
            listener.stop()
        self.timers, self.listeners = [], []
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._invokers is not None:
            self._invokers.shutdown(wait=False)
            self._invokers = None
        for key, value in self._applied.items():
            if os.environ.get(key) == value:
                del os.environ[key]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def describe(self) -> str:
        lines = ["Functions:", ""]
        for f in self.functions:
            if f.trigger == "httpTrigger":
                lines.append(f"\t{f.name}: [{','.join(sorted(f.methods))}] {self.base_url}/{f.template}")
            elif f.trigger == "eventGridTrigger":
                lines.append(
                    f"\t{f.name}: eventGridTrigger ({self.base_url}/runtime/webhooks/eventgrid?functionName={f.name})"
                )
            elif f.trigger == "queueTrigger":
                lines.append(f"\t{f.name}: queueTrigger ({f.binding.get('queueName')})")
            else:
                lines.append(f"\t{f.name}: {f.trigger} (POST {self.base_url}/admin/functions/{f.name})")
        return "\n".join(lines)

    # -- requests ----------------------------------------------------------------------------------

    def handle(self, request: _Handler) -> tuple[int, dict[str, str], bytes, str]:
        method = request.command.upper()
        if len(request.path) > MAX_URL_LENGTH:
            return (*problem(414, f"the URL is longer than {MAX_URL_LENGTH} characters"), "-")
        if method not in SUPPORTED_METHODS:
            return (*problem(405, f"{method} is not supported", {"Allow": ", ".join(SUPPORTED_METHODS)}), "-")
        parts = urlsplit(request.path)
        segments = [unquote(part) for part in parts.path.split("/") if part]
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body = request.read_body()
        if body is None:
            request.close_connection = True
            return (*problem(413, f"the body is larger than {MAX_BODY_BYTES} bytes"), "-")
        given_key = request.headers.get("x-functions-key") or query.get("code")
        lowered = [segment.lower() for segment in segments]
        if lowered[:2] == ["admin", "functions"] and len(segments) == 3:
            return (*self._admin(method, segments[2], given_key), "admin/functions/{name}")
        if lowered == ["runtime", "webhooks", "eventgrid"]:
            reply = self._eventgrid(method, query.get("functionName", ""), request, body, given_key)
            return (*reply, "runtime/webhooks/eventgrid")
        return self._http(method, segments, query, request, body, given_key)

    def _authorised(self, level: str, given: str | None) -> bool:
        return not self.enforce_keys or self.keys.allows(level, given)

    def _http(
        self, method: str, segments: list[str], query: dict[str, str], request: _Handler, body: bytes, key: str | None
    ) -> tuple[int, dict[str, str], bytes, str]:
        matches = [(f, values) for f in self.http if (values := f.match(segments)) is not None]
        for function, values in matches:
            if method in function.methods or (method == "HEAD" and "GET" in function.methods):
                if not self._authorised(function.auth_level, key):
                    return (*problem(401, "a valid function key is required"), function.template)
                return (*self._invoke_http(function, method, values, query, request, body), function.template)
        if matches:
            allowed = sorted(set().union(*(f.methods for f, _ in matches)))
            return (
                *problem(405, f"{method} is not allowed here", {"Allow": ", ".join(allowed)}),
                matches[0][0].template,
            )
        return (*problem(404, "no function serves this URL"), "-")

    def _invoke_http(
        self,
        function: Function,
        method: str,
        values: dict[str, str],
        query: dict[str, str],
        request: _Handler,
        body: bytes,
    ) -> Reply:
        url = f"http://{request.headers.get('Host') or self.base_url[7:]}{request.path}"
        headers = {key.lower(): value for key, value in request.headers.items()}
        http_request = func.HttpRequest(method, url, headers=headers, params=query, route_params=values, body=body)
        try:
            result = function.code(**{function.argument: http_request})
        except Exception:
            log.exception("function %s failed", function.name)
            return problem(500, f"function {function.name} failed")
        if not isinstance(result, func.HttpResponse):
            return problem(500, f"function {function.name} returned {type(result).__name__}")
        reply_headers = {str(k): str(v) for k, v in result.headers.items()}
        if not any(k.lower() == "content-type" for k in reply_headers):
            reply_headers["Content-Type"] = f"{result.mimetype}; charset={result.charset}"
        return int(result.status_code), reply_headers, result.get_body()

    def _named(self, name: str, trigger: str) -> Function | None:
        return next((f for f in self.functions if f.name.lower() == name.lower() and f.trigger == trigger), None)

    def _admin(self, method: str, name: str, key: str | None) -> Reply:
        if method != "POST":
            return problem(405, "use POST to run a function", {"Allow": "POST"})
        if not self._authorised("admin", key):
            return problem(401, "the master key is required")
        function = self._named(name, "timerTrigger")
        if function is None:
            return problem(404, f"no timer function named {name}")
        timer = TimerRequest(past_due=False, schedule_status={}, schedule={"AdjustForDST": True})
        try:
            function.code(**{function.argument: timer})
        except Exception:
            log.exception("function %s failed", function.name)
            return problem(500, f"function {function.name} failed")
        return 202, {}, b""

    def _eventgrid(self, method: str, name: str, request: _Handler, body: bytes, key: str | None) -> Reply:
        if method != "POST":
            return problem(405, "Event Grid delivers with POST", {"Allow": "POST"})
        if not self._authorised("admin", key):
            return problem(401, "the eventgrid_extension (or master) key is required")
        function = self._named(name, "eventGridTrigger")
        if function is None:
            return problem(404, f"no Event Grid function named {name!r}")
        from tools.devhost.webhook import Deletion, Validation, WebhookRejected, read_webhook

        try:
            delivery = read_webhook(body, dict(request.headers.items()))
        except WebhookRejected as exc:
            return problem(exc.status, exc.detail)
        if isinstance(delivery, Validation):
            return 200, {"Content-Type": "application/json"}, json.dumps(delivery.reply()).encode()
        if isinstance(delivery, Deletion):
            return 202, {}, b""
        return self._deliver(function, delivery.events)

    def _deliver(self, function: Function, events: list[Any]) -> Reply:
        """One invocation per event, run concurrently on the worker's thread pool as the host does."""
        assert self._invokers is not None, "the host is not started"
        outcomes = list(self._invokers.map(lambda item: self._invoke_event(function, item), events))
        failed = outcomes.count(False)
        if failed:
            return problem(500, f"{failed} of {len(events)} event(s) failed; Event Grid will retry the batch")
        return 202, {}, b""

    def _invoke_event(self, function: Function, item: Any) -> bool:
        if not isinstance(item, dict):
            return False
        event = func.EventGridEvent(
            id=str(item.get("id") or uuid.uuid4()),
            data=item.get("data") or {},
            topic=str(item.get("topic") or ""),
            subject=str(item.get("subject") or ""),
            event_type=str(item.get("eventType") or ""),
            event_time=_event_time(item.get("eventTime")),
            data_version=str(item.get("dataVersion") or ""),
        )
        try:
            function.code(**{function.argument: event})
        except Exception as exc:  # the exception's type only: its message may quote an address
            log.warning("function %s failed on an event: %s", function.name, type(exc).__name__)
            return False
        return True


class UnresolvedSetting(KeyError):
    """A binding's ``%NAME%`` names an app setting that is not set (Core Tools: "does not resolve to a value")."""

    def __str__(self) -> str:
        return f"'%{self.args[0]}%' does not resolve to a value (set the app setting {self.args[0]})"


def resolve(value: str) -> str:
    """A binding value with ``%NAME%`` replaced by the app setting NAME (:class:`UnresolvedSetting` when unset)."""
    parts = value.split("%")
    if len(parts) < 3:
        return value
    missing = [part for index, part in enumerate(parts) if index % 2 and part not in os.environ]
    if missing:
        raise UnresolvedSetting(missing[0])
    return "".join(os.environ[part] if index % 2 else part for index, part in enumerate(parts))


def _event_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return datetime.now(UTC)
