"""Non-HTTP functions of ``shared.api.spec``: what each timer or event trigger runs, given the services."""

from __future__ import annotations

import azure.functions as func

from shared.services import Services


def daily_summary(timer: func.TimerRequest, services: Services) -> None:
    from shared.summaries.job import run_scheduled

    run_scheduled(services.settings, services.insights, services.summaries, past_due=timer.past_due)
