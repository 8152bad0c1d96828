"""The one error hierarchy: every failure the service reports knows its HTTP status and its CLI exit code.

``ServiceError`` carries what both front ends need (status, title, detail, ``retry_after``); the HTTP layer
maps any of them to problem+json once (``shared.api.http``) and the CLI maps them to an exit code once
(``shared.cli``). Modules raise the narrowest class that says what happened; nothing else is caught by name.

    ServiceError                 500, exit 1   unexpected failure of a dependency or of ours
    ├── InvalidInput             400, exit 2   bad input; ``errors`` names each parameter at fault
    ├── NotFound                 404, exit 1   nothing known (yet) for what was asked
    ├── Conflict                 409, exit 1   the thing is busy or changed (e.g. another import runs)
    ├── UpstreamFailure          502, exit 1   a dependency refused us (configuration, permissions, bugs)
    └── Unavailable              503, exit 1   a dependency is down or throttling; retry after ``retry_after``
        └── Throttled            429, exit 1   the caller's own quota at a dependency is spent (ACS sending):
                                               passed on, with the dependency's ``retry_after``

A component's errors come in pairs, ``XError(UpstreamFailure)`` and ``XUnavailable(Unavailable, XError)``:
the class that says what happened comes first among the bases, so status, title default and Retry-After come from
it through the MRO and no subclass restates them (``tests/api/test_errors.py``). ``except XError`` catches both.

Messages never quote recipient addresses, keys or connection strings: callers say which parameter or
component failed, not what it held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class ParameterError:
    """One input at fault: the query/route parameter (or CLI option) and why its value cannot be used."""

    parameter: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"parameter": self.parameter, "reason": self.reason}


class ServiceError(Exception):
    status = 500
    title = "Internal Server Error"
    exit_code = EXIT_FAILURE
    #: ``retry_after`` when the raiser gives none (None: the answer carries no Retry-After).
    DEFAULT_RETRY_AFTER: float | None = None

    def __init__(
        self,
        detail: str,
        *,
        retry_after: float | None = None,
        title: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = self.DEFAULT_RETRY_AFTER if retry_after is None else retry_after
        if title is not None:
            self.title = title
        #: Extra members of the problem document (e.g. the message id a 404 is about).
        self.fields = fields or {}


class InvalidInput(ServiceError, ValueError):
    """Input that cannot be used; ``errors`` names every parameter at fault."""

    status = 400
    title = "Invalid request"
    exit_code = EXIT_BAD_INPUT

    def __init__(self, detail: str, errors: list[ParameterError] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []

    @classmethod
    def parameter(cls, name: str, reason: str) -> InvalidInput:
        return cls(f"{name}: {reason}", [ParameterError(name, reason)])


class NotFound(ServiceError):
    status = 404
    title = "Not found"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"


class UpstreamFailure(ServiceError):
    """A dependency answered, but not usefully: wrong configuration or permissions, or a query it refused."""

    status = 502
    title = "Upstream failure"


class Unavailable(ServiceError):
    """A dependency is unreachable, timed out or throttles: the same request may work after ``retry_after`` s."""

    status = 503
    title = "Service unavailable"
    DEFAULT_RETRY_AFTER = 30.0


class Throttled(Unavailable):
    """The caller's quota at a dependency is spent (ACS's send rate): its 429 is passed on with its Retry-After,
    since only the caller can slow down; a dependency throttling *us* stays a 503."""

    status = 429
    title = "Too many requests"
