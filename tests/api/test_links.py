"""Links this service hands out cannot be forged or stretched (issue 10): continuation tokens are signed and their
fields held to the query parameters' limits; a pending trace's Location works without a function key, for that
one message, for a while. Driven over HTTP through the dev host with keys enforced, as Azure does."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from shared.insights import Insights
from shared.services import Services
from shared.signing import DEVELOPMENT_KEY, Signer
from tools.devhost import Keys

from apphost import serve, settings
from conftest import FIXTURE_NOW

DAY = {"from": "2026-03-10T00:00:00Z", "to": "2026-03-11T00:00:00Z"}
KEY = "function-key-for-tests"
HUGE = 10**12


def get(url: str) -> tuple[int, dict[str, str], Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


@pytest.fixture(scope="module")
def base_url(semantic_insights: Insights) -> Iterator[str]:
    services = Services(settings(), insights=semantic_insights)
    with serve(services, keys=Keys(function=KEY, master="master-key-for-tests")) as host:
        yield host.base_url + "/api"


def _search(base_url: str, **params: Any) -> tuple[int, dict[str, str], Any]:
    return get(f"{base_url}/messages?{urlencode({**DAY, 'code': KEY, **params})}")


def _forge(payload: dict[str, Any]) -> str:
    """A token signed with the development key: what someone who read this repository could make."""
    return Signer(DEVELOPMENT_KEY.encode()).sign("search", payload)


def _payload(token: str) -> dict[str, Any]:
    body = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def test_an_altered_token_is_refused(base_url: str) -> None:
    status, _, page = _search(base_url, top=3)
    token = page["continuationToken"]
    payload = _payload(token)
    payload["w"][0] = "2016-03-10T00:00:00+00:00"  # ten years back, past the 90-day limit
    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()).decode()
    altered = body.rstrip("=") + "." + token.split(".")[1]
    status, headers, problem = _search(base_url, top=3, continuationToken=altered)
    assert status == 400 and headers["Content-Type"].startswith("application/problem+json")
    assert problem["errors"][0]["parameter"] == "continuationToken"
    assert _search(base_url, top=3, continuationToken=token)[0] == 200  # the real one still works


@pytest.mark.parametrize(
    "payload",
    [
        {"w": ["2016-03-10T00:00:00+00:00", "2026-03-11T00:00:00+00:00"], "t": "2026-03-10T12:00:00+00:00"},
        {"w": ["0001-01-01T00:00:00+00:00", "9999-12-31T00:00:00+00:00"], "t": "2026-03-10T12:00:00+00:00"},
        {
            "w": ["2026-03-10T00:00:00+00:00", "2026-03-11T00:00:00+00:00"],
            "t": "2026-03-10T12:00:00+00:00",
            "s": 10**12,
        },
        {"w": ["2026-03-10T00:00:00+00:00", "2026-03-11T00:00:00+00:00"], "t": "2030-01-01T00:00:00+00:00"},
    ],
    ids=["ten-year-window", "year-1-to-9999", "huge-skip", "position-outside-window"],
)
def test_a_validly_signed_token_is_still_held_to_the_limits(
    semantic_insights: Insights, payload: dict[str, Any]
) -> None:
    """With the development key (so the MAC is right), what the token says is checked like query parameters:
    400 naming the token, never a 500 (OverflowError) or a 502 (a query the service refuses)."""
    services = Services(settings(), insights=semantic_insights)
    base = {"s": 0, "f": "0123456789abcdef", **payload}
    with serve(services) as host:
        status, _, problem = get(f"{host.base_url}/api/messages?" + urlencode({"continuationToken": _forge(base)}))
    assert status == 400, problem
    assert problem["errors"][0]["parameter"] == "continuationToken"


def test_a_token_signed_with_another_key_is_refused(semantic_insights: Insights) -> None:
    services = Services(settings(link_signing_key="k" * 40), insights=semantic_insights)
    payload = {"w": ["2026-03-10T00:00:00+00:00", "2026-03-11T00:00:00+00:00"], "t": "2026-03-10T12:00:00+00:00"}
    with serve(services) as host:
        url = f"{host.base_url}/api/messages?" + urlencode({**DAY, "continuationToken": _forge({**payload, "s": 0})})
        status, _, _ = get(url)
    assert status == 400


def test_the_pending_location_is_polled_without_a_key_for_that_message_only(base_url: str) -> None:
    status, headers, body = get(f"{base_url}/messages/msg-02-pending?lookbackDays=30&code={KEY}")
    assert status == 202 and body["state"] == "pending"
    location = headers["Location"]
    assert KEY not in location and "code=" not in location
    assert get(f"{base_url}/messages/msg-02-pending")[0] == 401  # the trace itself needs the key
    status, headers, body = get(location)  # Power Automate polls with no key
    assert status == 202 and body["messageId"] == "msg-02-pending"
    assert urlsplit(headers["Location"]).path == urlsplit(location).path  # still pending: a new link to poll
    token = parse_qs(urlsplit(location).query)["token"][0]
    other = f"{base_url}/messages/msg-01-final/poll?" + urlencode({"token": token})
    status, _, problem = get(other)
    assert status == 400 and problem["errors"][0]["parameter"] == "token"


def test_a_poll_link_expires(semantic_insights: Insights) -> None:
    issued = Signer.from_setting(None).poll_token(
        "msg-02-pending", FIXTURE_NOW - timedelta(hours=2), timedelta(hours=1)
    )
    with serve(Services(settings(), insights=semantic_insights)) as host:
        url = f"{host.base_url}/api/messages/msg-02-pending/poll?" + urlencode({"token": issued, "lookbackDays": 30})
        status, _, problem = get(url)
    assert status == 400 and "expired" in problem["detail"]


def test_recomputing_a_day_that_has_not_ended_is_refused(semantic_insights: Insights) -> None:
    """The fixture's clock says 2026-03-12: that day and later have no complete summary to store."""
    with serve(Services(settings(), insights=semantic_insights)) as host:
        for day in ("2026-03-12", "2030-01-01"):
            request = urllib.request.Request(f"{host.base_url}/api/summaries/daily/{day}", b"", method="POST")
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(request, timeout=30)
            problem = json.loads(caught.value.read())
            assert caught.value.code == 400 and problem["errors"][0]["parameter"] == "date", problem


