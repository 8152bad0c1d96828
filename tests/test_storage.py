"""Table clients: the transport skips requests' per-request environment scan only when nothing there matters, and
every attempt waits at most what is left of the request's budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.storage import client_options


def test_without_a_proxy_the_environment_is_read_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "NETRC"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    options = client_options()
    transport = options["transport"]
    assert transport.session is None or transport.session.trust_env is False
    assert transport._use_env_settings is False  # azure-core keeps the flag there
    assert transport.connection_config.verify == "/etc/ssl/certs/ca-certificates.crt"  # the bundle still applies
    assert options["retry_total"] == 2  # the fast-fail options stay
    # A transport handed to the client is used as built: the fast-fail timeouts must be its own.
    assert (transport.connection_config.timeout, transport.connection_config.read_timeout) == (3, 20)


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "https_proxy", "NO_PROXY"])
def test_a_proxy_setting_keeps_requests_reading_the_environment(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "http://proxy.example:3128")
    transport = client_options()["transport"]
    assert transport._use_env_settings is True
    assert (transport.connection_config.timeout, transport.connection_config.read_timeout) == (3, 20)


def test_concurrent_invocations_sharing_a_client_keep_their_connections(azurite_connection_string: str) -> None:
    """32 threads (the worker's PYTHON_THREADPOOL_THREAD_COUNT) writing through one client: no connection is
    discarded (requests' default pool of 10 logged "Connection pool is full" on most requests of ``make run``)."""
    import logging
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from azure.data.tables import TableClient

    from shared.storage import POOL_CONNECTIONS

    table = "Pool" + uuid.uuid4().hex[:8]
    client = TableClient.from_connection_string(azurite_connection_string, table, **client_options())
    client.create_table()
    discarded: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "pool is full" in record.getMessage():
                discarded.append(record.getMessage())

    handler = Catch()
    logging.getLogger("urllib3.connectionpool").addHandler(handler)
    try:
        with ThreadPoolExecutor(POOL_CONNECTIONS) as pool:
            list(pool.map(lambda i: client.upsert_entity({"PartitionKey": "p", "RowKey": str(i)}), range(320)))
    finally:
        logging.getLogger("urllib3.connectionpool").removeHandler(handler)
        client.delete_table()
        client.close()
    assert POOL_CONNECTIONS >= 32 and not discarded, f"{len(discarded)} connections discarded"
