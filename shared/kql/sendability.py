"""KQL of the sendability answer besides the recipient history (which ``build_recipient_history_query`` gives):
the recipient domain's recent results, counted like the domain statistics and daily summaries count."""

from __future__ import annotations

from shared.kql.builder import STATUS_COUNTS, Filters, Window, _Bindings, _query, _window_lets, correlated
from shared.kql.query import KqlQuery


def build_domain_results_query(recipient_domain: str, window: Window) -> KqlQuery:
    """One row: recipients of the domain per final status (and hard/soft bounces) among the window's sends."""
    b = _Bindings()
    _window_lets(b, window)
    body = [
        correlated(b, Filters(recipient_domain=recipient_domain)),
        "Correlated",
        f"| summarize {STATUS_COUNTS}",
    ]
    return _query("recipient-domain-results", b, body, window)