# --------------------------------------------------------------------------- the deployment's key (issue 16)

REAL_KEY = "deployment-link-signing-key-" + "x" * 16
PAYLOAD = {
    "w": ["2026-03-10T00:00:00+00:00", "2026-03-11T00:00:00+00:00"],
    "t": "2026-03-10T12:00:00+00:00",
    "s": 0,
    "f": "0123456789abcdef",
}


@pytest.fixture(scope="module")
def keyed_url(semantic_insights: Insights) -> Iterator[str]:
    """The app with LINK_SIGNING_KEY set, as deployed (no function keys: the tokens are what is on trial)."""
    with serve(Services(settings(link_signing_key=REAL_KEY), insights=semantic_insights)) as host:
        yield host.base_url + "/api"


def _poll(base_url: str, token: str, message_id: str = "msg-02-pending") -> tuple[int, dict[str, str], Any]:
    return get(f"{base_url}/messages/{message_id}/poll?" + urlencode({"token": token, "lookbackDays": 30}))


def test_tokens_forged_with_the_development_key_are_refused_when_a_key_is_set(keyed_url: str) -> None:
    """The attack of issue 16: a 10-year poll token and a continuation token signed with the key in this
    repository. With LINK_SIGNING_KEY set both are 400, while the links the service hands out work."""
    development = Signer(DEVELOPMENT_KEY.encode())
    forged_poll = development.poll_token("msg-02-pending", FIXTURE_NOW, timedelta(days=3650))
    status, _, problem = _poll(keyed_url, forged_poll)
    assert status == 400 and problem["errors"][0]["parameter"] == "token", problem
    forged_page = development.sign("search", PAYLOAD)
    status, _, problem = get(f"{keyed_url}/messages?" + urlencode({**DAY, "continuationToken": forged_page}))
    assert status == 400 and problem["errors"][0]["parameter"] == "continuationToken", problem

    status, headers, _ = get(f"{keyed_url}/messages/msg-02-pending?lookbackDays=30")
    assert status == 202
    assert get(headers["Location"])[0] == 202  # the service's own link, signed with REAL_KEY
    status, _, page = get(f"{keyed_url}/messages?" + urlencode({**DAY, "top": 3}))
    assert status == 200 and page["continuationToken"]
    assert (
        get(f"{keyed_url}/messages?" + urlencode({**DAY, "top": 3, "continuationToken": page["continuationToken"]}))[0]
        == 200
    )


def test_a_poll_token_claiming_a_long_life_is_refused_even_with_the_right_key(keyed_url: str) -> None:
    """A valid MAC does not make a 10-year expiry acceptable: no poll link outlives the hour links are given."""
    signer = Signer(REAL_KEY.encode())
    status, _, problem = _poll(keyed_url, signer.poll_token("msg-02-pending", FIXTURE_NOW, timedelta(days=3650)))
    assert status == 400 and "longer life" in problem["detail"], problem
    assert _poll(keyed_url, signer.poll_token("msg-02-pending", FIXTURE_NOW, timedelta(minutes=59)))[0] == 202


