"""A thin local stand-in for Azure Functions Core Tools' HTTP host (``func start``).

It serves the HTTP functions a ``func.FunctionApp`` registers (Python v2 programming model) on
a stdlib ``ThreadingHTTPServer``, the way Core Tools would:

* ``host.json`` ``extensions.http.routePrefix`` (default ``api``) and ``local.settings.json``
  ``Values`` (copied into ``os.environ`` without overriding variables already set);
* route templates with ASP.NET-style parameters (``{id}``, ``{id:int}``, ``{x?}``, ``{x=default}``,
  ``{*rest}``, ``{name}.{ext}``), literal segments beating parameters; 404 / 405 with ``Allow``;
* a real ``func.HttpRequest`` (absolute URL from the client's ``Host`` header) given to the
  function's own code, sync or async (async code runs on one event loop, as in the worker);
* function keys are not enforced (``code`` / ``x-functions-key`` are accepted and ignored);
* ``POST /admin/functions/{name}`` runs a non-HTTP function (e.g. a timer) and answers 202.

``python -m shared.host`` loads ``local.settings.json`` first, then imports ``function_app:app``
and serves it, like ``func start``.  No business logic lives here.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import itertools
import json
import logging
import math
import os
import re
import socket
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func
from azure.functions.timer import TimerRequest

__all__ = ["LocalHost", "RouteTemplate", "load_settings", "main", "read_route_prefix", "serve"]

log = logging.getLogger("shared.host")  # also when run as __main__

ALL_METHODS: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
_Response = tuple[int, list[tuple[str, str]], bytes]
_REASON = "This function was programmatically called via the host APIs."


# --------------------------------------------------------------------------- settings / host.json


def _setting_str(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def load_settings(path: str | Path | None) -> dict[str, str]:
    """Copy ``Values`` of a ``local.settings.json`` into ``os.environ`` (existing variables win).

    Returns the variables actually set.  A missing file is not an error (Core Tools warns only).
    """
    if path is None or not Path(path).is_file():
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    if data.get("IsEncrypted"):
        raise ValueError(f"{path} is encrypted; decrypt it (func settings decrypt) to run locally")
    applied: dict[str, str] = {}
    for key, value in (data.get("Values") or {}).items():
        if key not in os.environ:
            applied[key] = os.environ[key] = _setting_str(value)
    return applied


def _ci_get(obj: object, key: str) -> object:
    """Case-insensitive dict lookup (the .NET configuration behind host.json ignores case)."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if isinstance(k, str) and k.lower() == key.lower():
                return v
    return None


def read_route_prefix(host_file: str | Path | None) -> str:
    """``extensions.http.routePrefix`` of a ``host.json`` ("api" if the file or key is absent)."""
    if host_file is None or not Path(host_file).is_file():
        return "api"
    data = json.loads(Path(host_file).read_text(encoding="utf-8-sig"))
    prefix = _ci_get(_ci_get(_ci_get(data, "extensions"), "http"), "routePrefix")
    return "api" if prefix is None else str(prefix).strip("/")


# --------------------------------------------------------------------------- route templates

_Check = Callable[[str], bool]
_INT_RE = re.compile(r"-?\d+")


def _is_int(bits: int) -> _Check:
    return lambda v: _INT_RE.fullmatch(v) is not None and -(2 ** (bits - 1)) <= int(v) < 2 ** (bits - 1)


def _is_float(v: str) -> bool:
    try:
        return math.isfinite(float(v))
    except ValueError:
        return False


def _is_guid(v: str) -> bool:
    try:
        uuid.UUID(v)
    except ValueError:
        return False
    return True


def _is_datetime(v: str) -> bool:
    try:
        datetime.fromisoformat(v)
    except ValueError:
        return False
    return True


_SIMPLE_CONSTRAINTS: dict[str, _Check] = {
    "int": _is_int(32),
    "long": _is_int(64),
    "bool": lambda v: v.lower() in ("true", "false"),
    "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
    "guid": _is_guid,
    "decimal": _is_float,
    "double": _is_float,
    "float": _is_float,
    "datetime": _is_datetime,
}


