"""The daily report as one self-contained HTML page, and as plain text.

Mail clients are the narrowest readers (Outlook renders with Word's engine, Gmail strips <style>), so
the page is built the way they need it: nested tables for layout, every style inline, no CSS classes,
no scripts, no web fonts, no external assets. Charts are PNG, either embedded as data: URIs (a page
opened in a browser) or referenced as ``cid:`` (an email with inline attachments). Every text that
came from the logs (domains, failure reasons) is escaped.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from html import escape
from typing import Final, Literal

from shared.models import DailyReport, ReportMetric
from shared.report.charts import Chart, history_chart, latency_chart

ImageMode = Literal["inline-data", "cid"]

FONT: Final = "font-family:Segoe UI,Helvetica,Arial,sans-serif;"
INK: Final = "#1f2328"
MUTED: Final = "#59636e"
RULE: Final = "#d8dee4"
GOOD: Final = "#1a7f37"
BAD: Final = "#c62828"
PAGE_WIDTH: Final = 640


@dataclass(frozen=True)
class RenderedReport:
    subject: str
    html: str
    text: str
    charts: tuple[Chart, ...]


# --------------------------------------------------------------------------- number formats


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "percent":
        return f"{value:.1f}%"
    if unit == "seconds":
        return format_seconds(value)
    return f"{value:,.0f}"


def format_seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s"


def format_change(change: float | None, base: float | None, unit: str) -> str:
    """``+1,234 (+5.2%)`` for counts, ``-0.4 pp`` for percents, ``+1.2 s`` for latency."""
    if change is None:
        return "n/a"
    sign = "\u00b1" if _shown_as_zero(change, unit) else "+" if change > 0 else "\u2212"
    size = abs(change)
    if unit == "percent":
        return f"{sign}{size:.1f} pp"
    if unit == "seconds":
        return f"{sign}{format_seconds(size)}"
    text = f"{sign}{size:,.0f}"
    if base:
        text += f" ({sign}{100 * size / abs(base):.1f}%)"
    return text


def _shown_as_zero(change: float, unit: str) -> bool:
    """A change that its format rounds to zero (0.04 pp shows as 0.0): neither good nor bad news."""
    return abs(change) < (0.5 if unit == "count" else 0.05)


def _tone(metric: ReportMetric, change: float | None) -> str:
    """Green when the change is good news, red when it is bad, grey when there is none to see."""
    if change is None or _shown_as_zero(change, metric.unit):
        return MUTED
    up = change > 0
    return GOOD if up == (metric.better == "higher") else BAD


def _date_label(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


# --------------------------------------------------------------------------- building blocks


def _cell(text: str, style: str = "", *, header: bool = False, align: str = "left") -> str:
    tag = "th" if header else "td"
    weight = "font-weight:600;" if header else ""
    return (
        f'<{tag} align="{align}" style="{FONT}padding:6px 8px;border-bottom:1px solid {RULE};'
        f'font-size:13px;color:{INK};text-align:{align};{weight}{style}">{text}</{tag}>'
    )


def _table(headers: Sequence[tuple[str, str]], rows: Iterable[Sequence[str]]) -> str:
    """A data table; *headers* are (title, align) and each row's cells are already escaped."""
    head = "".join(_cell(escape(title), "background:#f6f8fa;", header=True, align=align) for title, align in headers)
    body = "".join(
        "<tr>" + "".join(_cell(value, align=align) for value, (_, align) in zip(row, headers, strict=True)) + "</tr>"
        for row in rows
    )
    return (
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        f'style="border-collapse:collapse;width:100%;"><tr>{head}</tr>{body}</table>'
    )


def _section(title: str, body: str, note: str = "") -> str:
    note_html = f'<p style="{FONT}margin:0 0 8px 0;font-size:12px;color:{MUTED};">{note}</p>' if note else ""
    return (
        f'<tr><td style="padding:20px 24px 4px 24px;">'
        f'<h2 style="{FONT}margin:0 0 6px 0;font-size:17px;color:{INK};font-weight:600;">{escape(title)}</h2>'
        f"{note_html}{body}</td></tr>"
    )


def _paragraph(text: str) -> str:
    return f'<p style="{FONT}margin:0 0 6px 0;font-size:13px;color:{INK};">{text}</p>'


