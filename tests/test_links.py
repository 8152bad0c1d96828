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
