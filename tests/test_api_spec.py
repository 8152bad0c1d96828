"""Every name the spec holds resolves: each handler to a function of its module's typed registry, each model name
to the pydantic model of that name, and no registry lists a handler that no function of the spec names."""

from __future__ import annotations

import importlib
import inspect

from pydantic import BaseModel

from shared.api import spec
from shared.api.functions import BLUEPRINT_HANDLERS
from shared.api.spec import OPERATIONS, TRIGGERS, EventGridTrigger, QueueTrigger, Timer

REGISTRIES = {Timer: "TIMER_HANDLERS", QueueTrigger: "QUEUE_HANDLERS", EventGridTrigger: "EVENT_GRID_HANDLERS"}


def test_every_handler_and_model_named_in_the_spec_resolves() -> None:
    named: set[tuple[str, str, str]] = set()
    for operation in OPERATIONS:
        if operation.handlers is None:
            handler = BLUEPRINT_HANDLERS[operation.name]
        else:
            handler = operation.handler()
            named.add((operation.handlers, "HTTP_HANDLERS", operation.name))
        assert inspect.isfunction(handler) and handler.__name__ == operation.name, operation.name
        assert list(inspect.signature(handler).parameters) == ["call"], operation.name
        models = [operation.params, operation.body, operation.response]
        models += [response.model for response in (operation.ok, *operation.responses)]
        if operation.webhook is not None:
            models += [operation.webhook.body, operation.webhook.payload, *operation.webhook.also]
        for name in filter(None, models):
            model = spec.model(name)
            assert issubclass(model, BaseModel) and model.__name__ == name, (operation.name, name)
    for trigger in TRIGGERS:
        handler = trigger.handler()
        assert inspect.isfunction(handler) and handler.__name__ == trigger.name, trigger.name
        assert len(inspect.signature(handler).parameters) == 2, trigger.name
        named.add((trigger.handlers, REGISTRIES[type(trigger)], trigger.name))
    assert set(BLUEPRINT_HANDLERS) == {operation.name for operation in OPERATIONS if operation.handlers is None}
    listed = {
        (module, registry, function.__name__)
        for module in {module for module, _, _ in named}
        for registry in ("HTTP_HANDLERS", *REGISTRIES.values())
        for function in getattr(importlib.import_module(module), registry, ())
    }
    assert listed == named, "registered but named by no function of the spec: " + str(sorted(listed - named))
