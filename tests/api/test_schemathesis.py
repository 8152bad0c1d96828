"""Property-based API tests: schemathesis drives the real app (LocalHost) from its own OpenAPI 3.1 document.

Every operation but the admin-only recompute (it needs the summary table store) gets a bounded,
derandomized run of generated requests, positive and negative; each answer must not be a server
error and must conform to the document (status code, content type, body schema, headers). The
app reads a small sample DuckDB log store built in a temporary folder; no Table Storage is
configured, so the summary route must answer its documented 503 problem+json (never a 500).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.api.openapi import openapi_document
from shared.api.spec import OPERATIONS
from shared.services import Services

from apphost import serve
from apphost import settings as app_settings

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

#: Generated requests per operation (positive / negative). 2 cores: the whole module stays well under 2 minutes.
POSITIVE_EXAMPLES = 40
NEGATIVE_EXAMPLES = 15
#: Operations whose 503 is a documented answer here: no summary (or subscriptions, or state) table store is configured.
MAY_BE_UNAVAILABLE = {
    "listDailySummaries": "application/problem+json",
    "getDailyReport": "application/problem+json",
    "health": "application/json",
    "createSubscription": "application/problem+json",
    "deleteSubscription": "application/problem+json",
    "registerMessage": "application/problem+json",
    # No ACS is configured here (ACS_ENDPOINT / ACS_CONNECTION_STRING): valid sends answer 503, nothing is sent.
    "sendMessage": "application/problem+json",
}
#: Admin-only, and it writes to the summary table store (Azurite): not fuzzed here.
NOT_FUZZED = {"recomputeDailySummary"}
FUZZED = [op.operation_id for op in OPERATIONS if op.operation_id not in NOT_FUZZED]


def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """``not_a_server_error``, except the documented 503 of an operation that needs an unconfigured store."""
    expected_type = MAY_BE_UNAVAILABLE.get(case.operation.definition.raw.get("operationId", ""))
    if response.status_code == 503 and expected_type is not None:
        assert response.headers.get("content-type", [""])[0].startswith(expected_type), response.headers
        return None
    return not_a_server_error(ctx, response, case)


def rejects_negative_data(ctx: Any, response: Any, case: Any) -> bool | None:
    """``negative_data_rejection``, counting the documented 414 (a generated URL longer than the host takes) as a
    rejection too: schemathesis' default list of rejecting statuses does not hold it."""
    if response.status_code == 414:
        assert "414" in case.operation.definition.raw["responses"], case.operation.label
        return None
    return negative_data_rejection(ctx, response, case)


CHECKS = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    rejects_negative_data,
]


@dataclass
class Served:
    schema: Any
    base_url: str
    message_ids: list[str]
    #: from/to query values covering the whole sample.
    window: dict[str, str]


def _build_store(path: Path) -> tuple[list[str], dict[str, str]]:
    from local.sample import fill_store, window
    from local.store import open_store

    # Sends of yesterday and the day before (all in the past): the default window (the last 24 h) holds some.
    end = datetime.now(UTC).date() - timedelta(days=1)
    start, stop = window(2, end)
    con = open_store(path)
    try:
        fill_store(con, messages=200, days=2, seed=1, end=end)
        rows = con.execute(
            'SELECT DISTINCT "CorrelationId" FROM "ACSEmailSendMailOperational" ORDER BY 1 LIMIT 5'
        ).fetchall()
    finally:
        con.close()
    sample_window = {"from": start.isoformat() + "Z", "to": (stop + timedelta(days=1)).isoformat() + "Z"}
    return [row[0] for row in rows], sample_window


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    store = tmp_path_factory.mktemp("schemathesis") / "acs-logs.duckdb"
    ids, sample_window = _build_store(store)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACS_LOCAL_STORE", str(store))
        mp.delenv("LOG_ANALYTICS_WORKSPACE_ID", raising=False)
        for key in list(os.environ):  # no summary table store: its routes must answer 503
            if key.startswith(("AzureWebJobsStorage", "SUMMARY_STORAGE")):
                mp.delenv(key)
        services = Services(
            app_settings(local_store=str(store), workspace_id=None, acs_endpoint=None, acs_connection_string=None)
        )
        try:
            with serve(services) as host:
                base_url = host.base_url + "/api"
                schema = schemathesis.openapi.from_dict(openapi_document(server_url=base_url))
                yield Served(schema, base_url, ids, sample_window)
        finally:
            services.close()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def _fuzz(served: Served, session: requests.Session, operation_id: str, mode: GenerationMode, examples: int) -> None:
    operation = served.schema.find_operation_by_id(operation_id)

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        print_blob=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.call_and_validate(base_url=served.base_url, session=session, checks=CHECKS)

    run()


