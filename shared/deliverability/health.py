"""Sender health: per sender domain (and sender) the failure, hard-bounce and spam rates of a window and the one
before it, and a verdict about reputation (``ok`` / ``watch`` / ``atRisk``) with its reasons in words.

The verdict applies ``HealthThresholds.rules()`` (the HEALTH_* settings): the first atRisk rule met makes a domain
atRisk, else the first watch rule makes it watch; with fewer than ``min_recipients`` recipients an atRisk is
only a watch (a handful of sends proves nothing). The alert rule's KQL renders the same rules
(``shared.kql.deliverability.verdict_expression``); a test holds the two to one answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from shared.deliverability.models import (
    FAILURE_RATE_BAR_PERCENT,
    DomainHealth,
    HealthRates,
    HealthThresholdsOut,
    SenderHealth,
    SenderHealthParams,
    SenderHealthResult,
    Verdict,
)
from shared.insights import Insights, _partial
from shared.kql import deliverability as kql
from shared.kql.builder import Filters
from shared.kql.query import KqlQuery
from shared.settings import HealthThresholds

_ORDER: dict[Verdict, int] = {"ok": 0, "watch": 1, "atRisk": 2}
_WORDS = {"HardBounceRate": "hard-bounce rate", "SpamRate": "spam / quarantine rate", "FailureRate": "failure rate"}
_COUNTS = ("recipients", "delivered", "hard_bounces", "spam")


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def rates(counts: Mapping[str, int]) -> HealthRates:
    recipients, delivered = counts.get("recipients", 0), counts.get("delivered", 0)
    hard, spam = counts.get("hard_bounces", 0), counts.get("spam", 0)
    return HealthRates(
        recipients=recipients,
        delivered=delivered,
        failures=recipients - delivered,
        hard_bounces=hard,
        spam=spam,
        failure_rate=_percent(recipients - delivered, recipients),
        hard_bounce_rate=_percent(hard, recipients),
        spam_rate=_percent(spam, recipients),
    )


def _metric(current: HealthRates, metric: str) -> float | None:
    unrounded = {
        "HardBounceRate": (current.hard_bounces, current.recipients),
        "SpamRate": (current.spam, current.recipients),
        "FailureRate": (current.failures, current.recipients),
    }[metric]
    part, whole = unrounded
    return 100.0 * part / whole if whole else None


def judge(current: HealthRates, previous: HealthRates, thresholds: HealthThresholds) -> tuple[Verdict, list[str]]:
    """The verdict on one window's rates, and the reasons in words (each rule met, with the previous window)."""
    verdict: Verdict = "ok"
    reasons: list[str] = []
    said: set[str] = set()
    for rule in thresholds.rules():  # atRisk rules first: a metric is named once, at its highest level
        value = _metric(current, rule.metric)
        if value is None or value < rule.percent or rule.metric in said:
            continue
        said.add(rule.metric)
        before = _metric(previous, rule.metric)
        trend = f" (previous window {before:.2f} %)" if before is not None else " (no sends in the previous window)"
        level = "at risk" if rule.verdict == "atRisk" else "watch"
        reasons.append(
            f"{_WORDS[rule.metric]} {value:.2f} % is at or above the {level} level of {rule.percent:g} %{trend}"
        )
        if _ORDER[rule.verdict] > _ORDER[verdict]:
            verdict = rule.verdict
    if verdict == "atRisk" and current.recipients < thresholds.min_recipients:
        verdict = "watch"
        reasons.append(
            f"only {current.recipients} recipients with a final status (fewer than {thresholds.min_recipients}): "
            "too few to call it at risk"
        )
    return verdict, reasons


def _entry(
    counts: Mapping[str, Mapping[str, int]], thresholds: HealthThresholds, **names: str | None
) -> dict[str, Any]:
    current, previous = rates(counts.get("current", {})), rates(counts.get("previous", {}))
    verdict, reasons = judge(current, previous, thresholds)
    under = None if current.failure_rate is None else current.failure_rate < FAILURE_RATE_BAR_PERCENT
    return {
        **names,
        "current": current,
        "previous": previous,
        "failure_rate_under_bar": under,
        "verdict": verdict,
        "reasons": reasons,
    }


def _add(into: dict[str, dict[str, int]], period: str, record: Mapping[str, Any]) -> None:
    totals = into.setdefault(period, dict.fromkeys(_COUNTS, 0))
    for key, column in zip(_COUNTS, ("Recipients", "Delivered", "HardBounces", "Spam"), strict=True):
        totals[key] += int(record.get(column) or 0)


def assemble_health(records: Iterable[Mapping[str, Any]], thresholds: HealthThresholds) -> list[DomainHealth]:
    """Rows per (period, sender domain, username) -> one entry per sender domain with its senders, worst first."""
    domains: dict[str, dict[str, dict[str, int]]] = {}
    senders: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for record in records:
        domain = str(record.get("SenderDomain") or "")
        username = str(record.get("SenderUsername") or "")
        period = str(record.get("Period"))
        _add(domains.setdefault(domain, {}), period, record)
        _add(senders.setdefault(domain, {}).setdefault(username, {}), period, record)
    value = []
    for domain, counts in domains.items():
        entry = DomainHealth(**_entry(counts, thresholds, sender_domain=domain or None))
        entry.senders = sorted(
            (
                SenderHealth(
                    **_entry(c, thresholds, sender=f"{user}@{domain}" if domain else user, sender_domain=domain or None)
                )
                for user, c in senders[domain].items()
            ),
            key=lambda s: (-_ORDER[s.verdict], -s.current.recipients, s.sender or ""),
        )
        value.append(entry)
    value.sort(key=lambda d: (-_ORDER[d.verdict], -d.current.recipients, d.sender_domain or ""))
    return value


def thresholds_out(thresholds: HealthThresholds) -> HealthThresholdsOut:
    return HealthThresholdsOut(
        hard_bounce_watch_percent=thresholds.hard_bounce_watch,
        hard_bounce_at_risk_percent=thresholds.hard_bounce_at_risk,
        spam_watch_percent=thresholds.spam_watch,
        spam_at_risk_percent=thresholds.spam_at_risk,
        failure_watch_percent=thresholds.failure_watch,
        min_recipients=thresholds.min_recipients,
    )


def health_query(insights: Insights, params: SenderHealthParams, now: datetime | None = None) -> KqlQuery:
    """The query of the window [start, end) and the one as long before it."""
    start, end = params.window_bounds(now or insights.clock())
    window = insights.window(start - (end - start), end)
    return kql.build_sender_health_query(Filters.from_scope(params), window, current_start=start)


def sender_health(insights: Insights, params: SenderHealthParams, thresholds: HealthThresholds) -> SenderHealthResult:
    now = insights.clock()
    start, end = params.window_bounds(now)
    result = insights.source.run(health_query(insights, params, now))
    value = assemble_health(result.records(), thresholds)
    worst: Verdict = max((d.verdict for d in value), key=_ORDER.__getitem__, default="ok")
    return SenderHealthResult(
        from_=start,
        to=end,
        previous_from=start - (end - start),
        verdict=worst,
        thresholds=thresholds_out(thresholds),
        value=value,
        **_partial(result),
    )
