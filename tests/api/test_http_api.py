"""The HTTP API, driven over real HTTP on loopback through the local host serving function_app.app,
against the semantics fixture in a real DuckDB store. Bodies must equal what the CLI prints."""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest

from shared import cli
from shared.insights import Insights
from shared.services import Services

from apphost import serve, settings

DAY = {"from": "2026-03-10T00:00:00Z", "to": "2026-03-11T00:00:00Z"}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        return f"{self.base_url}/api/{path}" + (f"?{urlencode(params)}" if params else "")

    def get(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        method: str = "GET",
    ) -> Reply:
        return self.fetch(self.url(path, params), headers, method)

    def fetch(self, url: str, headers: dict[str, str] | None = None, method: str = "GET") -> Reply:
        request = urllib.request.Request(url, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request) as response:
                return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


@pytest.fixture(scope="module")
def services(semantic_insights: Insights) -> Services:
    return Services(settings(), insights=semantic_insights)


@pytest.fixture(scope="module")
def api(services: Services) -> Iterator[Api]:
    with serve(services) as host:
        yield Api(host.base_url)


def cli_json(services: Services, argv: list[str]) -> Any:
    out = io.StringIO()
    assert cli.run(argv, out, services=services) == 0
    return json.loads(out.getvalue())


def assert_problem(reply: Reply, status: int, parameter: str | None = None) -> dict[str, Any]:
    assert reply.status == status, reply.body
    assert reply.content_type.startswith("application/problem+json")
    body = reply.json
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    if parameter is not None:
        assert parameter in {error["parameter"] for error in body["errors"]}, body
    return dict(body)


# --------------------------------------------------------------------------- trace


def test_trace_final_is_200_and_equals_the_cli(api: Api, services: Services) -> None:
    reply = api.get("messages/msg-01-final")
    assert reply.status == 200 and reply.content_type.startswith("application/json")
    assert reply.json == cli_json(services, ["trace", "msg-01-final"])
    assert reply.json["state"] == "final"


def test_trace_pending_is_202_with_location_and_retry_after(api: Api) -> None:
    reply = api.get("messages/msg-02-pending", {"lookbackDays": 30, "code": "secret-key"})
    assert reply.status == 202
    assert reply.json["state"] == "pending"
    location = reply.headers["location"]
    assert location.startswith(api.base_url + "/api/messages/msg-02-pending")
    assert "lookbackDays=30" in location and "secret-key" not in location
    assert int(reply.headers["retry-after"]) > 0
    assert api.fetch(location).status == 202  # Power Automate polls the Location


def test_trace_not_found_is_404_problem_with_retry_after(api: Api) -> None:
    reply = api.get("messages/msg-404")
    body = assert_problem(reply, 404)
    assert body["state"] == "notFound" and int(reply.headers["retry-after"]) > 0


@pytest.mark.parametrize("bad", ["has space", 'quote"d', "pipe|x", "a" * 200, "semi;colon", "new%0Aline"])
def test_trace_malformed_id_is_400(api: Api, bad: str) -> None:
    reply = api.fetch(f"{api.base_url}/api/messages/{quote(bad, safe='%')}")
    assert_problem(reply, 400, "messageId")


def test_trace_bad_lookback_is_400(api: Api) -> None:
    assert_problem(api.get("messages/msg-01-final", {"lookbackDays": 91}), 400, "lookbackDays")
    assert_problem(api.get("messages/msg-01-final", {"lookbackDays": "x"}), 400, "lookbackDays")


# --------------------------------------------------------------------------- search


def test_search_equals_the_cli(api: Api, services: Services) -> None:
    reply = api.get("messages", {**DAY, "recipientDomain": "fabrikam.com"})
    assert reply.status == 200
    expected = cli_json(
        services,
        ["search", "--from", DAY["from"], "--to", DAY["to"], "--recipient-domain", "fabrikam.com"],
    )
    assert reply.json == expected
    assert "nextLink" not in reply.json


def test_search_pages_to_the_end_through_next_link(api: Api) -> None:
    everything = api.get("messages", DAY).json["value"]
    seen: list[str] = []
    url: str | None = api.url("messages", {**DAY, "top": 3})
    pages = 0
    while url:
        reply = api.fetch(url)
        assert reply.status == 200
        seen += [row["recipientId"] for row in reply.json["value"]]
        url = reply.json.get("nextLink")
        if url:
            assert urlsplit(url).scheme == "http" and url.startswith(api.base_url)
        pages += 1
    assert pages == 4
    assert seen == [row["recipientId"] for row in everything] and len(seen) == 10


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"top": 0}, "top"),
        ({"top": 1001}, "top"),
        ({"top": "ten"}, "top"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-03-11T00:00:00Z", "to": "2026-03-10T00:00:00Z"}, "(request)"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-03-10T00:00:00Z"}, "(request)"),
        ({"recipient": "not-an-address"}, "recipient"),
        ({"recipient": 'a@b.com" | take 1'}, "recipient"),
        ({"recipientDomain": "gmail.com | project x"}, "recipientDomain"),
        ({"status": "delivered; drop"}, "status"),
        ({"bounceType": "medium"}, "bounceType"),
        ({"minDurationSeconds": -1}, "minDurationSeconds"),
        ({"minSizeMb": "NaN"}, "minSizeMb"),
        ({"hasAttachments": "perhaps"}, "hasAttachments"),
        ({"sender": "a\nb"}, "sender"),
        ({"internetMessageId": "<a\r\nb>"}, "internetMessageId"),
        ({"resourceId": "/subscriptions/x"}, "resourceId"),
        ({"continuationToken": "not-a-token"}, "continuationToken"),
        ({"unknownThing": "1"}, "unknownThing"),
    ],
)
def test_search_bad_input_is_400_naming_the_parameter(api: Api, params: dict[str, Any], parameter: str) -> None:
    assert_problem(api.get("messages", params), 400, parameter)


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("messages", "to"),
        ("messages", "sender"),
        ("stats/domains", "from"),
        ("bounces", "type"),
        ("recipients/a@b.com", "to"),
    ],
)
def test_empty_query_value_is_400_not_the_default(api: Api, path: str, parameter: str) -> None:
    """``to=`` is not a date-time: it is refused, naming the parameter, rather than read as "not given"."""
    reply = api.fetch(api.url(path) + f"?{parameter}=")
    assert_problem(reply, 400, parameter)
    assert "empty" in reply.json["errors"][0]["reason"]


