"""A loopback stand-in for the Log Analytics query API, answering from the embedded DuckDB store.

It implements what ``azure-monitor-query`` 2.0.0 sends for ``LogsQueryClient.query_workspace``:

    POST /v1/workspaces/{workspaceId}/query
    Authorization: Bearer <token>
    Prefer: wait=<server_timeout>[,include-statistics=true][,include-render=true]   (only when set)
    Content-Type: application/json
    {"query": "<KQL>", "timespan": "<start>/<end>" (ISO 8601) or null, "workspaces": [...] or null}

and answers like Log Analytics::

    200 {"tables": [{"name": "PrimaryResult", "columns": [{"name": .., "type": ..}], "rows": [[..]]}]}
    200 the same plus {"error": {...}}          (a partial result: the SDK returns LogsQueryPartialResult)
    4xx/5xx {"error": {"code": .., "message": .., "innererror": {..}}}

The query text is read back with :func:`shared.kql.query.from_log_analytics_text` (the ``let p_x =
<literal>;`` prelude becomes bound parameters, the ``column_ifexists`` views are dropped) and run
by :class:`~local.embedded.DuckDbSource`; any other text (``print Ok = 1``) runs as is. The
``timespan`` is recorded, not applied: our queries filter every table by time themselves.

Faults are scripted: ``standin.script(Throttle(times=2), Failure(status=500))`` answers the next
requests with them, in order, before answering normally again. Every request is recorded in
``standin.requests``.
"""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from local.embedded import DuckDbSource
from shared.kql.query import from_log_analytics_text
from shared.logs.source import LogQueryError, LogQueryRejected, QueryResult

#: The workspace id the stand-in serves unless told otherwise.
WORKSPACE_ID = "00000000-0000-4000-8000-00000000cafe"

_PATH = re.compile(r"^/v1/workspaces/(?P<workspace>[^/?#]+)/query/?$")
_DURATION = re.compile(r"^P(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)$")


# --------------------------------------------------------------------------- scripted faults


@dataclass(frozen=True)
class Throttle:
    """Answer 429 Too Many Requests, with ``Retry-After`` unless ``retry_after`` is None."""

    times: int = 1
    retry_after: float | None = 0
    message: str = "The request was throttled: too many requests for this workspace."


@dataclass(frozen=True)
class PartialError:
    """Run the query, then answer 200 with its tables AND an ``error`` object (a partial result).

    The SDK reports the message of the innermost ``innererror``; ``inner`` replaces the default
    innermost object (``{"code": "EngineError", "message": message}``), e.g. one without a message.
    """

    code: str = "PartialError"
    message: str = "Query result may be incomplete: the query exceeded the result set size limit."
    inner: dict[str, Any] | None = None
    times: int = 1


@dataclass(frozen=True)
class Failure:
    """Answer ``status`` with the Log Analytics error shape."""

    status: int
    code: str | None = None
    message: str | None = None
    innererror: dict[str, Any] | None = None
    retry_after: float | None = None
    times: int = 1


Fault = Throttle | PartialError | Failure

_DEFAULT_CODES = {
    400: "BadArgumentError",
    401: "AuthorizationRequiredError",
    403: "InsufficientAccessError",
    404: "WorkspaceNotFoundError",
    429: "ThrottledError",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailableError",
    504: "GatewayTimeout",
}


# --------------------------------------------------------------------------- recorded requests


@dataclass
class RecordedRequest:
    method: str
    path: str
    #: Header names lowercased.
    headers: dict[str, str]
    body: Any
    workspace_id: str | None = None
    status: int = 0

    @property
    def query(self) -> str | None:
        return self.body.get("query") if isinstance(self.body, dict) else None

    @property
    def timespan(self) -> str | None:
        return self.body.get("timespan") if isinstance(self.body, dict) else None

    @property
    def prefer(self) -> str | None:
        return self.headers.get("prefer")

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    def timespan_range(self) -> tuple[datetime, datetime] | None:
        return parse_timespan(self.timespan)


# --------------------------------------------------------------------------- conversions


