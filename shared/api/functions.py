"""Registers every function of ``shared.api.spec`` on a Blueprint.

Imported by ``function_app.py`` at host start, so it imports nothing but ``azure.functions`` and the
spec: handlers, pydantic and the Azure SDKs load on the first invocation. ``services`` is how a
function finds its dependencies: by default one ``Services`` per process built from the settings;
tests pass their own provider (``build_blueprint(lambda: my_services)``) instead of patching globals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import azure.functions as func

from shared.api.spec import OPERATIONS, TRIGGERS, EventGridTrigger, Operation, QueueTrigger, Timer

if TYPE_CHECKING:
    from shared.api.http import Call
    from shared.api.signatures import HttpHandler
    from shared.services import Services

ServicesProvider = Callable[[], "Services"]

_AUTH = {"function": func.AuthLevel.FUNCTION, "anonymous": func.AuthLevel.ANONYMOUS, "admin": func.AuthLevel.ADMIN}


def default_services() -> Services:
    from shared.services import process_services

    return process_services()


def openapi(call: Call) -> func.HttpResponse:
    """``GET /api/openapi.json``: the document rendered from the spec, with this host as its server."""
    from shared.api.http import json_response
    from shared.api.openapi import openapi_document

    parts = urlsplit(call.url)
    return json_response(openapi_document(server_url=f"{parts.scheme}://{parts.netloc}/api"))


#: The operations the blueprint answers itself (``handlers=None`` in the spec): the spec cannot name this
#: module, which reads the spec.
BLUEPRINT_HANDLERS: Final[dict[str, HttpHandler]] = {"openapi": openapi}


def _http_function(operation: Operation, services: ServicesProvider) -> Callable[[func.HttpRequest], func.HttpResponse]:
    handler = BLUEPRINT_HANDLERS[operation.name] if operation.handlers is None else None

    def handle(req: func.HttpRequest) -> func.HttpResponse:
        from shared.api.dispatch import dispatch

        return dispatch(operation, req, services, handler)

    handle.__name__ = handle.__qualname__ = operation.name
    return handle


def _timer_function(trigger: Timer, services: ServicesProvider) -> Callable[[func.TimerRequest], None]:
    def run(timer: func.TimerRequest) -> None:
        trigger.handler()(timer, services())

    run.__name__ = run.__qualname__ = trigger.name
    return run


def _event_function(trigger: EventGridTrigger, services: ServicesProvider) -> Callable[[func.EventGridEvent], None]:
    def run(event: func.EventGridEvent) -> None:
        from shared import deadline

        context = services()
        # Event Grid counts a delivery failed after 30 s: the invocation answers (5xx if the store is stuck) before.
        with deadline.budget(deadline.event_budget(context.settings.request_budget_seconds)):
            trigger.handler()(event, context)

    run.__name__ = run.__qualname__ = trigger.name
    return run


def _queue_function(trigger: QueueTrigger, services: ServicesProvider) -> Callable[[func.QueueMessage], None]:
    def run(message: func.QueueMessage) -> None:
        trigger.handler()(message, services())

    run.__name__ = run.__qualname__ = trigger.name
    return run


def build_blueprint(services: ServicesProvider = default_services) -> func.Blueprint:
    bp = func.Blueprint()  # type: ignore[no-untyped-call]
    for operation in OPERATIONS:
        route = bp.route(route=operation.route, methods=[operation.method], auth_level=_AUTH[operation.auth])
        bp.function_name(name=operation.name)(route(_http_function(operation, services)))
    for trigger in TRIGGERS:
        if isinstance(trigger, Timer):
            schedule = f"%{trigger.schedule_setting}%"
            decorator = bp.timer_trigger(arg_name="timer", schedule=schedule, run_on_startup=False, use_monitor=True)
            bp.function_name(name=trigger.name)(decorator(_timer_function(trigger, services)))
        elif isinstance(trigger, QueueTrigger):
            queue = f"%{trigger.queue_setting}%"
            decorator = bp.queue_trigger(arg_name="message", queue_name=queue, connection=trigger.connection)
            bp.function_name(name=trigger.name)(decorator(_queue_function(trigger, services)))
        else:
            decorator = bp.event_grid_trigger(arg_name="event")
            bp.function_name(name=trigger.name)(decorator(_event_function(trigger, services)))
    return bp


#: azure-core logs every request and response (headers included) at INFO, the level the Functions host keeps
#: by default (host.json): one Table write would cost two log records (a fold of 100,000 rows: ~800,000 lines
#: of telemetry). Its warnings and errors still pass.
QUIET_LOGGERS: Final = ("azure.core.pipeline.policies.http_logging_policy",)


def create_app(services: ServicesProvider = default_services) -> func.FunctionApp:
    """The FunctionApp ``function_app.py`` exposes; tests build one around their own services."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(build_blueprint(services))
    return app