def _arg_constraint(name: str, arg: str) -> _Check:
    if name == "regex":
        pattern = re.compile(arg, re.IGNORECASE)  # ASP.NET: IsMatch, i.e. unanchored
        return lambda v: pattern.search(v) is not None
    nums = [int(a) for a in arg.split(",")]
    if name == "minlength" and len(nums) == 1:
        return lambda v: len(v) >= nums[0]
    if name == "maxlength" and len(nums) == 1:
        return lambda v: len(v) <= nums[0]
    if name == "length" and len(nums) in (1, 2):
        lo, hi = nums[0], nums[-1]
        return lambda v: lo <= len(v) <= hi
    bounds = {"min": (nums[0], None), "max": (None, nums[0]), "range": (nums[0], nums[-1])}
    if name in bounds and len(nums) == (2 if name == "range" else 1):
        lo_b, hi_b = bounds[name]
        long_ok = _is_int(64)
        return lambda v: long_ok(v) and (lo_b is None or int(v) >= lo_b) and (hi_b is None or int(v) <= hi_b)
    raise ValueError(f"bad route constraint {name}({arg})")


@dataclass(frozen=True)
class _Param:
    name: str
    checks: tuple[_Check, ...] = ()
    optional: bool = False
    default: str | None = None
    catch_all: bool = False

    def accepts(self, value: str) -> bool:
        return all(check(value) for check in self.checks)


def _parse_param(token: str, template: str) -> _Param:
    m = re.match(r"(\*{1,2})?([A-Za-z_][\w-]*)", token)
    if m is None:
        raise ValueError(f"bad route parameter {{{token}}} in {template!r}")
    catch_all, name, rest = bool(m.group(1)), m.group(2), token[m.end() :]
    checks: list[_Check] = []
    optional, default = False, None
    while rest:
        if rest.startswith(":"):
            cm = re.match(r":([A-Za-z]+)", rest)
            if cm is None:
                raise ValueError(f"bad route constraint in {{{token}}} of {template!r}")
            cname, rest = cm.group(1).lower(), rest[cm.end() :]
            if rest.startswith("("):
                depth, i = 0, 0
                while i < len(rest):
                    depth += {"(": 1, ")": -1}.get(rest[i], 0)
                    i += 2 if rest[i] == "\\" else 1
                    if depth == 0:
                        break
                if depth:
                    raise ValueError(f"unbalanced parentheses in {{{token}}} of {template!r}")
                checks.append(_arg_constraint(cname, rest[1 : i - 1]))
                rest = rest[i:]
            elif cname in _SIMPLE_CONSTRAINTS:
                checks.append(_SIMPLE_CONSTRAINTS[cname])
            else:
                raise ValueError(f"unsupported route constraint {cname!r} in {template!r}")
        elif rest == "?":
            optional, rest = True, ""
        elif rest.startswith("="):
            default, rest = rest[1:], ""
        else:
            raise ValueError(f"bad route parameter {{{token}}} in {template!r}")
    return _Param(name, tuple(checks), optional, default, catch_all)


@dataclass(frozen=True)
class _Segment:
    literal: str | None = None  # a plain literal segment
    param: _Param | None = None  # a segment that is exactly one parameter
    regex: re.Pattern[str] | None = None  # a complex segment such as {name}.{ext}
    params: tuple[_Param, ...] = ()  # ...and its parameters, in group order

    @property
    def rank(self) -> int:
        """ASP.NET inbound precedence digit: literal 1, complex 2, constrained 3, plain 4, catch-all 5."""
        if self.literal is not None:
            return 1
        if self.param is None:
            return 2
        if self.param.catch_all:
            return 5
        return 3 if self.param.checks else 4

    @property
    def skippable(self) -> bool:
        p = self.param
        return p is not None and (p.optional or p.default is not None or p.catch_all)


def _split_template(template: str) -> list[list[str | _Param]]:
    segments: list[list[str | _Param]] = [[]]
    literal: list[str] = []

    def flush() -> None:
        if literal:
            segments[-1].append("".join(literal))
            literal.clear()

    i = 0
    while i < len(template):
        c = template[i]
        if template.startswith(("{{", "}}"), i):
            literal.append(c)
            i += 2
        elif c == "/":
            flush()
            segments.append([])
            i += 1
        elif c == "{":
            flush()
            token: list[str] = []
            i += 1
            while i < len(template) and not (template[i] == "}" and not template.startswith("}}", i)):
                token.append(template[i])
                i += 2 if template.startswith(("{{", "}}"), i) else 1
            if i >= len(template):
                raise ValueError(f"unclosed '{{' in route {template!r}")
            segments[-1].append(_parse_param("".join(token), template))
            i += 1
        elif c == "}":
            raise ValueError(f"unmatched '}}' in route {template!r}")
        else:
            literal.append(c)
            i += 1
    flush()
    return [] if segments == [[]] else segments