def _metric_tile(metric: ReportMetric) -> str:
    value = format_value(metric.value, metric.unit)
    day = format_change(metric.change, metric.previous_day, metric.unit)
    week = format_change(metric.change_vs_average, metric.seven_day_average, metric.unit)
    note = (
        f'<div style="{FONT}font-size:11px;color:{MUTED};padding-top:4px;">{escape(metric.note)}</div>'
        if metric.note
        else ""
    )
    return (
        f'<td valign="top" width="25%" style="padding:6px;">'
        f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        f'style="border:1px solid {RULE};border-radius:6px;background:#fbfcfd;">'
        f'<tr><td style="padding:10px 12px;">'
        f'<div style="{FONT}font-size:12px;color:{MUTED};">{escape(metric.label)}</div>'
        f'<div data-metric="{escape(metric.name)}" style="{FONT}font-size:24px;font-weight:600;color:{INK};'
        f'padding:2px 0 4px 0;">{escape(value)}</div>'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">'
        f"{_change_row('vs prev. day', day, _tone(metric, metric.change))}"
        f"{_change_row('vs 7-day avg', week, _tone(metric, metric.change_vs_average))}"
        f"</table>{note}"
        "</td></tr></table></td>"
    )


def _change_row(label: str, change: str, colour: str) -> str:
    return (
        f'<tr><td style="{FONT}font-size:11px;color:{MUTED};padding:1px 0;white-space:nowrap;">{escape(label)}</td>'
        f'<td align="right" style="{FONT}font-size:11px;color:{colour};padding:1px 0 1px 4px;white-space:nowrap;'
        f'text-align:right;">{escape(change)}</td></tr>'
    )


def _metrics(metrics: Sequence[ReportMetric]) -> str:
    rows = []
    for start in range(0, len(metrics), 4):
        tiles = [_metric_tile(metric) for metric in metrics[start : start + 4]]
        tiles += ['<td width="25%" style="padding:6px;"></td>'] * (4 - len(tiles))
        rows.append("<tr>" + "".join(tiles) + "</tr>")
    return (
        '<tr><td style="padding:8px 18px 0 18px;">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">'
        + "".join(rows)
        + "</table></td></tr>"
    )


def _image(chart: Chart, mode: ImageMode) -> str:
    if mode == "cid":
        source = f"cid:{chart.content_id}"
    else:
        source = "data:image/png;base64," + base64.b64encode(chart.png).decode("ascii")
    return (
        f'<img src="{source}" width="{chart.width}" height="{chart.height}" alt="{escape(chart.alt)}" '
        f'style="display:block;width:100%;max-width:{chart.width}px;height:auto;border:0;">'
    )


# --------------------------------------------------------------------------- sections


def _latency_section(report: DailyReport, chart: Chart | None, mode: ImageMode) -> str:
    if not report.domain_latency:
        return _section("Latency by recipient domain", _paragraph("No recipient domain has a final status this day."))
    rows = [
        (
            escape(d.domain or "(unknown)"),
            f"{d.sent:,}",
            format_value(d.delivered_percent, "percent"),
            format_seconds(d.p50_seconds),
            format_seconds(d.p95_seconds),
        )
        for d in report.domain_latency
    ]
    table = _table(
        [("Domain", "left"), ("Final statuses", "right"), ("Delivered", "right"), ("p50", "right"), ("p95", "right")],
        rows,
    )
    image = f'<div style="padding:0 0 10px 0;">{_image(chart, mode)}</div>' if chart is not None else ""
    return _section(
        "Latency by recipient domain",
        image + table,
        f"Top {len(rows)} domains by volume; latency from send to final status.",
    )