def _respell(token: str, part: int, change: Any) -> str:
    pieces = token.split(".")
    pieces[part] = change(pieces[part])
    return ".".join(pieces)


def _spare_bits(text: str) -> str:
    """The same bytes, another spelling: the last character's unused low bits set (when it has any)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(text) % 4 in (2, 3)
    return text[:-1] + alphabet[alphabet.index(text[-1]) | (0b1111 if len(text) % 4 == 2 else 0b11)]


@pytest.mark.parametrize(
    ("part", "change"),
    [
        (0, lambda text: text + "=="),
        (1, lambda text: text + "="),
        (1, _spare_bits),
        (0, lambda text: text.replace("-", "+").replace("_", "/") if ("-" in text or "_" in text) else "+" + text),
        (1, lambda text: " " + text),
        (1, lambda text: text[:-1] + "\n" + text[-1]),
    ],
    ids=["padded-payload", "padded-mac", "spare-bits", "standard-alphabet", "leading-space", "inner-newline"],
)
def test_only_the_canonical_spelling_of_a_token_is_accepted(keyed_url: str, part: int, change: Any) -> None:
    signer = Signer(REAL_KEY.encode())
    token = signer.poll_token("msg-02-pending", FIXTURE_NOW, timedelta(minutes=30))
    assert _poll(keyed_url, token)[0] == 202
    respelled = _respell(token, part, change)
    assert respelled != token
    status, _, problem = _poll(keyed_url, respelled)
    assert status == 400 and problem["errors"][0]["parameter"] == "token", problem


def test_a_payload_with_spare_bits_is_refused_as_a_continuation_token(keyed_url: str) -> None:
    token = Signer(REAL_KEY.encode()).sign("search", PAYLOAD)
    body, mac = token.split(".")
    if len(mac) % 4 in (2, 3):
        token = f"{body}.{_spare_bits(mac)}"
    status, _, problem = get(f"{keyed_url}/messages?" + urlencode({**DAY, "continuationToken": token}))
    assert status == 400 and problem["errors"][0]["parameter"] == "continuationToken"


@pytest.mark.parametrize(
    "overrides",
    [
        {"azure_instance": True},
        {"workspace_id": "00000000-0000-0000-0000-000000000000"},
        {"azure_instance": True, "link_signing_key": "short-key"},
    ],
    ids=["azure-instance", "workspace", "short-key"],
)
def test_azure_without_a_key_refuses_signed_routes_and_health_says_why(
    semantic_insights: Insights, azurite_connection_string: str, overrides: dict[str, Any]
) -> None:
    """No key to fall back to in Azure: trace, poll and search answer 503 naming the setting; health is
    degraded and says why. Unsigned routes still serve."""
    from shared.summaries.table import SummaryStore

    summaries = SummaryStore.from_connection_string(azurite_connection_string, "LinkHealth")
    services = Services(settings(**overrides), insights=semantic_insights, summaries=summaries)
    development = Signer(DEVELOPMENT_KEY.encode())
    with serve(services) as host:
        base = host.base_url + "/api"
        refused = [
            get(f"{base}/messages/msg-02-pending?lookbackDays=30"),
            get(f"{base}/messages/msg-01-final?lookbackDays=30"),
            _poll(base, development.poll_token("msg-02-pending", FIXTURE_NOW, timedelta(minutes=5))),
            get(f"{base}/messages?" + urlencode({**DAY, "top": 3})),
            get(f"{base}/messages?" + urlencode({**DAY, "continuationToken": development.sign("search", PAYLOAD)})),
        ]
        for status, headers, problem in refused:
            assert status == 503, problem
            assert headers["Content-Type"].startswith("application/problem+json")
            assert "LINK_SIGNING_KEY" in problem["detail"] and "short-key" not in json.dumps(problem)
        if "workspace_id" not in overrides:  # (a workspace here points at nothing: the log source is down)
            assert get(f"{base}/stats/domains?" + urlencode(DAY))[0] == 200
        status, _, health = get(f"{base}/health")
    assert status == 503 and health["status"] == "degraded"
    assert health["linkSigning"].startswith("missing: LINK_SIGNING_KEY")


def test_health_names_the_key_in_use(semantic_insights: Insights, azurite_connection_string: str) -> None:
    from shared.summaries.table import SummaryStore

    summaries = SummaryStore.from_connection_string(azurite_connection_string, "LinkHealth")
    for overrides, expected in [
        ({}, "development key"),
        ({"azure_instance": True, "link_signing_key": REAL_KEY}, "configured"),
    ]:
        with serve(Services(settings(**overrides), insights=semantic_insights, summaries=summaries)) as host:
            status, _, health = get(host.base_url + "/api/health")
        assert (status, health["linkSigning"]) == (200, expected), health
        assert REAL_KEY not in json.dumps(health)
