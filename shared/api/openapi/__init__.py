"""OpenAPI 3.1 and Swagger 2.0 (Power Automate connector) documents, generated from the spec + models.

``OPERATIONS`` (shared.api.spec) is the one list of operations and the pydantic models in
shared.models are the one definition of every parameter and field; nothing here is written by
hand twice. ``openapi_document()`` (``openapi31``) is served at ``GET /api/openapi.json``;
``swagger2_document()`` (``swagger``) is the custom connector definition committed as
``connector/apiDefinition.swagger.json``; both are built from ``schema``. ``generate`` is the command::

    python -m shared.api.openapi --write   # regenerate the committed connector definition
    python -m shared.api.openapi --check   # exit 1 when the committed file is out of date
"""

from shared.api.openapi.generate import main, render
from shared.api.openapi.openapi31 import openapi_document
from shared.api.openapi.schema import component_schemas, display_name, sentence
from shared.api.openapi.swagger import (
    CONNECTOR_FILE,
    CONNECTOR_HOST,
    CONNECTOR_MAX_BYTES,
    swagger2_document,
    to_swagger_schema,
)

__all__ = [
    "CONNECTOR_FILE",
    "CONNECTOR_HOST",
    "CONNECTOR_MAX_BYTES",
    "component_schemas",
    "display_name",
    "main",
    "openapi_document",
    "render",
    "sentence",
    "swagger2_document",
    "to_swagger_schema",
]