def _failures_section(report: DailyReport) -> str:
    if report.completeness.failure_reasons_source == "unavailable":
        return _section("Top failure reasons", _paragraph("Failure reasons could not be read from the logs."))
    if not report.failure_reasons:
        return _section("Top failure reasons", _paragraph("No failed, bounced or suppressed recipients."))
    rows = []
    for reason in report.failure_reasons:
        code = " ".join(c for c in (reason.smtp_status_code, reason.enhanced_smtp_status_code) if c) or "\u2013"
        what = escape(reason.explanation)
        if reason.remedy:
            what += f'<div style="font-size:11px;color:{MUTED};padding-top:2px;">{escape(reason.remedy)}</div>'
        label = escape(reason.failure_reason or reason.final_delivery_status or "\u2013")
        if reason.final_delivery_status and reason.final_delivery_status != reason.failure_reason:
            label += f'<div style="font-size:11px;color:{MUTED};">{escape(reason.final_delivery_status)}</div>'
        rows.append(
            (
                f"{reason.count:,}",
                label,
                escape(code),
                what,
                escape(reason.failure_category or "\u2013"),
            )
        )
    table = _table(
        [("Recipients", "right"), ("Reason", "left"), ("Code", "left"), ("Meaning", "left"), ("Category", "left")],
        rows,
    )
    return _section("Top failure reasons", table, "Codes explained from the SMTP and enhanced status code catalog.")


def _bounces_section(report: DailyReport) -> str:
    hard = report.hard_bounces
    previous = "" if hard.previous_day is None else f" (day before: {hard.previous_day:,})"
    body = _paragraph(
        f'<span data-metric="newHardBounces" style="font-weight:600;">{hard.count:,}</span> '
        f"new hard bounces{escape(previous)}: remove these addresses from your lists."
    )
    if hard.top_domains:
        body += _table(
            [("Domain", "left"), ("Hard bounces", "right")],
            [(escape(d.domain or "(unknown)"), f"{d.count:,}") for d in hard.top_domains],
        )
    return _section("New hard bounces", body)


_VERDICT_STYLE = {"atRisk": ("At risk", "#b42318"), "watch": ("Watch", "#b54708"), "ok": ("OK", "#067647")}


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} %"


def _health_section(report: DailyReport) -> str:
    if not report.sender_health:
        return ""
    rows = []
    for entry in report.sender_health:
        label, colour = _VERDICT_STYLE[entry.verdict]
        verdict = f'<span data-verdict="{entry.verdict}" style="font-weight:600;color:{colour};">{label}</span>'
        rows.append(
            (
                escape(entry.sender_domain or "(unknown)"),
                f"{entry.recipients:,}",
                _percent(entry.failure_rate),
                _percent(entry.hard_bounce_rate),
                _percent(entry.spam_rate),
                verdict,
                escape("; ".join(entry.reasons)) or "-",
            )
        )
    table = _table(
        [
            ("Sender domain", "left"),
            ("Recipients", "right"),
            ("Failure rate", "right"),
            ("Hard bounces", "right"),
            ("Spam / quarantine", "right"),
            ("Verdict", "left"),
            ("Why", "left"),
        ],
        rows,
    )
    return _section(
        "Sender health",
        table,
        "Reputation verdicts as GET /api/senders/health gives them; ACS grants quota increases only under 2 %"
        " failures.",
    )


def _days(days: Sequence[date]) -> str:
    """``2026-11-28`` or ``2026-11-17 to 2026-11-27 (11 days)``."""
    if len(days) == 1:
        return days[0].isoformat()
    return f"{days[0].isoformat()} to {days[-1].isoformat()} ({len(days)} days)"


def _pending_section(report: DailyReport) -> str:
    pending = report.pending
    still = f" of sends on {escape(_days(pending.still_pending_days))}" if pending.still_pending_days else ""
    body = _paragraph(
        f'<span data-metric="stillPending" style="font-weight:600;">{pending.still_pending:,}</span> recipients'
        f"{still} have no final status yet; late status events still count until their status window closes "
        f"(for {report.date.isoformat()}: {escape(_date_label(pending.status_window_closes))})."
    )
    expired = f" of sends on {escape(_days(pending.expired_days))}" if pending.expired_days else ""
    body += _paragraph(
        f'<span data-metric="expired" style="font-weight:600;">{pending.expired:,}</span> recipients{expired} '
        "never got a final status before their window closed (as of each day's latest summary)."
    )
    return _section("Pending and expired", body)


def _completeness_section(report: DailyReport) -> str:
    c = report.completeness
    computed = _date_label(c.summary_computed_at) if c.summary_computed_at else "never"
    lines = [
        f"Summary of the day computed {escape(computed)}"
        + ("; the day is final." if c.day_final else "; late status events may still change it."),
        f"{c.days_summarised} of 14 days have a summary"
        + (f" (missing: {escape(', '.join(d.isoformat() for d in c.missing_days))})." if c.missing_days else "."),
        f"Log queries run for this report: {c.log_queries} (failure reasons"
        + ("" if c.failure_reasons_source == "log" else ", unavailable")
        + ").",
    ]
    lines += [escape(w) for w in c.warnings]
    return _section("How complete the data is", "".join(_paragraph(line) for line in lines))