def parse_timespan(text: str | None, *, now: datetime | None = None) -> tuple[datetime, datetime] | None:
    """An ISO 8601 interval as the SDK sends it: ``start/end``, ``start/duration`` or ``duration``."""
    if not text:
        return None
    now = now or datetime.now(UTC)
    if "/" in text:
        first, second = text.split("/", 1)
        start = _parse_instant(first)
        if second.startswith("P"):
            return start, start + _parse_duration(second)
        return start, _parse_instant(second)
    return now - _parse_duration(text), now


def _parse_instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    return timedelta(hours=float(match["h"] or 0), minutes=float(match["m"] or 0), seconds=float(match["s"] or 0))


def kusto_datetime(value: datetime) -> str:
    """A datetime as Log Analytics writes it: UTC, 7 fractional digits, ``Z``."""
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}0Z"


def kusto_timespan(value: timedelta) -> str:
    """A timespan as Kusto writes it: ``[-][d.]hh:mm:ss[.fffffff]``."""
    ticks = (value.days * 86_400 + value.seconds) * 10_000_000 + value.microseconds * 10
    sign = "-" if ticks < 0 else ""
    ticks = abs(ticks)
    seconds, fraction = divmod(ticks, 10_000_000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    text = f"{sign}{f'{days}.' if days else ''}{hour:02d}:{minute:02d}:{second:02d}"
    return text + (f".{fraction:07d}" if fraction else "")


def kusto_type(value: Any) -> str | None:
    """The Kusto column type of one Python value from DuckDB (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float | Decimal):
        return "real"
    if isinstance(value, datetime | date):
        return "datetime"
    if isinstance(value, timedelta):
        return "timespan"
    if isinstance(value, uuid.UUID):
        return "guid"
    if isinstance(value, dict | list | tuple):
        return "dynamic"
    return "string"


def json_value(value: Any, column_type: str) -> Any:
    """One cell as Log Analytics writes it in JSON."""
    if value is None:
        return None
    if column_type == "datetime":
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day, tzinfo=UTC)
        return kusto_datetime(value)
    if column_type == "timespan":
        return kusto_timespan(value)
    if column_type == "dynamic":
        # Log Analytics (API v1) serialises dynamic values as JSON text.
        return json.dumps(value, default=str, separators=(",", ":"))
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, int | float):
        return value
    return str(value)


def to_tables(result: QueryResult) -> list[dict[str, Any]]:
    """A query result as the ``tables`` of a Log Analytics response (column types from the values)."""
    types: list[str] = []
    for index, _ in enumerate(result.columns):
        found = next((t for row in result.rows if (t := kusto_type(row[index])) is not None), None)
        types.append(found or "string")
    return [
        {
            "name": "PrimaryResult",
            "columns": [{"name": name, "type": t} for name, t in zip(result.columns, types, strict=True)],
            "rows": [[json_value(value, t) for value, t in zip(row, types, strict=True)] for row in result.rows],
        }
    ]


def error_body(
    status: int,
    code: str | None,
    message: str | None,
    innererror: dict[str, Any] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": message or f"HTTP {status}",
        "code": code or _DEFAULT_CODES.get(status, "ServiceError"),
        "correlationId": str(uuid.uuid4()),
    }
    if innererror is not None:
        error["innererror"] = innererror
    return {"error": error}


# --------------------------------------------------------------------------- the server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = RecordedRequest("POST", self.path, headers, body)
        try:
            status, payload, extra = self.server.standin.answer(record)
        except Exception as exc:  # a bug in the stand-in itself: answer like a server error
            status, payload, extra = 500, error_body(500, None, f"stand-in failure: {exc!r}"), {}
        record.status = status
        self.server.standin.record(record)
        self._send(status, payload, extra)

    def do_GET(self) -> None:
        self._send(405, error_body(405, "MethodNotAllowed", "the stand-in serves POST only"), {})

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, standin: LogAnalyticsStandIn) -> None:
        self.standin = standin
        super().__init__(("127.0.0.1", 0), _Handler)


class LogAnalyticsStandIn:
    """The Log Analytics query API on ``http://127.0.0.1:<port>``, answering from ``source``.

    Use as a context manager. ``token``: the only bearer token accepted (any non-empty one if None).
    """

    def __init__(
        self, source: DuckDbSource, *, workspace_ids: Iterable[str] = (WORKSPACE_ID,), token: str | None = None
    ) -> None:
        self.source = source
        self.workspace_ids = frozenset(workspace_ids)
        self.token = token
        self.requests: list[RecordedRequest] = []
        self._script: list[list[Any]] = []  # [fault, remaining times]
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LogAnalyticsStandIn:
        if self._server is None:
            self._server = _Server(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="la-standin", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LogAnalyticsStandIn:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- scripting and records ----------------------------------------------------------------

    def script(self, *faults: Fault) -> None:
        """Answer the next requests with these faults (each ``times`` times), in order."""
        with self._lock:
            self._script.extend([fault, fault.times] for fault in faults)

    @property
    def pending(self) -> list[Fault]:
        with self._lock:
            return [entry[0] for entry in self._script]

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def queries(self) -> list[str]:
        with self._lock:
            return [request.query for request in self.requests if request.query is not None]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._script.clear()

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if not self._script:
                return None
            entry = self._script[0]
            entry[1] -= 1
            if entry[1] <= 0:
                self._script.pop(0)
            fault: Fault = entry[0]
            return fault

    # -- answering ----------------------------------------------------------------------------

    def answer(self, request: RecordedRequest) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON payload, extra headers) for one request."""
        match = _PATH.match(request.path.split("?", 1)[0])
        if not match:
            return 404, error_body(404, "PathNotFoundError", f"the requested path {request.path} does not exist"), {}
        request.workspace_id = match["workspace"]

        scheme, _, token = (request.authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or (self.token is not None and token != self.token):
            challenge = 'Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token"'
            return 401, error_body(401, None, "Valid authentication was not provided"), {"WWW-Authenticate": challenge}
        if request.workspace_id not in self.workspace_ids:
            return 404, error_body(404, None, f"The workspace could not be found: {request.workspace_id}"), {}

        fault = self._next_fault()
        if isinstance(fault, Throttle):
            headers = {} if fault.retry_after is None else {"Retry-After": _header_number(fault.retry_after)}
            return 429, error_body(429, None, fault.message), headers
        if isinstance(fault, Failure):
            headers = {} if fault.retry_after is None else {"Retry-After": _header_number(fault.retry_after)}
            return fault.status, error_body(fault.status, fault.code, fault.message, fault.innererror), headers

        body = request.body
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return (
                400,
                error_body(
                    400,
                    None,
                    "The request had some invalid properties",
                    {"code": "QueryMissing", "message": "the body has no query"},
                ),
                {},
            )
        try:
            timespan = parse_timespan(body.get("timespan"))
        except ValueError as exc:
            return (
                400,
                error_body(
                    400,
                    None,
                    "The request had some invalid properties",
                    {"code": "InvalidTimespan", "message": str(exc)},
                ),
                {},
            )

        status, payload = self._run(body["query"], timespan)
        if status == 200 and isinstance(fault, PartialError):
            inner = fault.inner if fault.inner is not None else {"code": "EngineError", "message": fault.message}
            payload["error"] = {"code": fault.code, "message": fault.message, "details": [inner], "innererror": inner}
        return status, payload, {}

    def _run(self, text: str, timespan: tuple[datetime, datetime] | None) -> tuple[int, dict[str, Any]]:
        now = datetime.now(UTC)
        try:
            query = from_log_analytics_text(text, timespan or (now - timedelta(days=1), now))
            result = self.source.run(query)
        except (ValueError, KeyError, LogQueryRejected) as exc:
            return 400, error_body(
                400,
                None,
                "The request had some invalid properties",
                {"code": "SyntaxError", "message": f"A recognition error occurred: {exc}"},
            )
        except LogQueryError as exc:
            return 400, error_body(
                400, None, "The request had some invalid properties", {"code": "SemanticError", "message": exc.detail}
            )
        return 200, {"tables": to_tables(result)}


def _header_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


__all__ = [
    "WORKSPACE_ID",
    "Failure",
    "Fault",
    "LogAnalyticsStandIn",
    "PartialError",
    "RecordedRequest",
    "Throttle",
    "kusto_datetime",
    "parse_timespan",
    "to_tables",
]
