"""Results per mailbox provider (shared/providers/catalog.json): delivery, bounce and spam rates, latency and the
most frequent failure codes, over the send window like every other aggregate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.codes import explain_enhanced, explain_smtp
from shared.deliverability.models import (
    TOP_PROVIDER_CODES,
    ProviderFailureCode,
    ProviderStats,
    ProviderStatsParams,
    ProviderStatsResult,
)
from shared.insights import Insights, _partial
from shared.kql import deliverability as kql
from shared.kql.builder import Filters


def _rate(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _details(record: Mapping[str, Any]) -> str | None:
    """What the code means (the code catalog: the enhanced code, else the SMTP code); null without a code."""
    enhanced, smtp = _text(record.get("EnhancedSmtpStatusCode")), _text(record.get("SmtpStatusCode"))
    info = explain_enhanced(enhanced)
    if info.matched == "unknown":
        info = explain_smtp(smtp)
    return None if info.matched == "unknown" else info.meaning


def _stats(record: Mapping[str, Any], codes: list[ProviderFailureCode]) -> ProviderStats:
    recipients = int(record.get("Recipients") or 0)
    delivered, bounced = int(record.get("Delivered") or 0), int(record.get("Bounced") or 0)
    hard, spam = int(record.get("HardBounces") or 0), int(record.get("Spam") or 0)
    return ProviderStats(
        provider=str(record.get("MailboxProvider") or ""),
        recipients=recipients,
        delivered=delivered,
        delivery_rate=_rate(delivered, recipients),
        bounced=bounced,
        bounce_rate=_rate(bounced, recipients),
        hard_bounces=hard,
        hard_bounce_rate=_rate(hard, recipients),
        spam=spam,
        spam_rate=_rate(spam, recipients),
        p50_latency_seconds=record.get("P50LatencySeconds"),
        p95_latency_seconds=record.get("P95LatencySeconds"),
        top_failure_codes=codes,
    )


def provider_stats(insights: Insights, params: ProviderStatsParams) -> ProviderStatsResult:
    query = kql.build_provider_stats_query(Filters.from_scope(params), insights.send_window(params))
    result = insights.source.run(query)
    providers: list[dict[str, Any]] = []
    codes: dict[str, list[ProviderFailureCode]] = {}
    for record in result.records():
        if record.get("RowKind") == "provider":
            providers.append(record)
        elif record.get("RowKind") == "code":
            codes.setdefault(str(record.get("MailboxProvider") or ""), []).append(
                ProviderFailureCode(
                    final_delivery_status=_text(record.get("FinalDeliveryStatus")),
                    smtp_status_code=_text(record.get("SmtpStatusCode")),
                    enhanced_smtp_status_code=_text(record.get("EnhancedSmtpStatusCode")),
                    enhanced_smtp_status_code_details=_details(record),
                    count=int(record.get("Count") or 0),
                )
            )
    value = []
    for record in sorted(providers, key=lambda r: (-int(r.get("Recipients") or 0), str(r.get("MailboxProvider")))):
        name = str(record.get("MailboxProvider") or "")
        top = sorted(
            codes.get(name, []),
            key=lambda c: (
                -c.count,
                c.final_delivery_status or "",
                c.enhanced_smtp_status_code or "",
                c.smtp_status_code or "",
            ),
        )
        value.append(_stats(record, top[:TOP_PROVIDER_CODES]))
    return ProviderStatsResult(value=value[: params.top], **_partial(result))