def test_search_token_from_other_filters_is_400(api: Api) -> None:
    token = api.get("messages", {**DAY, "top": 3}).json["continuationToken"]
    reply = api.get("messages", {**DAY, "top": 3, "status": "Bounced", "continuationToken": token})
    assert_problem(reply, 400, "continuationToken")


# --------------------------------------------------------------------------- stats and bounces


@pytest.mark.parametrize("kind", ["domains", "senders", "mail-servers", "latency", "failures", "sizes"])
def test_stats_equal_the_cli(api: Api, services: Services, kind: str) -> None:
    reply = api.get(f"stats/{kind}", DAY)
    assert reply.status == 200
    body = reply.json
    assert body == cli_json(services, ["stats", kind, "--from", DAY["from"], "--to", DAY["to"]])
    # 12 expected recipients (msg-03 failed as a whole), 10 with a final status: the daily summary's Pending
    assert body["value"] and body["completeness"]["pendingRecipients"] == 2 and body["failedMessages"] == 1


def test_stats_bad_input(api: Api) -> None:
    assert_problem(api.get("stats/colours", DAY), 400, "kind")
    assert_problem(api.get("stats/latency", {**DAY, "bin": "7m"}), 400, "bin")


def test_bounces_json_and_csv(api: Api, services: Services) -> None:
    body = api.get("bounces", {**DAY, "type": "hard"}).json
    assert body == cli_json(services, ["bounces", "--type", "hard", "--from", DAY["from"], "--to", DAY["to"]])
    assert {row["recipientId"] for row in body["value"]} == {"bob@fabrikam.com", "judy@fabrikam.com"}
    for reply in (
        api.get("bounces", {**DAY, "format": "csv"}),
        api.get("bounces", DAY, headers={"Accept": "text/csv"}),
    ):
        assert reply.status == 200 and reply.content_type.startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(reply.body.decode())))
        assert {row["recipientId"] for row in rows} == {
            "bob@fabrikam.com",
            "ivan@fabrikam.com",
            "judy@fabrikam.com",
            "kim@fabrikam.com",
            "leo@contoso.com",
        }
        assert rows[0].keys() == body["value"][0].keys()
    assert_problem(api.get("bounces", {"type": "bouncy"}), 400, "type")


# --------------------------------------------------------------------------- operations


def test_health_without_table_storage_is_degraded(api: Api) -> None:
    reply = api.get("health")
    assert reply.status == 503
    body = reply.json
    assert body["status"] == "degraded"
    assert body["logSource"] == {"name": "embedded", "reachable": True, "detail": body["logSource"]["detail"]}
    assert body["tableStore"]["reachable"] is False


def test_summaries_without_table_storage_is_503_problem(api: Api) -> None:
    reply = api.get("summaries/daily", {"from": "2026-03-10", "to": "2026-03-10"})
    assert_problem(reply, 503)
    assert_problem(api.get("summaries/daily", {"from": "2026-03-10"}), 400, "to")
    assert_problem(api.get("summaries/daily/2026-02-30", method="POST"), 400, "date")


def test_openapi_document(api: Api) -> None:
    reply = api.get("openapi.json")
    assert reply.status == 200
    assert reply.json["openapi"].startswith("3.1")


def test_unknown_route_and_method(api: Api) -> None:
    assert api.get("nothing-here").status == 404
    assert api.get("messages", method="DELETE").status == 405


def test_unexpected_error_is_a_500_problem_that_logs_no_address(caplog: pytest.LogCaptureFixture) -> None:
    address = "@".join(["carol", "contoso.com"])  # built, so the traceback's source lines do not show it

    def explode() -> Services:
        raise RuntimeError("cannot handle recipient " + address)

    with serve(explode) as host, caplog.at_level("DEBUG"):
        reply = Api(host.base_url).get("messages", DAY)
    body = assert_problem(reply, 500)
    assert "carol@contoso.com" not in json.dumps(body)
    assert "RuntimeError" in caplog.text and "search_messages" in caplog.text
    assert "carol@contoso.com" not in caplog.text
