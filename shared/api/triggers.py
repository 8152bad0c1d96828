"""Non-HTTP functions of ``shared.api.spec``: what each timer or event trigger runs, given the services."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from shared.services import Services


def daily_summary(timer: func.TimerRequest, services: Services) -> None:
    """Summaries of the planned days, then the daily report email when it is configured."""
    from shared.summaries.job import run_scheduled

    store, insights = services.summaries, services.insights

    def send_report(run: dict[str, Any]) -> dict[str, Any]:
        from shared.report.email import send_after_summary

        return send_after_summary(run, store, insights)

    run_scheduled(services.settings, insights, store, past_due=timer.past_due, after_run=send_report)