class RouteTemplate:
    """An ASP.NET-style route template, e.g. ``api/messages/{messageId}`` or ``api/x/{id:int?}``."""

    def __init__(self, template: str) -> None:
        self.template = template
        segments: list[_Segment] = []
        for parts in _split_template(template):
            if not parts:
                raise ValueError(f"empty segment in route {template!r}")
            if len(parts) == 1 and isinstance(parts[0], str):
                segments.append(_Segment(literal=parts[0]))
            elif len(parts) == 1 and isinstance(parts[0], _Param):
                segments.append(_Segment(param=parts[0]))
            else:
                params = tuple(p for p in parts if isinstance(p, _Param))
                if any(p.optional or p.catch_all or p.default is not None for p in params) or any(
                    isinstance(a, _Param) and isinstance(b, _Param) for a, b in itertools.pairwise(parts)
                ):
                    raise ValueError(f"unsupported complex segment in route {template!r}")
                pattern = "".join("(.+)" if isinstance(p, _Param) else re.escape(p) for p in parts)
                segments.append(_Segment(regex=re.compile(pattern, re.IGNORECASE | re.DOTALL), params=params))
        for i, seg in enumerate(segments):
            if seg.param is not None and seg.param.catch_all and i != len(segments) - 1:
                raise ValueError(f"catch-all parameter must be last in route {template!r}")
            if seg.skippable and not all(s.skippable for s in segments[i:]):
                raise ValueError(f"optional parameter must be at the end of route {template!r}")
        self.segments: tuple[_Segment, ...] = tuple(segments)
        self.precedence: tuple[int, ...] = tuple(s.rank for s in segments)

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """Route values if the (decoded) path segments match, else None."""
        values: dict[str, str] = {}
        for i, seg in enumerate(self.segments):
            p = seg.param
            if p is not None and p.catch_all:
                rest = "/".join(parts[i:])
                if rest and not p.accepts(rest):
                    return None
                if rest or p.default is not None:
                    values[p.name] = rest or str(p.default)
                return values
            if i >= len(parts):
                if not seg.skippable:
                    return None
                if p is not None and p.default is not None:
                    values[p.name] = p.default
                continue
            part = parts[i]
            if seg.literal is not None:
                if part.casefold() != seg.literal.casefold():
                    return None
            elif p is not None:
                if not part or not p.accepts(part):
                    return None
                values[p.name] = part
            else:
                assert seg.regex is not None
                m = seg.regex.fullmatch(part)
                if m is None or not all(q.accepts(v) for q, v in zip(seg.params, m.groups(), strict=False)):
                    return None
                values.update((q.name, v) for q, v in zip(seg.params, m.groups(), strict=False))
        return values if len(parts) <= len(self.segments) else None

    def __repr__(self) -> str:
        return f"RouteTemplate({self.template!r})"


def split_path(path: str) -> list[str]:
    """Decoded segments of a URL path; one trailing slash is ignored, as ASP.NET routing does."""
    path = path.removeprefix("/").removesuffix("/")
    return [unquote(s) for s in path.split("/")] if path else []


# --------------------------------------------------------------------------- functions


@dataclass(frozen=True)
class _TraceContext:
    trace_parent: str = ""
    trace_state: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _RetryContext:
    retry_count: int = 0
    max_retry_count: int = 0
    exception: None = None


@dataclass(frozen=True)
class _Context:
    """Duck-typed ``func.Context`` for functions that declare a ``context`` parameter."""

    invocation_id: str
    function_name: str
    function_directory: str
    thread_local_storage: threading.local = field(default_factory=threading.local)
    trace_context: _TraceContext = field(default_factory=_TraceContext)
    retry_context: _RetryContext = field(default_factory=_RetryContext)


@dataclass(frozen=True)
class _Function:
    name: str
    code: Callable[..., Any]
    trigger_type: str
    trigger_arg: str
    wants_context: bool
    directory: str


