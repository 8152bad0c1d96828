"""The daily delivery report (issue 12): numbers from the persisted summaries, rendered as HTML with PNG
charts, and emailed through ACS after the daily summary run. Nothing here is imported at start-up."""

from shared.report.daily import build_daily_report
from shared.report.html import RenderedReport, render_report, render_report_html

__all__ = ["RenderedReport", "build_daily_report", "render_report", "render_report_html"]
