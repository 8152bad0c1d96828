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
