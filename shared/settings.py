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
from typing import Final, Literal

#: The connection setting (prefix) of our storage queues: the queue trigger's ``connection`` and the sender's.
QUEUE_CONNECTION: Final = "AzureWebJobsStorage"


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
        "FOLD_QUEUE",
        "journal-folds",
        "Storage queue (on AzureWebJobsStorage) of fold requests: each journal write asks for its shards to be "
        "folded; failed requests go to FOLD_QUEUE-poison.",
    ),
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
        "is used when unset locally; in Azure, signed routes answer 503 without it.",
    ),
    SettingSpec(
        "MAX_SUBSCRIPTIONS",
        "1000",
        "Most push subscriptions that may exist at once (expired ones count until deleted); beyond it, 409.",
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
    SettingSpec(
        "ACS_ENDPOINT",
        None,
        "Communication Services endpoint the report and POST /api/messages send through (managed identity).",
    ),
    SettingSpec(
        "ACS_CONNECTION_STRING",
        None,
        "Communication Services connection string (local runs and tests); wins over ACS_ENDPOINT.",
        deployed=False,
    ),
    SettingSpec(
        "SUPPRESSION_LIST_ID",
        None,
        "ARM id of the email domain's suppression list that hard bounces are added to (/subscriptions/.../"
        "emailServices/NAME/domains/DOMAIN/suppressionLists/LIST); unset: none is fed.",
    ),
    SettingSpec(
        "SUPPRESSION_SCHEDULE",
        "0 */15 * * * *",
        "NCRONTAB schedule (UTC) of the timer that adds hard bounces to the suppression list.",
    ),
    SettingSpec(
        "ARM_ENDPOINT",
        None,
        "Azure Resource Manager base URL for the suppression list; default the public cloud's (tests: a stand-in).",
        deployed=False,
    ),
    # Deliverability: the quota the volume is compared with, and the sender health verdict's thresholds.
    SettingSpec(
        "SEND_LIMIT_PER_MINUTE",
        "30",
        "Emails (send requests) per minute the ACS resource may send: the default custom-domain limit is 30 "
        "(Azure-managed domains: 5).",
    ),
    SettingSpec(
        "SEND_LIMIT_PER_HOUR",
        "100",
        "Emails (send requests) per hour the ACS resource may send: the default custom-domain limit is 100 "
        "(Azure-managed domains: 10).",
    ),
    SettingSpec("HEALTH_HARD_BOUNCE_WATCH_PERCENT", "2", "Hard-bounce rate (%) from which a sender domain is watched."),
    SettingSpec(
        "HEALTH_HARD_BOUNCE_AT_RISK_PERCENT", "5", "Hard-bounce rate (%) from which a sender domain is at risk."
    ),
    SettingSpec(
        "HEALTH_SPAM_WATCH_PERCENT", "0.1", "Spam / quarantine rate (%) from which a sender domain is watched."
    ),
    SettingSpec(
        "HEALTH_SPAM_AT_RISK_PERCENT", "0.5", "Spam / quarantine rate (%) from which a sender domain is at risk."
    ),
    SettingSpec(
        "HEALTH_FAILURE_WATCH_PERCENT",
        "2",
        "Failure rate (%) from which a sender domain is watched (ACS grants quota increases only below 2 %).",
    ),
    SettingSpec(
        "HEALTH_MIN_RECIPIENTS",
        "20",
        "Recipients with a final status a sender domain needs in the window before it can be judged at risk.",
    ),
)

_SPECS = {spec.name: spec for spec in APP_SETTINGS}
#: Set by App Service / Functions on every instance in Azure (a platform variable, not an app setting).
AZURE_INSTANCE_VARIABLE = "WEBSITE_INSTANCE_ID"


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


def get_positive_int(name: str, environ: Mapping[str, str] | None = None) -> int:
    number = get_int(name, environ)
    if number < 1:
        raise ValueError(f"setting {name} must be at least 1, got {number}")
    return number


def get_float(name: str, environ: Mapping[str, str] | None = None) -> float:
    value = get(name, environ)
    try:
        number = float(value or "")
    except ValueError:
        raise ValueError(f"setting {name} must be a number, got {value!r}") from None
    if not 0 <= number < float("inf"):
        raise ValueError(f"setting {name} must be a number of at least 0, got {value!r}")
    return number


@dataclass(frozen=True)
class VerdictRule:
    """One reason a sender domain is watched or at risk: ``metric`` (a rate in percent) at or above ``percent``."""

    metric: Literal["HardBounceRate", "SpamRate", "FailureRate"]
    verdict: Literal["watch", "atRisk"]
    percent: float


@dataclass(frozen=True)
class HealthThresholds:
    """The sender health verdict's thresholds (HEALTH_* settings; defaults near Amazon SES's review levels and
    ACS's 2 % quota bar). The verdict rules of the API, the daily report and the alert rule all come from here."""

    hard_bounce_watch: float = 2.0
    hard_bounce_at_risk: float = 5.0
    spam_watch: float = 0.1
    spam_at_risk: float = 0.5
    failure_watch: float = 2.0
    min_recipients: int = 20

    def rules(self) -> tuple[VerdictRule, ...]:
        return (
            VerdictRule("HardBounceRate", "atRisk", self.hard_bounce_at_risk),
            VerdictRule("SpamRate", "atRisk", self.spam_at_risk),
            VerdictRule("HardBounceRate", "watch", self.hard_bounce_watch),
            VerdictRule("SpamRate", "watch", self.spam_watch),
            VerdictRule("FailureRate", "watch", self.failure_watch),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HealthThresholds:
        return cls(
            hard_bounce_watch=get_float("HEALTH_HARD_BOUNCE_WATCH_PERCENT", environ),
            hard_bounce_at_risk=get_float("HEALTH_HARD_BOUNCE_AT_RISK_PERCENT", environ),
            spam_watch=get_float("HEALTH_SPAM_WATCH_PERCENT", environ),
            spam_at_risk=get_float("HEALTH_SPAM_AT_RISK_PERCENT", environ),
            failure_watch=get_float("HEALTH_FAILURE_WATCH_PERCENT", environ),
            min_recipients=get_int("HEALTH_MIN_RECIPIENTS", environ),
        )


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
    suppression_list_id: str | None = None
    arm_endpoint: str | None = None
    max_subscriptions: int = 1000
    #: ``WEBSITE_INSTANCE_ID`` is set: the app runs on an Azure instance.
    azure_instance: bool = False

    @property
    def in_azure(self) -> bool:
        """Azure mode: a workspace configured or an Azure instance. Signed routes then need LINK_SIGNING_KEY
        (``shared.signing.link_signer``) and callbacks must resolve to public addresses only."""
        return bool(self.workspace_id) or self.azure_instance

    fold_queue: str = "journal-folds"
    send_limit_per_minute: int = 30
    send_limit_per_hour: int = 100
    health: HealthThresholds = HealthThresholds()

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
            suppression_list_id=value("SUPPRESSION_LIST_ID"),
            arm_endpoint=value("ARM_ENDPOINT"),
            max_subscriptions=number("MAX_SUBSCRIPTIONS"),
            azure_instance=bool((os.environ if environ is None else environ).get(AZURE_INSTANCE_VARIABLE)),
            fold_queue=value("FOLD_QUEUE") or "journal-folds",
            send_limit_per_minute=get_positive_int("SEND_LIMIT_PER_MINUTE", environ),
            send_limit_per_hour=get_positive_int("SEND_LIMIT_PER_HOUR", environ),
            health=HealthThresholds.from_env(environ),
        )
