"""What the loopback stand-ins of Azure REST APIs (``acs_standin``, ``arm_standin``) share: a JSON-over-HTTP
server on 127.0.0.1 in a thread, every request recorded, and faults scripted to answer the next requests.

A stand-in is a dataclass deriving from :class:`LoopbackService` with the fields ``requests``, ``_faults`` and
``_lock``, naming its HTTP ``methods``; it implements :meth:`LoopbackService.answer` (status, JSON body or None,
extra headers) and is used as a context manager (``with StandIn() as service: service.endpoint ...``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Final, Self
from urllib.parse import parse_qs, urlsplit

#: The recorded body of a request whose body is not JSON.
NOT_JSON: Final = "<not json>"

Answer = tuple[int, Any, dict[str, str]]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int = 0


def error(status: int, code: str, message: str) -> Answer:
    """An Azure error answer: ``{"error": {"code", "message"}}``."""
    return status, {"error": {"code": code, "message": message}}, {}


class LoopbackService:
    methods: ClassVar[tuple[str, ...]]
    requests: list[Request]
    _faults: list[Any]
    _lock: threading.Lock
    _server: ThreadingHTTPServer | None = None

    def __enter__(self) -> Self:
        service = self

        def handle(method: str) -> Any:
            return lambda handler: service._handle(handler, method)

        handler = type(
            "Handler",
            (BaseHTTPRequestHandler,),
            {**{f"do_{method}": handle(method) for method in self.methods}, "log_message": lambda *args: None},
        )
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, *faults: Any) -> None:
        """Answer the next requests with these faults, in order (each ``times`` times)."""
        with self._lock:
            for fault in faults:
                self._faults.extend([fault] * fault.times)

    def next_fault(self) -> Any | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def answer(self, request: Request, path_and_query: str, raw: bytes) -> Answer:
        raise NotImplementedError

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = NOT_JSON
        headers = {key.lower(): value for key, value in handler.headers.items()}
        request = Request(method, url.path, parse_qs(url.query), headers, body)
        with self._lock:
            self.requests.append(request)
        status, payload, extra = self.answer(request, handler.path, raw)
        request.status = status
        data = json.dumps(payload).encode() if payload is not None else b""
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
