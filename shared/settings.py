"""Typed settings, read from the environment (and ``local.settings.json`` ``Values`` locally).

``APP_SETTINGS`` is the one list of every setting the app reads; ``local.settings.sample.json``
and the Bicep app settings are checked against it by the tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SettingSpec:
    name: str
    default: str | None
    description: str
    #: Set by the deployment (Bicep) as an app setting; False for local-only settings.
    deployed: bool = True


APP_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "LOG_ANALYTICS_WORKSPACE_ID",
        None,
        "Log Analytics workspace id (customerId GUID). When set, every query goes to Log Analytics.",
    ),
    SettingSpec(
        "LOG_ANALYTICS_ENDPOINT",
        None,
        "Log Analytics query API base URL; default is the public cloud endpoint.",
        deployed=False,
    ),
    SettingSpec("LOG_QUERY_TIMEOUT_SECONDS", "180", "Server timeout for one Log Analytics query."),
    SettingSpec(
        "AZURE_CLIENT_ID",
        None,
        "Client id of the user-assigned managed identity used for Log Analytics and Table Storage.",
    ),
    SettingSpec(
        "ACS_LOCAL_STORE",
        ".data/acs-logs.duckdb",
        "Embedded DuckDB log store used when no workspace id is set.",
        deployed=False,
    ),
    SettingSpec(
        "SUMMARY_STORAGE",
        "AzureWebJobsStorage",
        "Name of the storage connection (setting prefix) that holds the summary table.",
    ),
    SettingSpec("SUMMARY_TABLE", "DeliverySummaries", "Azure Table Storage table for daily summaries."),
    SettingSpec("DAILY_SUMMARY_SCHEDULE", "0 30 1 * * *", "NCRONTAB schedule (UTC) of the daily summary timer."),
    SettingSpec("SUMMARY_LOOKBACK_DAYS", "3", "Days recomputed on every run, since status events arrive late."),
    SettingSpec("SUMMARY_BACKFILL_DAYS", "14", "Days checked for missing summaries and backfilled."),
    SettingSpec("STATUS_GRACE_HOURS", "72", "How long after a send status events are still looked for."),
    SettingSpec(
        "STATE_TABLE", "DeliveryState", "Azure Table Storage table of the delivery state (one partition a message)."
    ),
    SettingSpec("SUBSCRIPTIONS_TABLE", "Subscriptions", "Azure Table Storage table of webhook subscriptions."),
    SettingSpec("FOLLOW_SCHEDULE", "0 */1 * * * *", "NCRONTAB schedule (UTC) of the Log Analytics follower timer."),
    SettingSpec(
        "STATE_RETENTION_DAYS",
        "30",
        "Days a message's delivery state is kept after it was first seen (then the retention timer deletes it).",
    ),
    SettingSpec(
        "RETENTION_SCHEDULE",
        "0 */10 * * * *",
        "NCRONTAB schedule (UTC) of the retention timer (expired state, notFound markers past their window).",
    ),
    SettingSpec(
        "LINK_SIGNING_KEY",
        None,
        "HMAC key (at least 32 characters) that signs continuation tokens and poll links; a development key "
        "is used when unset locally.",
    ),
    SettingSpec("REQUEST_BUDGET_SECONDS", "25", "Time budget of one HTTP request, Log Analytics retries included."),
    SettingSpec(
        "LOG_ANALYTICS_FUNCTIONS",
        "false",
        "true when the code-catalog KQL functions are deployed in the workspace (queries call them instead of "
        "carrying the catalog inline).",
    ),
    SettingSpec("REPORT_RECIPIENTS", None, "Comma-separated addresses that receive the daily report email."),
    SettingSpec("REPORT_SENDER", None, "ACS verified sender address of the daily report email."),
    SettingSpec("ACS_ENDPOINT", None, "Communication Services endpoint used to send the report (managed identity)."),
    SettingSpec(
        "ACS_CONNECTION_STRING",
        None,
        "Communication Services connection string (local runs and tests); wins over ACS_ENDPOINT.",
        deployed=False,
    ),
)

_SPECS = {spec.name: spec for spec in APP_SETTINGS}


def load_local_settings(path: str | Path | None = "local.settings.json") -> dict[str, str]:
    """Copy ``Values`` of a Core Tools ``local.settings.json`` into ``os.environ`` (variables already set win).

    Returns the variables it set. A missing file is not an error (Core Tools only warns); an encrypted one is.
    Non-string values are kept as their JSON text, as Core Tools does.
    """
    if path is None or not Path(path).is_file():
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    if data.get("IsEncrypted"):
        raise ValueError(f"{path} is encrypted; decrypt it (func settings decrypt) to run locally")
    applied: dict[str, str] = {}
    for key, value in (data.get("Values") or {}).items():
        if key not in os.environ:
            applied[key] = os.environ[key] = value if isinstance(value, str) else json.dumps(value)
    return applied


def get(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    spec = _SPECS[name]
    value = (os.environ if environ is None else environ).get(name)
    return value if value not in (None, "") else spec.default


def get_int(name: str, environ: Mapping[str, str] | None = None) -> int:
    value = get(name, environ)
    if value is None:
        raise ValueError(f"setting {name} is required")
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"setting {name} must be a whole number, got {value!r}") from exc


def recipient_list(text: str | None) -> tuple[str, ...]:
    """``REPORT_RECIPIENTS``: addresses separated by commas or semicolons, each once, in order."""
    return tuple(dict.fromkeys(a.strip() for a in (text or "").replace(";", ",").split(",") if a.strip()))


@dataclass(frozen=True)
class Settings:
    workspace_id: str | None
    log_analytics_endpoint: str | None
    query_timeout_seconds: int
    client_id: str | None
    local_store: str
    summary_storage: str
    summary_table: str
    summary_lookback_days: int
    summary_backfill_days: int
    status_grace_hours: int
    state_table: str = "DeliveryState"
    subscriptions_table: str = "Subscriptions"
    link_signing_key: str | None = None
    request_budget_seconds: float = 25.0
    state_retention_days: int = 30
    log_analytics_functions: bool = False
    report_recipients: tuple[str, ...] = ()
    report_sender: str | None = None
    acs_endpoint: str | None = None
    acs_connection_string: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings from the process environment (or *environ*)."""

        def value(name: str) -> str | None:
            return get(name, environ)

        def number(name: str) -> int:
            return get_int(name, environ)

        return cls(
            workspace_id=value("LOG_ANALYTICS_WORKSPACE_ID"),
            log_analytics_endpoint=value("LOG_ANALYTICS_ENDPOINT"),
            query_timeout_seconds=number("LOG_QUERY_TIMEOUT_SECONDS"),
            client_id=value("AZURE_CLIENT_ID"),
            local_store=value("ACS_LOCAL_STORE") or ".data/acs-logs.duckdb",
            summary_storage=value("SUMMARY_STORAGE") or "AzureWebJobsStorage",
            summary_table=value("SUMMARY_TABLE") or "DeliverySummaries",
            summary_lookback_days=number("SUMMARY_LOOKBACK_DAYS"),
            summary_backfill_days=number("SUMMARY_BACKFILL_DAYS"),
            status_grace_hours=number("STATUS_GRACE_HOURS"),
            state_table=value("STATE_TABLE") or "DeliveryState",
            subscriptions_table=value("SUBSCRIPTIONS_TABLE") or "Subscriptions",
            link_signing_key=value("LINK_SIGNING_KEY"),
            request_budget_seconds=float(number("REQUEST_BUDGET_SECONDS")),
            state_retention_days=number("STATE_RETENTION_DAYS"),
            log_analytics_functions=(value("LOG_ANALYTICS_FUNCTIONS") or "").strip().lower() == "true",
            report_recipients=recipient_list(value("REPORT_RECIPIENTS")),
            report_sender=value("REPORT_SENDER"),
            acs_endpoint=value("ACS_ENDPOINT"),
            acs_connection_string=value("ACS_CONNECTION_STRING"),
        )