@pytest.mark.parametrize("operation_id", FUZZED)
def test_generated_requests(served: Served, session: requests.Session, operation_id: str) -> None:
    _fuzz(served, session, operation_id, GenerationMode.POSITIVE, POSITIVE_EXAMPLES)


@pytest.mark.parametrize(
    "operation_id",
    [op.operation_id for op in OPERATIONS if op.operation_id in FUZZED and op.params is not None],
)
def test_invalid_requests(served: Served, session: requests.Session, operation_id: str) -> None:
    _fuzz(served, session, operation_id, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES)


def _call(
    served: Served, session: requests.Session, operation_id: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> Any:
    case = served.schema.find_operation_by_id(operation_id).Case(**kwargs)
    # Headers go to the call: with a session, schemathesis 4.32 lets the session's defaults win over Case headers.
    return case.call_and_validate(base_url=served.base_url, session=session, headers=headers, checks=CHECKS)


def test_known_messages_trace_and_conform(served: Served, session: requests.Session) -> None:
    """Random ids are never logged: trace real ones (200 final / 202 pending) against the documented schema."""
    assert served.message_ids
    for message_id in served.message_ids:
        response = _call(served, session, "traceMessage", path_parameters={"messageId": message_id})
        assert response.status_code in (200, 202), response.text
        assert response.json()["messageId"] == message_id
    missing = _call(served, session, "traceMessage", path_parameters={"messageId": "not-logged-anywhere"})
    assert missing.status_code == 404 and missing.headers["retry-after"] == ["60"]


def test_search_pages_conform(served: Served, session: requests.Session) -> None:
    first = _call(served, session, "searchMessages", query={**served.window, "top": 7})
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["value"]) == 7 and page["nextLink"].startswith(served.base_url + "/messages?")
    second = _call(
        served,
        session,
        "searchMessages",
        query={**served.window, "top": 7, "continuationToken": page["continuationToken"]},
    )
    assert second.status_code == 200, second.text
    assert {r["messageId"] + r["recipientId"] for r in second.json()["value"]}.isdisjoint(
        {r["messageId"] + r["recipientId"] for r in page["value"]}
    )


@pytest.mark.parametrize("kind", ["domains", "senders", "mail-servers", "latency", "failures", "sizes"])
def test_every_stats_kind_conforms(served: Served, session: requests.Session, kind: str) -> None:
    response = _call(served, session, "getStats", path_parameters={"kind": kind}, query={**served.window, "bin": "15m"})
    assert response.status_code == 200, response.text
    assert response.json()["value"], kind


def test_bounces_json_and_csv_conform(served: Served, session: requests.Session) -> None:
    as_json = _call(served, session, "listBounces", query={**served.window, "top": 5})
    assert as_json.status_code == 200 and as_json.json()["value"]
    as_csv = _call(served, session, "listBounces", query={**served.window, "format": "csv", "top": 5})
    assert as_csv.status_code == 200 and as_csv.headers["content-type"][0].startswith("text/csv")
    assert as_csv.text.count("\r\n") == 1 + len(as_json.json()["value"])
    by_accept = _call(served, session, "listBounces", query=served.window, headers={"Accept": "text/csv"})
    assert by_accept.headers["content-type"][0].startswith("text/csv"), by_accept.request.headers