@dataclass(frozen=True)
class _HttpRoute:
    function: _Function
    route: RouteTemplate
    methods: frozenset[str] | None  # None: every method
    auth_level: str
    order: int

    def allows(self, method: str) -> bool:
        m = self.methods
        return m is None or method in m or (method == "HEAD" and "GET" in m)

    def allowed(self) -> set[str]:
        m = set(ALL_METHODS if self.methods is None else self.methods)
        return m | {"HEAD"} if "GET" in m else m


#: `FunctionApp.get_functions()` may be called once per app object (azure-functions 1.26 raises on a second
#: call: "does not have a unique function name"), so each app's functions are read once and kept.
_APP_FUNCTIONS: weakref.WeakKeyDictionary[func.FunctionApp, list[Any]] = weakref.WeakKeyDictionary()


def _functions_of(app: func.FunctionApp) -> list[Any]:
    if app not in _APP_FUNCTIONS:
        _APP_FUNCTIONS[app] = list(app.get_functions())
    return _APP_FUNCTIONS[app]


def _discover(app: func.FunctionApp, route_prefix: str) -> tuple[dict[str, _Function], list[_HttpRoute]]:
    functions: dict[str, _Function] = {}
    routes: list[_HttpRoute] = []
    for fn in _functions_of(app):
        name = str(fn.get_function_name())
        bindings = [json.loads(b) for b in fn.get_raw_bindings()]
        trigger = next(b for b in bindings if str(b.get("type", "")).lower().endswith("trigger"))
        code = fn.get_user_function()
        params = inspect.signature(code).parameters
        for p in params.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty:
                continue
            if p.name not in (trigger["name"], "context"):
                raise ValueError(
                    f"Function {name!r}: parameter {p.name!r} is not the {trigger['type']} binding "
                    f"{trigger['name']!r} or 'context'; the local host does not provide other bindings"
                )
        if trigger["name"] not in params:
            raise ValueError(f"Function {name!r} has no parameter {trigger['name']!r} for its {trigger['type']}")
        source = inspect.getsourcefile(code)
        function = _Function(
            name=name,
            code=code,
            trigger_type=trigger["type"],
            trigger_arg=trigger["name"],
            wants_context="context" in params,
            directory=str(Path(source).parent) if source else str(Path.cwd()),
        )
        functions[name.lower()] = function
        if trigger["type"] != "httpTrigger":
            continue
        route = str(trigger.get("route") or name).lstrip("~").strip("/")
        try:
            template = RouteTemplate(f"{route_prefix}/{route}" if route_prefix else route)
        except ValueError as exc:
            raise ValueError(f"Function {name!r}: {exc}") from exc
        first = template.segments[0].literal if template.segments else None
        if first is not None and first.lower() == "admin":
            raise ValueError(f"Function {name!r}: route {template.template!r} conflicts with the built-in admin routes")
        methods = trigger.get("methods")
        routes.append(
            _HttpRoute(
                function=function,
                route=template,
                methods=frozenset(str(m).upper() for m in methods) if methods else None,
                auth_level=str(trigger.get("authLevel", "function")).lower(),
                order=len(routes),
            )
        )
    routes.sort(key=lambda r: (r.route.precedence, r.route.template.lower(), r.order))
    return functions, routes


def _problem(status: int, detail: str, headers: list[tuple[str, str]] | None = None) -> _Response:
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    return status, [("Content-Type", "application/problem+json"), *(headers or [])], json.dumps(body).encode()


def _to_response(result: object) -> _Response:
    """What the worker's ``HttpResponseConverter`` does with a function's return value."""
    if isinstance(result, str):
        return 200, [("Content-Type", "text/plain; charset=utf-8")], result.encode()
    if result is None:
        return 204, [], b""
    if not isinstance(result, func.HttpResponse):
        raise TypeError(f"HTTP function returned {type(result).__name__}, expected func.HttpResponse or str")
    headers = [(str(k), str(v)) for k, v in result.headers.items()]
    if not any(k.lower() == "content-type" for k, _ in headers):
        mimetype, charset = str(result.mimetype), str(result.charset)
        headers.append(("Content-Type", f"{mimetype}; charset={charset}" if mimetype.startswith("text/") else mimetype))
    return int(result.status_code), headers, result.get_body()


async def _await(awaitable: Any) -> Any:
    return await awaitable


