"""Suppression control (issue 18, part 3), against real parts: ``azure-mgmt-communication`` 3.0.0 talking HTTP to a
loopback stand-in of the ARM suppression-list endpoints (tests/support/arm_standin.py), the records in Azurite, the
semantics fixture's hard bounces in DuckDB (EXPECTED.md: mallory 550 5.1.1 reported on 2026-03-09 08:00:02 then
Suppressed; bob 550 5.1.1 reported; judy 550 5.1.1 inferred; leo and ivan soft; kim unknown)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from arm_standin import LIST_PATH, SUBSCRIPTION, TOKEN, ArmSuppressionStandIn, Failure, Throttle
from azure.core.credentials import AccessToken

from local.embedded import DuckDbSource, embedded_kusto_schema
from shared import deadline
from shared.errors import Conflict
from shared.insights import Insights
from shared.kql.sendability import build_domain_results_query
from shared.models import BounceRow, RecipientMessage, StatsParams
from shared.suppression import arm
from shared.suppression.arm import (
    SuppressionList,
    SuppressionListId,
    SuppressionListRefused,
    SuppressionListUnavailable,
    SuppressionListUnset,
    address_id,
)
from shared.suppression.models import SendabilityParams
from shared.suppression.records import SuppressionRecords
from shared.suppression.removal import remove_suppression
from shared.suppression.sendability import LEASES, managed_lease, sendability
from shared.suppression.sync import suppressible, sync_hard_bounces

from conftest import FIXTURE_NOW
from kusto_check import assert_valid_kql


class StaticCredential:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture
def standin() -> Iterator[ArmSuppressionStandIn]:
    with ArmSuppressionStandIn() as server:
        yield server


@pytest.fixture
def credential() -> StaticCredential:
    return StaticCredential()


@pytest.fixture
def suppression_list(standin: ArmSuppressionStandIn, credential: StaticCredential) -> Iterator[SuppressionList]:
    client = SuppressionList.of(LIST_PATH, credential=credential, endpoint=standin.endpoint, retry_backoff_factor=0.01)
    yield client
    client.close()


@pytest.fixture
def records(azurite_connection_string: str) -> Iterator[SuppressionRecords]:
    store = SuppressionRecords.from_connection_string(azurite_connection_string, "Supp" + uuid.uuid4().hex[:12])
    yield store
    store.client.delete_table()
    store.close()


def emails(standin: ArmSuppressionStandIn) -> dict[str, str]:
    return {key: entry["properties"]["email"] for key, entry in standin.entries().items()}


# --------------------------------------------------------------------------- the ARM client (real SDK)


def test_address_id_is_deterministic_in_any_case_and_fits_the_name_rule() -> None:
    first = address_id("Mallory@Fabrikam.COM")
    assert first == address_id(" mallory@fabrikam.com ") and first != address_id("mallory2@fabrikam.com")
    assert len(first) <= 253 and all(ch.isalnum() or ch == "-" for ch in first)
    assert "mallory" not in first


def test_adding_twice_writes_one_resource_with_the_properties_body(
    standin: ArmSuppressionStandIn, suppression_list: SuppressionList, credential: StaticCredential
) -> None:
    suppression_list.add("Mallory@fabrikam.com", "hard bounce")
    suppression_list.add("mallory@FABRIKAM.com", "hard bounce again")
    puts = standin.calls("PUT")
    assert [put.status for put in puts] == [201, 200]
    assert puts[0].body == {"properties": {"email": "Mallory@fabrikam.com", "notes": "hard bounce"}}
    assert puts[0].query["api-version"] == ["2025-09-01"]
    assert puts[0].path.endswith("/suppressionListAddresses/" + address_id("mallory@fabrikam.com"))
    assert len(standin.entries()) == 1
    assert credential.scopes[0] == ("https://management.azure.com/.default",)
    found = suppression_list.get("MALLORY@fabrikam.com")
    assert found is not None and found.ours and found.notes == "hard bounce again" and found.since is not None


def test_lookup_by_email_finds_entries_others_added_across_pages(
    standin: ArmSuppressionStandIn, suppression_list: SuppressionList
) -> None:
    standin.page_size = 2
    for index in range(7):
        standin.seed(f"aaaa{index:04d}-bbbb-cccc-dddd-eeeeffff0000", f"other{index}@contoso.com")
    standin.seed("11112222-3333-4444-5555-aaaabbbbcccc", "Grace@Contoso.com")
    lookup = suppression_list.find("grace@contoso.com")
    assert lookup.complete and [e.address_id for e in lookup.entries] == ["11112222-3333-4444-5555-aaaabbbbcccc"]
    assert not lookup.entries[0].ours
    pages = [r for r in standin.calls("GET") if r.path.endswith("/suppressionListAddresses")]
    assert len(pages) == 4  # 8 entries, 2 a page, the nextLink followed
    assert suppression_list.find("nobody@contoso.com").entries == ()


def test_a_listing_longer_than_the_page_bound_says_it_is_incomplete(
    standin: ArmSuppressionStandIn, suppression_list: SuppressionList, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(arm, "MAX_SCAN_PAGES", 2)
    standin.page_size = 1
    for index in range(4):
        standin.seed(f"id-{index}", f"x{index}@contoso.com")
    lookup = suppression_list.find("x3@contoso.com")
    assert not lookup.complete and lookup.entries == ()


def test_409_for_an_email_listed_under_another_id_is_already_suppressed(
    standin: ArmSuppressionStandIn, suppression_list: SuppressionList
) -> None:
    standin.seed("11112222-3333-4444-5555-aaaabbbbcccc", "bob@fabrikam.com")
    entry = suppression_list.add("bob@fabrikam.com", "hard bounce")
    assert entry.address_id == "11112222-3333-4444-5555-aaaabbbbcccc"
    assert [put.status for put in standin.calls("PUT")] == [409]
    assert len(standin.entries()) == 1


def test_409_without_such_an_entry_is_a_conflict(
    standin: ArmSuppressionStandIn, suppression_list: SuppressionList
) -> None:
    standin.script(Failure(409, "Conflict"))
    with pytest.raises(Conflict) as caught:
        suppression_list.add("carol@contoso.com", "hard bounce")
    assert caught.value.status == 409 and "carol" not in caught.value.detail


def test_429_with_a_short_retry_after_is_retried(
    standin: ArmSuppressionStandIn, suppression_list: SuppressionList
) -> None:
    standin.script(Throttle(retry_after=1))
    started = time.monotonic()
    suppression_list.add("carol@contoso.com", "hard bounce")
    assert time.monotonic() - started >= 0.9  # Retry-After honoured
    assert [put.status for put in standin.calls("PUT")] == [429, 201]


def test_429_with_a_long_retry_after_answers_at_once_with_it(
    standin: ArmSuppressionStandIn, suppression_list: SuppressionList
) -> None:
    standin.script(Throttle(retry_after=120))
    started = time.monotonic()
    with pytest.raises(SuppressionListUnavailable) as caught:
        suppression_list.add("carol@contoso.com", "hard bounce")
    assert time.monotonic() - started < 5
    assert caught.value.status == 503 and caught.value.retry_after == 120.0
    assert "429" in caught.value.detail and "carol" not in caught.value.detail
    assert len(standin.calls("PUT")) == 1


def test_a_retry_after_beyond_the_request_budget_is_not_waited_for(
    standin: ArmSuppressionStandIn, suppression_list: SuppressionList
) -> None:
    standin.script(Throttle(retry_after=4))  # within MAX_RETRY_AFTER_SECONDS, beyond the budget below
    started = time.monotonic()
    with deadline.budget(3), pytest.raises(SuppressionListUnavailable) as caught:
        suppression_list.get("carol@contoso.com")
    assert time.monotonic() - started < 2 and caught.value.retry_after == 4.0


def test_404_of_the_list_and_of_an_address(standin: ArmSuppressionStandIn, credential: StaticCredential) -> None:
    missing = SuppressionList.of(
        LIST_PATH.replace("/bounces", "/nosuchlist"), credential=credential, endpoint=standin.endpoint
    )
    with pytest.raises(SuppressionListRefused) as caught:
        missing.add("carol@contoso.com", "hard bounce")
    assert caught.value.status == 502 and "404" in caught.value.detail and "does not exist" in caught.value.detail
    present = SuppressionList.of(LIST_PATH, credential=credential, endpoint=standin.endpoint)
    assert present.get("carol@contoso.com") is None  # an address 404 is "not listed"
    assert present.remove("carol@contoso.com").entries == ()


def test_a_refused_token_and_a_forbidden_identity_are_502_without_the_address(standin: ArmSuppressionStandIn) -> None:
    wrong = SuppressionList.of(LIST_PATH, credential=StaticCredential("forged"), endpoint=standin.endpoint)
    with pytest.raises(SuppressionListRefused) as caught:
        wrong.add("carol@contoso.com", "hard bounce")
    assert "401" in caught.value.detail and "carol" not in caught.value.detail
    standin.script(Failure(403, "AuthorizationFailed"))
    right = SuppressionList.of(LIST_PATH, credential=StaticCredential(), endpoint=standin.endpoint)
    with pytest.raises(SuppressionListRefused) as caught:
        right.get("carol@contoso.com")
    assert "403 AuthorizationFailed" in caught.value.detail and "role" in caught.value.detail


@pytest.mark.parametrize(
    "setting",
    [
        "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Communication/emailServices/e/domains/d/suppressionLists/l",
        LIST_PATH + "/suppressionListAddresses/abc",
        LIST_PATH.replace("emailServices", "communicationServices"),
        LIST_PATH + "'; drop",
    ],
)
def test_a_malformed_list_id_is_refused(setting: str) -> None:
    with pytest.raises(SuppressionListRefused):
        SuppressionList.of(setting)


def test_an_unset_list_id_and_plain_http_beyond_loopback() -> None:
    with pytest.raises(SuppressionListUnset):
        SuppressionList.of("  ")
    with pytest.raises(SuppressionListRefused):
        SuppressionList.of(LIST_PATH, endpoint="http://management.example.com")
    parsed = SuppressionListId.parse(LIST_PATH)
    assert parsed.subscription_id == SUBSCRIPTION
    assert parsed.path() == ("rg-mail", "mail-svc", "notify.contoso.com", "bounces")


# --------------------------------------------------------------------------- the timer


def _row(**fields: Any) -> BounceRow:
    base: dict[str, Any] = {
        "recipient_id": "x@contoso.com",
        "recipient_domain": "contoso.com",
        "bounce_type": "Hard Bounce",
        "bounce_type_source": "inferred",
        "bounce_count": 1,
        "first_bounce_time": FIXTURE_NOW,
        "last_bounce_time": FIXTURE_NOW,
        "last_message_id": "m",
        "smtp_status_code": "550",
        "enhanced_smtp_status_code": "5.1.1",
        "enhanced_smtp_status_code_details": None,
        "failure_category": None,
        "failure_reason": None,
        "last_status": "Bounced",
    }
    return BounceRow.model_validate({**base, **fields})


def test_suppressible_means_reported_hard_or_inferred_5_1_x() -> None:
    assert suppressible(_row(bounce_type_source="reported", enhanced_smtp_status_code="5.7.1"))
    assert suppressible(_row(enhanced_smtp_status_code="5.1.10"))
    assert not suppressible(_row(enhanced_smtp_status_code="5.7.1"))  # policy: nothing certain about the address
    assert not suppressible(_row(enhanced_smtp_status_code=None))  # a bare 550
    assert not suppressible(_row(bounce_type="Soft Bounce", bounce_type_source="reported"))


LOOKBACK = timedelta(days=4)


def test_the_timer_adds_each_hard_bounce_once(
    semantic_insights: Insights,
    standin: ArmSuppressionStandIn,
    suppression_list: SuppressionList,
    records: SuppressionRecords,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    run = sync_hard_bounces(semantic_insights, suppression_list, records, now=FIXTURE_NOW, lookback=LOOKBACK)
    assert (run.candidates, run.added, run.already_listed) == (3, 3, 0)
    assert sorted(emails(standin).values()) == ["bob@fabrikam.com", "judy@fabrikam.com", "mallory@fabrikam.com"]
    assert set(emails(standin)) == {address_id(a) for a in emails(standin).values()}
    record = records.get(address_id("mallory@fabrikam.com"))
    assert record is not None and record["MessageId"] == "msg-09-hard" and record["EnhancedSmtpStatusCode"] == "5.1.1"
    assert "mallory" not in str(record).lower()
    again = sync_hard_bounces(semantic_insights, suppression_list, records, now=FIXTURE_NOW, lookback=LOOKBACK)
    assert (again.added, again.already_listed) == (0, 3)
    assert len(standin.calls("PUT")) == 3  # the rerun wrote nothing to ARM
    notes = standin.entries()[address_id("mallory@fabrikam.com")]["properties"]["notes"]
    assert "550 5.1.1" in notes and "msg-09-hard" in notes
    assert "fabrikam" not in caplog.text


def test_the_timer_stops_on_a_throttle_and_the_next_run_finishes(
    semantic_insights: Insights,
    standin: ArmSuppressionStandIn,
    suppression_list: SuppressionList,
    records: SuppressionRecords,
) -> None:
    standin.script(Throttle(retry_after=3600))  # the first PUT is throttled, for longer than a run waits
    run = sync_hard_bounces(semantic_insights, suppression_list, records, now=FIXTURE_NOW, lookback=LOOKBACK)
    assert run.added == 0 and run.stopped is not None and "429" in run.stopped
    assert len(standin.calls("PUT")) == 1
    after = sync_hard_bounces(semantic_insights, suppression_list, records, now=FIXTURE_NOW, lookback=LOOKBACK)
    assert after.added == 3 and after.stopped is None


def test_one_address_arm_refuses_does_not_stop_the_others(
    semantic_insights: Insights,
    standin: ArmSuppressionStandIn,
    suppression_list: SuppressionList,
    records: SuppressionRecords,
) -> None:
    standin.script(Failure(400, "InvalidRequestContent"))  # the first PUT (mallory's, the oldest bounce)
    run = sync_hard_bounces(semantic_insights, suppression_list, records, now=FIXTURE_NOW, lookback=LOOKBACK)
    assert (run.added, run.failed, run.stopped) == (2, 1, None)
    assert sorted(emails(standin).values()) == ["bob@fabrikam.com", "judy@fabrikam.com"]
    assert records.get(address_id("mallory@fabrikam.com")) is None  # not recorded: the next run tries it again


def test_the_timer_bounds_its_writes_per_run(
    semantic_insights: Insights,
    standin: ArmSuppressionStandIn,
    suppression_list: SuppressionList,
    records: SuppressionRecords,
) -> None:
    run = sync_hard_bounces(
        semantic_insights, suppression_list, records, now=FIXTURE_NOW, lookback=LOOKBACK, max_adds=2
    )
    assert run.added == 2 and run.stopped == "at most 2 additions a run"
    # oldest bounce first (mallory 03-09, bob 03-10 10:00): the newest (judy 03-10 16:00) waits for the next run
    assert sorted(emails(standin).values()) == ["bob@fabrikam.com", "mallory@fabrikam.com"]


# --------------------------------------------------------------------------- removal


def test_removal_deletes_every_entry_records_who_asked_and_outranks_older_bounces(
    semantic_insights: Insights,
    standin: ArmSuppressionStandIn,
    suppression_list: SuppressionList,
    records: SuppressionRecords,
) -> None:
    standin.unique_emails = False  # let two entries of one address exist, as a portal user may have made them
    sync_hard_bounces(semantic_insights, suppression_list, records, now=FIXTURE_NOW, lookback=LOOKBACK)
    standin.seed("11112222-3333-4444-5555-aaaabbbbcccc", "MALLORY@fabrikam.com")
    later = FIXTURE_NOW + timedelta(hours=1)
    removal = remove_suppression(
        suppression_list, records, "Mallory@Fabrikam.com", requested_by="ticket 4711", principal=None, now=later
    )
    assert sorted(e.address_id for e in removal.removed) == sorted(
        [address_id("mallory@fabrikam.com"), "11112222-3333-4444-5555-aaaabbbbcccc"]
    )
    assert "mallory@fabrikam.com" not in {v.lower() for v in emails(standin).values()}
    record = records.get(address_id("mallory@fabrikam.com"))
    assert record is not None and record["RemovedBy"] == "ticket 4711" and record["RemovedEntries"] == 2
    # The timer does not put it back for the bounce logged before the removal.
    rerun = sync_hard_bounces(semantic_insights, suppression_list, records, now=later, lookback=LOOKBACK)
    assert rerun.removed_on_request == 1 and rerun.added == 0
    assert "mallory@fabrikam.com" not in emails(standin).values()
    with pytest.raises(Exception) as caught:  # nothing left: 404
        remove_suppression(
            suppression_list, records, "mallory@fabrikam.com", requested_by="x", principal=None, now=later
        )
    assert getattr(caught.value, "status", None) == 404


# --------------------------------------------------------------------------- ACS's managed suppression, estimated


def _message(sent: datetime, *, hard: bool = False, status: str = "Delivered") -> RecipientMessage:
    return RecipientMessage.model_validate(
        {
            "message_id": f"m-{sent.isoformat()}",
            "send_time": sent,
            "final_delivery_status": "Bounced" if hard else status,
            "final_status_time": sent + timedelta(seconds=2),
            "last_event_status": "Bounced" if hard else status,
            "last_event_time": sent + timedelta(seconds=2),
            "hard_bounce": hard,
        }
    )


T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_a_hard_bounce_starts_a_24_hour_lease() -> None:
    lease = managed_lease([_message(T0, hard=True)])
    assert lease is not None
    assert (lease.since, lease.until, lease.renewals) == (
        T0 + timedelta(seconds=2),
        T0 + timedelta(hours=24, seconds=2),
        0,
    )
    assert managed_lease([_message(T0)]) is None


def test_each_send_during_the_lease_doubles_it_up_to_14_days() -> None:
    history = [_message(T0, hard=True)]
    sent = T0 + timedelta(hours=1)
    for _ in range(6):  # each send lands inside the lease the previous one set
        history.append(_message(sent, status="Suppressed"))
        sent += timedelta(hours=20)
    lease = managed_lease(list(reversed(history)))  # any order in: newest first, as the history lists them
    assert lease is not None and lease.renewals == 6
    assert [length.total_seconds() / 3600 for length in LEASES] == [24, 48, 96, 168, 336]
    assert lease.length == timedelta(days=14)  # capped
    assert lease.until == history[-1].send_time + timedelta(days=14)  # type: ignore[operator]


def test_a_send_after_the_lease_ended_does_not_renew_it_and_a_new_bounce_starts_over() -> None:
    history = [_message(T0, hard=True), _message(T0 + timedelta(hours=30))]
    lease = managed_lease(history)
    assert lease is not None and lease.renewals == 0 and lease.until == T0 + timedelta(hours=24, seconds=2)
    history.append(_message(T0 + timedelta(days=3), hard=True))
    lease = managed_lease(history)
    assert lease is not None and lease.since == T0 + timedelta(days=3, seconds=2) and lease.length == LEASES[0]


# --------------------------------------------------------------------------- sendability


@pytest.fixture
def insights_at(semantic_store: Path) -> Iterator[Any]:
    sources: list[DuckDbSource] = []

    def at(now: datetime) -> Insights:
        source = DuckDbSource(semantic_store)
        sources.append(source)
        return Insights(source, clock=lambda: now)

    yield at
    for source in sources:
        source.close()


MALLORY_BOUNCE = datetime(2026, 3, 9, 8, 0, 2, tzinfo=UTC)


def test_sendability_during_the_managed_lease_is_blocked_with_its_end(insights_at: Any) -> None:
    now = MALLORY_BOUNCE + timedelta(hours=12)
    answer = sendability(
        insights_at(now), SendabilityParams(address="Mallory@Fabrikam.com"), suppression_list=None, records=None
    )
    assert not answer.sendable
    assert answer.suppression_list.configured is False
    assert answer.last_hard_bounce is not None and answer.last_hard_bounce.message_id == "msg-09-hard"
    assert answer.last_hard_bounce.enhanced_smtp_status_code == "5.1.1"
    managed = answer.managed_suppression
    assert managed is not None and managed.likely_active and managed.renewals == 1  # msg-10 sent during the lease
    assert managed.lease_hours == 48
    assert answer.reasons[0].kind == "managedSuppression" and answer.reasons[0].blocking
    assert answer.window_to == now and answer.window_from == now - timedelta(days=90)
    domain = answer.recipient_domain
    assert domain is not None and domain.recipient_domain == "fabrikam.com"
    assert domain.total > 0 and domain.hard_bounces >= 1


def test_sendability_after_the_lease_is_sendable_and_names_the_earlier_bounce(
    semantic_insights: Insights,
) -> None:
    answer = sendability(
        semantic_insights, SendabilityParams(address="mallory@fabrikam.com"), suppression_list=None, records=None
    )
    assert answer.sendable  # FIXTURE_NOW 03-12 12:00: the 48 h lease from msg-10 ended on 03-11
    kinds = {reason.kind: reason for reason in answer.reasons}
    assert set(kinds) >= {"earlierHardBounce", "recentlySuppressed"}
    assert not any(reason.blocking for reason in answer.reasons)
    assert "5.1.1" in kinds["earlierHardBounce"].detail
    assert answer.managed_suppression is not None and not answer.managed_suppression.likely_active


def test_sendability_with_our_list_entry_is_blocked_since_it_was_added(
    semantic_insights: Insights, standin: ArmSuppressionStandIn, suppression_list: SuppressionList
) -> None:
    suppression_list.add("nina@contoso.com", "manual")
    answer = sendability(
        semantic_insights,
        SendabilityParams(address="NINA@contoso.com"),
        suppression_list=suppression_list,
        records=None,
    )
    assert not answer.sendable and answer.suppression_list.listed
    assert answer.reasons[0].kind == "customerSuppressionList" and answer.reasons[0].since is not None
    assert answer.suppression_list.entries[0].ours
    clean = sendability(
        semantic_insights,
        SendabilityParams(address="nobody@contoso.com"),
        suppression_list=suppression_list,
        records=None,
    )
    assert clean.sendable and clean.suppression_list.listed is False and clean.messages == 0


def test_sendability_with_the_list_unreachable_still_answers_from_the_logs(
    semantic_insights: Insights, standin: ArmSuppressionStandIn, suppression_list: SuppressionList
) -> None:
    standin.script(Throttle(retry_after=600))
    answer = sendability(
        semantic_insights,
        SendabilityParams(address="mallory@fabrikam.com"),
        suppression_list=suppression_list,
        records=None,
    )
    assert answer.partial and answer.warning is not None and "429" in answer.warning
    assert answer.suppression_list.listed is None and answer.last_hard_bounce is not None
    assert "mallory" not in (answer.warning or "")


# --------------------------------------------------------------------------- the new KQL


def _sendability_queries(insights: Insights) -> list[str]:
    window = insights.window(FIXTURE_NOW - timedelta(days=90), FIXTURE_NOW)
    domains = ["fabrikam.com", "xn--bcher-kva.example", "a-b.c.d.example"]
    return [build_domain_results_query(domain, window).log_analytics_text() for domain in domains]


@pytest.mark.slow  # the Kusto parser: make test runs it, make test-fast does not
def test_the_domain_results_query_passes_the_kusto_language_service(semantic_insights: Insights) -> None:
    queries = _sendability_queries(semantic_insights)
    assert_valid_kql(queries)
    window = semantic_insights.window(FIXTURE_NOW - timedelta(days=90), FIXTURE_NOW)
    query = build_domain_results_query("fabrikam.com", window)
    assert_valid_kql([query.embedded_text()], schema=embedded_kusto_schema())


def test_the_domain_results_count_like_the_domain_statistics(semantic_insights: Insights) -> None:
    window = semantic_insights.window(datetime(2026, 3, 1, tzinfo=UTC), FIXTURE_NOW)
    row = semantic_insights.run_query(build_domain_results_query("fabrikam.com", window)).records()[0]
    stats = semantic_insights.stats(
        "domains",
        StatsParams.model_validate({"from": "2026-03-01T00:00:00Z", "to": FIXTURE_NOW.isoformat(), "top": 1000}),
    )
    fabrikam = next(item for item in stats.value if item["recipientDomain"] == "fabrikam.com")
    assert row["Total"] == fabrikam["total"] and row["HardBounces"] == fabrikam["hardBounces"]
    assert row["Delivered"] == fabrikam["delivered"]
