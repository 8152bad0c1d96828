"""The signature each kind of function handler has, checked by mypy where each handler module lists its handlers.

``shared.api.spec`` names a handler by string (the operation's name, looked up in its module's registry) so that
importing the spec loads nothing; the registries below are what mypy sees instead. Each handler module declares
``HTTP_HANDLERS: Final[tuple[HttpHandler, ...]] = (...)`` (and ``TIMER_HANDLERS``, ``EVENT_GRID_HANDLERS``,
``QUEUE_HANDLERS`` as it needs): a handler whose parameters or result do not fit fails ``mypy --strict`` there,
and a handler missing from its registry is not found (``tests/test_api_spec.py`` resolves every name).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import azure.functions as func
from pydantic import BaseModel

from shared.api.http import Call
from shared.services import Services

#: An HTTP operation: the validated call in, a model (rendered as JSON with 200) or a full response out.
HttpHandler: TypeAlias = Callable[[Call], BaseModel | func.HttpResponse]
TimerHandler: TypeAlias = Callable[[func.TimerRequest, Services], None]
EventGridHandler: TypeAlias = Callable[[func.EventGridEvent, Services], None]
QueueHandler: TypeAlias = Callable[[func.QueueMessage, Services], None]
