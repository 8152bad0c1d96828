"""The error hierarchy: each error's status comes from the class that says what happened, never restated."""

from __future__ import annotations

import importlib
import pkgutil

import shared
from shared.errors import Conflict, InvalidInput, NotFound, ServiceError, Throttled, Unavailable, UpstreamFailure

#: The classes that give a status its meaning, in the order a subclass of several is read.
MEANINGS = (InvalidInput, NotFound, Conflict, Throttled, Unavailable, UpstreamFailure)


def _service_errors() -> list[type[ServiceError]]:
    for module in pkgutil.walk_packages(shared.__path__, "shared."):
        if module.name != "shared.__main__":
            importlib.import_module(module.name)
    found: list[type[ServiceError]] = []
    pending = [ServiceError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_takes_its_status_from_the_first_class_that_means_it() -> None:
    errors = [cls for cls in _service_errors() if cls.__module__.startswith("shared.")]
    assert len(errors) > 15
    for cls in errors:
        meaning = next((base for base in cls.__mro__ if base in MEANINGS), ServiceError)
        assert cls.status == meaning.status, (cls.__name__, cls.status, meaning.__name__)
        if cls.__module__ != "shared.errors":
            assert "status" not in vars(cls), f"{cls.__name__} restates status: put the class that means it first"


def test_a_components_unavailable_error_is_still_caught_as_its_error() -> None:
    from shared.state.store import StateStoreError, StateStoreUnavailable

    error = StateStoreUnavailable("down")
    assert isinstance(error, StateStoreError) and error.status == 503 and error.retry_after == 30.0
