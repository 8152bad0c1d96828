"""The Functions app served over loopback HTTP by the dev host, around services a test builds itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.api.functions import create_app
from shared.services import Services
from shared.settings import Settings
from tools.devhost import DevHost

ROOT = Path(__file__).resolve().parents[2]


def settings(**overrides: Any) -> Settings:
    """The settings of the environment (defaults), with some replaced."""
    base = Settings.from_env()
    return Settings(**{**base.__dict__, **overrides})


@contextmanager
def serve(services: Services | Callable[[], Services], **host_options: Any) -> Iterator[DevHost]:
    provider = services if callable(services) else (lambda: services)
    # Timers off unless a test asks (it runs them through the admin endpoint); queue triggers on.
    options = {"settings_file": None, "host_file": ROOT / "host.json", "timers": False, **host_options}
    with DevHost(create_app(provider), **options) as host:
        yield host