# --------------------------------------------------------------------------- HTTP server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    local_host: LocalHost


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _dispatch(self) -> None:
        try:
            response = self.server.local_host.handle(self)
        except Exception:  # a host bug, not a function failure
            log.exception("Local host failed on %s %s", self.command, self.path)
            response = _problem(500, "Local host error")
            self.close_connection = True
        self._send(*response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def read_body(self, limit: int) -> bytes | None:
        """The request body, or None when it exceeds ``limit`` (raises ValueError if malformed)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while size := int(self.rfile.readline(1024).split(b";")[0].strip(), 16):
                total += size
                if total > limit:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
            while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return None if length > limit else self.rfile.read(length)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        no_body = status < 200 or status in (204, 304)
        if not no_body:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not no_body and self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


class LocalHost:
    """Serves a FunctionApp's HTTP functions; ``with LocalHost(app) as h: urlopen(h.base_url + ...)``.

    ``port=0`` picks a free port.  Settings from ``settings_file`` are put into ``os.environ`` by
    ``start()`` and the ones it added are removed again by ``stop()``.
    """

    def __init__(
        self,
        app: func.FunctionApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        route_prefix: str | None = None,
        settings_file: str | Path | None = "local.settings.json",
        host_file: str | Path | None = "host.json",
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.host, self.port = host, port
        self.route_prefix = read_route_prefix(host_file) if route_prefix is None else route_prefix.strip("/")
        self.settings_file = settings_file
        self.max_body_bytes = max_body_bytes
        self._functions, self._routes = _discover(app, self.route_prefix)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._applied_settings: dict[str, str] = {}

    # ---- lifecycle

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalHost is not started")
        wildcard = {"", "0.0.0.0"}  # noqa: S104 (mapping a bind address to a URL, not binding)
        host = "127.0.0.1" if self.host in wildcard else "::1" if self.host == "::" else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def _open(self) -> None:
        if self._server is not None:
            raise RuntimeError("LocalHost is already started")
        self._applied_settings = load_settings(self.settings_file)
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="localhost-asyncio", daemon=True)
        self._loop_thread.start()
        server_cls = _Server6 if ":" in self.host else _Server
        try:
            self._server = server_cls((self.host, self.port), _Handler)
        except BaseException:
            self._close()
            raise
        self._server.local_host = self
        self.port = self._server.server_address[1]

    def start(self) -> Self:
        """Serve in a background thread; returns self."""
        self._open()
        assert self._server is not None
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="localhost-http", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl+C)."""
        self._open()
        assert self._server is not None
        print(self.describe(), flush=True)
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._close()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._thread = None
        self._close()

    def _close(self) -> None:
        if self._server is not None:
            self._server.server_close()
            self._server = None
        if self._loop is not None and self._loop_thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join()
            self._loop.close()
        self._loop = self._loop_thread = None
        for key, value in self._applied_settings.items():
            if os.environ.get(key) == value:
                del os.environ[key]
        self._applied_settings = {}

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def describe(self) -> str:
        """The function list Core Tools prints at startup."""
        base = self.base_url if self._server is not None else f"http://{self.host}:{self.port}"
        lines = ["Functions:", ""]
        http = {r.function.name: r for r in self._routes}
        for fn in self._functions.values():
            r = http.get(fn.name)
            if r is None:
                lines.append(f"\t{fn.name}: {fn.trigger_type}  (POST {base}/admin/functions/{fn.name})")
            else:
                methods = ",".join(sorted(r.methods)) if r.methods else "all methods"
                lines.append(f"\t{fn.name}: [{methods}] {base}/{r.route.template}")
        return "\n".join(lines)

    # ---- requests

    def invoke(self, function: _Function, trigger_value: object, reason: str) -> Any:
        """Run a function's own code (sync in this thread, async on the host's event loop)."""
        invocation_id = str(uuid.uuid4())
        kwargs: dict[str, Any] = {function.trigger_arg: trigger_value}
        if function.wants_context:
            kwargs["context"] = _Context(invocation_id, function.name, function.directory)
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", function.name, reason, invocation_id)
        started, outcome = time.perf_counter(), "Failed"
        try:
            result = function.code(**kwargs)
            if inspect.isawaitable(result):
                if self._loop is None:
                    raise RuntimeError("LocalHost is not started")
                result = asyncio.run_coroutine_threadsafe(_await(result), self._loop).result()
            outcome = "Succeeded"
            return result
        finally:
            ms = round((time.perf_counter() - started) * 1000)
            log.info("Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)", function.name, outcome, invocation_id, ms)

    def handle(self, handler: _Handler) -> _Response:
        method = handler.command.upper()
        target = handler.path
        if target.startswith("/"):
            raw_path, _, query = target.partition("#")[0].partition("?")
            url = f"http://{handler.headers.get('Host') or self.base_url[7:]}{target.partition('#')[0]}"
        else:  # absolute-form request target
            parts = urlsplit(target)
            raw_path, query, url = parts.path, parts.query, target
        try:
            body = handler.read_body(self.max_body_bytes)
        except ValueError:
            handler.close_connection = True
            return _problem(400, "Malformed request body framing")
        if body is None:
            handler.close_connection = True
            return _problem(413, f"Request body exceeds {self.max_body_bytes} bytes")
        segments = split_path(raw_path)

        if len(segments) == 3 and [s.lower() for s in segments[:2]] == ["admin", "functions"]:
            if method != "POST":
                return _problem(405, "Use POST to run a function", [("Allow", "POST")])
            return self._admin(segments[2], body)

        candidates = [(r, values) for r in self._routes if (values := r.route.match(segments)) is not None]
        for route, values in candidates:
            if route.allows(method):
                return self._http(route, method, url, query, values, handler, body)
        if candidates:
            allow = set().union(*(r.allowed() for r, _ in candidates))
            allow_header = ", ".join(m for m in ALL_METHODS if m in allow)
            return _problem(405, f"{method} is not allowed here", [("Allow", allow_header)])
        return _problem(404, f"No function matches {raw_path}")

    def _http(
        self,
        route: _HttpRoute,
        method: str,
        url: str,
        query: str,
        route_values: dict[str, str],
        handler: _Handler,
        body: bytes,
    ) -> _Response:
        headers: dict[str, str] = {}
        for key, value in handler.headers.items():
            k = key.lower()
            headers[k] = f"{headers[k]}, {value}" if k in headers else value
        params: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        request = func.HttpRequest(method, url, headers=headers, params=params, route_params=route_values, body=body)
        fn = route.function
        try:
            return _to_response(self.invoke(fn, request, _REASON))
        except Exception:
            log.exception("Function %s failed", fn.name)
            return _problem(500, f"Function {fn.name} failed")

    def _admin(self, name: str, body: bytes) -> _Response:
        fn = self._functions.get(name.lower())
        if fn is None:
            return _problem(404, f"No function named {name}")
        if fn.trigger_type == "httpTrigger":
            return _problem(400, f"Function {fn.name} is HTTP-triggered; call its route instead")
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            return _problem(400, 'Body must be JSON such as {"input": "..."}')
        value = payload.get("input") if isinstance(payload, dict) else None
        trigger_value: object
        if fn.trigger_type == "timerTrigger":
            trigger_value = TimerRequest(past_due=False, schedule_status={}, schedule={"AdjustForDST": True})
        else:
            trigger_value = "" if value is None else _setting_str(value)
        try:
            self.invoke(fn, trigger_value, _REASON)
        except Exception:
            log.exception("Function %s failed", fn.name)
            return _problem(500, f"Function {fn.name} failed")
        return 202, [], b""


# --------------------------------------------------------------------------- entry points


def serve(
    app: func.FunctionApp,
    host: str = "127.0.0.1",
    port: int = 7071,
    route_prefix: str | None = None,
    settings_file: str | Path | None = "local.settings.json",
) -> None:
    """Serve ``app`` until Ctrl+C, like ``func start`` (host.json is read from the working directory)."""
    LocalHost(app, host, port, route_prefix=route_prefix, settings_file=settings_file).serve_forever()


def main(argv: list[str] | None = None) -> None:
    """``python -m shared.host [--app function_app:app] [--port 7071]``: settings first, then import."""
    parser = argparse.ArgumentParser(prog="python -m shared.host", description=__doc__.split("\n")[0])
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--route-prefix", default=None, help="default: host.json routePrefix, else 'api'")
    parser.add_argument("--settings", default="local.settings.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    load_settings(args.settings)  # before the import, so module-level code sees the settings
    sys.path.insert(0, str(Path.cwd()))
    module_name, _, attr = args.app.partition(":")
    app = getattr(importlib.import_module(module_name), attr or "app")
    if not isinstance(app, func.FunctionApp):
        parser.error(f"{args.app} is a {type(app).__name__}, not a func.FunctionApp")
    serve(app, args.host, args.port, args.route_prefix, settings_file=None)


if __name__ == "__main__":
    main()
