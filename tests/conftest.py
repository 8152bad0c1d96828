"""Shared fixtures: the semantics fixture imported into a real DuckDB store, an Insights with a fixed clock,
and the Functions app served by the local host on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from local.embedded import DuckDbSource
from local.store import open_store
from shared.insights import Insights

import azurite as azurite_helper

FIXTURES = Path(__file__).parent / "fixtures"
SEMANTICS = FIXTURES / "semantics"
#: "Now" for tests over the semantics fixture (its send day is 2026-03-10).
FIXTURE_NOW = datetime(2026, 3, 12, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def semantic_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from local.importers import import_paths

    path = tmp_path_factory.mktemp("semantics") / "store.duckdb"
    con = open_store(path)
    import_paths(con, [SEMANTICS])
    con.close()
    return path


@pytest.fixture(scope="session")
def semantic_insights(semantic_store: Path) -> Iterator[Insights]:
    source = DuckDbSource(semantic_store)
    yield Insights(source, clock=lambda: FIXTURE_NOW)
    source.close()


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[azurite_helper.Azurite]:
    """Azurite's Table service for the session (tools/azurite), or the one named by AZURITE_TABLE_ENDPOINT."""
    try:
        server = azurite_helper.start()
    except azurite_helper.AzuriteUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite_connection_string(azurite_server: azurite_helper.Azurite) -> str:
    return azurite_server.connection_string


@pytest.fixture(autouse=True)
def _no_developer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's ``local.settings.json`` (``make run`` writes one) never reaches a test: the CLI's ``run``
    copies its values into ``os.environ`` for the rest of the process (its queue and storage settings then
    pointed later tests at a port nobody listens on). Tests of the loading itself call it directly."""
    monkeypatch.setattr("shared.cli.load_local_settings", lambda *args, **kwargs: {})
