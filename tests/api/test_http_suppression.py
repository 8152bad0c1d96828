"""The suppression routes over real HTTP (the local host, keys enforced as Azure does) and the CLI: the semantics
fixture's history in DuckDB, our list in the ARM stand-in driven by the real SDK, the records in Azurite."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from arm_standin import LIST_PATH, ArmSuppressionStandIn, Throttle
from test_http_api import Api, Reply, assert_problem, cli_json
from test_suppression import StaticCredential

from shared import cli
from shared.insights import Insights
from shared.services import Services
from shared.suppression.arm import SuppressionList, address_id
from shared.suppression.records import SuppressionRecords
from tools.devhost import Keys

from apphost import serve, settings

FUNCTION_KEY, MASTER_KEY = "function-key-for-tests", "master-key-for-tests"


@pytest.fixture(scope="module")
def standin() -> Iterator[ArmSuppressionStandIn]:
    with ArmSuppressionStandIn() as server:
        yield server


@pytest.fixture(scope="module")
def services(
    semantic_insights: Insights, standin: ArmSuppressionStandIn, azurite_connection_string: str
) -> Iterator[Services]:
    records = SuppressionRecords.from_connection_string(azurite_connection_string, "Supp" + uuid.uuid4().hex[:12])
    suppression_list = SuppressionList.of(
        LIST_PATH, credential=StaticCredential(), endpoint=standin.endpoint, retry_backoff_factor=0.01
    )
    yield Services(
        settings(suppression_list_id=LIST_PATH),
        insights=semantic_insights,
        suppression_list=suppression_list,
        suppression_records=records,
    )
    records.client.delete_table()
    records.close()
    suppression_list.close()


class KeyedApi(Api):
    def call(self, path: str, params: dict[str, Any] | None = None, *, key: str, method: str = "GET") -> Reply:
        return self.get(path, params, headers={"x-functions-key": key}, method=method)


@pytest.fixture(scope="module")
def api(services: Services) -> Iterator[KeyedApi]:
    with serve(services, keys=Keys(function=FUNCTION_KEY, master=MASTER_KEY)) as host:
        yield KeyedApi(host.base_url)


def test_sendability_over_http_equals_the_cli(api: KeyedApi, services: Services) -> None:
    reply = api.call(f"recipients/{quote('Mallory@Fabrikam.com')}/sendability", key=FUNCTION_KEY)
    assert reply.status == 200, reply.body
    body = reply.json
    assert body["sendable"] is True and body["lastHardBounce"]["messageId"] == "msg-09-hard"
    assert body["suppressionList"]["configured"] is True and body["suppressionList"]["listed"] is False
    assert body["managedSuppression"]["likelyActive"] is False
    assert body["recipientDomain"]["recipientDomain"] == "fabrikam.com"
    assert body == cli_json(services, ["sendability", "mallory@fabrikam.com"])


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("recipients/not-an-address/sendability", None, "address"),
        ("recipients/a%22%7C%20take%201@x.com/sendability", None, "address"),
        ("recipients/nina@contoso.com/sendability", {"from": "yesterday"}, "from"),
        (
            "recipients/nina@contoso.com/sendability",
            {"from": "2026-01-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
            None,
        ),
        ("recipients/nina@contoso.com/sendability", {"top": "5"}, "top"),
    ],
)
def test_sendability_bad_input_is_400_without_echo(
    api: KeyedApi, path: str, params: dict[str, str] | None, parameter: str | None
) -> None:
    body = assert_problem(api.call(path, params, key=FUNCTION_KEY), 400, parameter)
    assert "take 1" not in json.dumps(body)


def test_sendability_needs_a_key(api: KeyedApi) -> None:
    assert api.get("recipients/nina@contoso.com/sendability").status == 401


def test_removal_needs_the_admin_key_and_records_who_asked(
    api: KeyedApi, services: Services, standin: ArmSuppressionStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert services.suppression_list is not None
    services.suppression_list.add("grace@contoso.com", "manual")
    path = f"suppressions/{quote('Grace@Contoso.com')}"
    params = {"requestedBy": "ticket 4711"}
    assert api.call(path, params, key=FUNCTION_KEY, method="DELETE").status == 401  # a function key is not enough
    assert address_id("grace@contoso.com") in standin.entries()
    reply = api.call(path, params, key=MASTER_KEY, method="DELETE")
    assert reply.status == 200, reply.body
    body = reply.json
    assert [entry["addressId"] for entry in body["removed"]] == [address_id("grace@contoso.com")]
    assert body["requestedBy"] == "ticket 4711" and "managed suppression" in body["note"]
    assert address_id("grace@contoso.com") not in standin.entries()
    record = services.suppression_records.get(address_id("grace@contoso.com"))
    assert record is not None and record["RemovedBy"] == "ticket 4711"
    again = assert_problem(api.call(path, params, key=MASTER_KEY, method="DELETE"), 404)
    assert "grace" not in json.dumps(again).lower()
    assert "grace" not in caplog.text.lower() and "4711" not in caplog.text


@pytest.mark.parametrize(
    ("params", "parameter"),
    [({}, "requestedBy"), ({"requestedBy": "  "}, "requestedBy"), ({"requestedBy": "a\nb"}, "requestedBy")],
)
def test_removal_bad_input_is_400(api: KeyedApi, params: dict[str, str], parameter: str) -> None:
    assert_problem(api.call("suppressions/grace@contoso.com", params, key=MASTER_KEY, method="DELETE"), 400, parameter)
    assert_problem(api.call("suppressions/nope", {"requestedBy": "x"}, key=MASTER_KEY, method="DELETE"), 400, "address")


def test_removal_while_arm_throttles_is_503_with_retry_after(api: KeyedApi, standin: ArmSuppressionStandIn) -> None:
    standin.script(Throttle(retry_after=300))
    reply = api.call("suppressions/heidi@contoso.com", {"requestedBy": "x"}, key=MASTER_KEY, method="DELETE")
    body = assert_problem(reply, 503)
    assert reply.headers.get("retry-after") == "300" and "heidi" not in json.dumps(body)


def test_removal_without_a_list_is_404_and_sendability_says_unconfigured(semantic_insights: Insights) -> None:
    bare = Services(settings(suppression_list_id=None), insights=semantic_insights)
    with serve(bare) as host:
        api = Api(host.base_url)
        body = assert_problem(api.get("suppressions/x@contoso.com", {"requestedBy": "x"}, method="DELETE"), 404)
        assert "SUPPRESSION_LIST_ID" in body["detail"]
        answer = api.get("recipients/x@contoso.com/sendability").json
        assert answer["suppressionList"]["configured"] is False and answer["sendable"] is True


def test_a_malformed_list_id_leaves_sendability_answering(semantic_insights: Insights) -> None:
    broken = Services(settings(suppression_list_id="/subscriptions/nope"), insights=semantic_insights)
    out = io.StringIO()
    assert cli.run(["sendability", "mallory@fabrikam.com"], out, services=broken) == 0
    answer = json.loads(out.getvalue())
    assert answer["partial"] is True and "SUPPRESSION_LIST_ID" in answer["suppressionList"]["error"]


def test_cli_removal_and_bad_input(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    assert services.suppression_list is not None
    services.suppression_list.add("ivan@fabrikam.com", "manual")
    body = cli_json(services, ["unsuppress", "IVAN@fabrikam.com", "--requested-by", "ops"])
    assert body["removed"][0]["addressId"] == address_id("ivan@fabrikam.com")
    assert cli.run(["unsuppress", "nope", "--requested-by", "ops"], io.StringIO(), services=services) == 2
    assert cli.run(["unsuppress", "ivan@fabrikam.com"], io.StringIO(), services=services) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "nope" not in err


def test_cli_runs_the_timer(services: Services, standin: ArmSuppressionStandIn) -> None:
    body = cli_json(services, ["suppress-bounces"])
    assert body["configured"] is True and body["stopped"] is None
    assert (body["candidates"], body["added"]) == (2, 2)  # bob and judy: their sends are in the last 72 h


def test_the_routes_and_the_timer_are_declared_once() -> None:
    from shared.api.spec import OPERATIONS_BY_NAME, TRIGGERS

    assert OPERATIONS_BY_NAME["remove_suppression"].auth == "admin"
    assert OPERATIONS_BY_NAME["get_recipient_sendability"].auth == "function"
    assert "suppress_hard_bounces" in {trigger.name for trigger in TRIGGERS}