def _page(report: DailyReport, body: str) -> str:
    day = report.date.strftime("%A %d %B %Y")
    title = f"Email delivery report, {report.date.isoformat()}"
    return (
        "<!DOCTYPE html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title></head>"
        f'<body style="margin:0;padding:0;background:#eef1f4;">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        'style="background:#eef1f4;"><tr><td align="center" style="padding:16px 8px;">'
        f'<table role="presentation" width="{PAGE_WIDTH}" cellpadding="0" cellspacing="0" border="0" '
        f'style="width:100%;max-width:{PAGE_WIDTH}px;background:#ffffff;border:1px solid {RULE};">'
        f'<tr><td style="padding:20px 24px 8px 24px;background:#1f5f99;">'
        f'<h1 style="{FONT}margin:0;font-size:21px;color:#ffffff;font-weight:600;">Email delivery report</h1>'
        f'<div style="{FONT}font-size:13px;color:#dbe7f3;padding:4px 0 8px 0;">Sends of {escape(day)} (UTC)'
        f" \u00b7 generated {escape(_date_label(report.generated_at))}</div></td></tr>"
        f"{body}"
        f'<tr><td style="padding:18px 24px 20px 24px;">'
        f'<p style="{FONT}margin:0;font-size:11px;color:{MUTED};">Recipients sent = recipients with a final '
        "status plus those still pending. Delivered = delivered of final statuses. Changes compare with the day "
        "before and with the mean of the 7 days before. Built from the daily summaries in Table Storage.</p>"
        "</td></tr></table></td></tr></table></body></html>"
    )


# --------------------------------------------------------------------------- entry points


def render_report(report: DailyReport, images: ImageMode = "inline-data") -> RenderedReport:
    """The report as subject, HTML (charts as data: URIs or ``cid:`` references), plain text and charts."""
    if images not in ("inline-data", "cid"):
        raise ValueError("images must be 'inline-data' or 'cid'")
    history = history_chart(report.history)
    latency = latency_chart(report.domain_latency)
    charts = tuple(chart for chart in (history, latency) if chart is not None)
    body = "".join(
        [
            _metrics(report.metrics),
            _section(history.title, _image(history, images)),
            _latency_section(report, latency, images),
            _failures_section(report),
            _bounces_section(report),
            _health_section(report),
            _pending_section(report),
            _completeness_section(report),
        ]
    )
    return RenderedReport(report_subject(report), _page(report, body), render_report_text(report), charts)


def render_report_html(report: DailyReport, images: ImageMode = "inline-data") -> str:
    return render_report(report, images).html


def report_subject(report: DailyReport) -> str:
    by_name = {metric.name: metric for metric in report.metrics}
    sent, delivered = by_name["sent"], by_name["deliveredPercent"]
    return (
        f"Email delivery {report.date.isoformat()}: {format_value(sent.value, 'count')} sent, "
        f"{format_value(delivered.value, 'percent')} delivered"
    )


def render_report_text(report: DailyReport) -> str:
    """The plain-text part of the email: the headline numbers and where to find the rest."""
    lines = [f"Email delivery report for sends of {report.date.isoformat()} (UTC)", ""]
    for metric in report.metrics:
        lines.append(
            f"{metric.label}: {format_value(metric.value, metric.unit)} "
            f"({format_change(metric.change, metric.previous_day, metric.unit)} vs day before, "
            f"{format_change(metric.change_vs_average, metric.seven_day_average, metric.unit)} vs 7-day avg)"
        )
    lines += [
        "",
        f"New hard bounces: {report.hard_bounces.count:,}",
        *(
            f"Sender health {entry.sender_domain or '(unknown)'}: {entry.verdict}"
            for entry in report.sender_health
            if entry.verdict != "ok"
        ),
        f"Still pending: {report.pending.still_pending:,}; expired (last 14 days): {report.pending.expired:,}",
        f"Days summarised: {report.completeness.days_summarised} of 14",
    ]
    return "\n".join(lines) + "\n"
