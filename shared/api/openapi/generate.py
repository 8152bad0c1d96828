"""OpenAPI 3.1 and Swagger 2.0 (Power Automate connector) documents, generated from the spec + models.

The command ``python -m shared.api.openapi`` runs::

    python -m shared.api.openapi --write   # regenerate the committed connector definition
    python -m shared.api.openapi --check   # exit 1 when the committed file is out of date
    python -m shared.api.openapi --openapi # print the OpenAPI 3.1 document
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared.api.openapi.openapi31 import openapi_document
from shared.api.openapi.swagger import CONNECTOR_FILE, CONNECTOR_HOST, swagger2_document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.api.openapi", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help=f"write {CONNECTOR_FILE.name}")
    action.add_argument("--check", action="store_true", help="exit 1 when the committed connector is out of date")
    parser.add_argument("--openapi", action="store_true", help="print the OpenAPI 3.1 document instead")
    parser.add_argument("--file", type=Path, default=CONNECTOR_FILE, help="connector definition path")
    args = parser.parse_args(argv)
    if args.openapi and (args.write or args.check):
        parser.error("--openapi only prints; --write and --check are for the connector definition")
    text = render(openapi_document() if args.openapi else swagger2_document(host=CONNECTOR_HOST))
    if args.write:
        args.file.parent.mkdir(parents=True, exist_ok=True)
        args.file.write_text(text, encoding="utf-8")
        print(f"wrote {args.file} ({len(text.encode())} bytes)")
        return 0
    if args.check:
        current = args.file.read_text(encoding="utf-8") if args.file.is_file() else ""
        if current != text:
            print(
                f"{args.file} is out of date with the models: run `python -m shared.api.openapi --write`",
                file=sys.stderr,
            )
            return 1
        print(f"{args.file} is up to date")
        return 0
    sys.stdout.write(text)
    return 0
