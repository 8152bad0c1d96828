"""``python -m shared``: the service from the shell. JSON on stdout.

Failures print one line on stderr and exit with the error's code (``shared.errors``): 2 for bad input, 1 for
anything else. No traceback reaches the user; nothing is logged about recipients.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic.alias_generators import to_camel

from shared.api.params import parse_params
from shared.api.render import bounces_csv, to_json
from shared.errors import EXIT_FAILURE, InvalidInput, ServiceError
from shared.insights import Insights
from shared.kql.query import KqlQuery
from shared.models import (
    STATS_KINDS,
    BouncesParams,
    EngagementParams,
    RecipientParams,
    SearchParams,
    StatsRequest,
    TimeSeriesParams,
    TraceParams,
)
from shared.services import Services
from shared.settings import Settings, load_local_settings


class UsageError(InvalidInput):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit; we report like any other bad input
        raise UsageError(f"{self.prog}: {message}")


def _window_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="from", metavar="T", help="start of the send window (ISO 8601, UTC)")
    parser.add_argument("--to", metavar="T", help="end of the send window (exclusive; default now)")


def _scope_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sender", help="sender username or address")
    parser.add_argument("--sender-domain", help="sender domain")
    parser.add_argument("--resource-id", help="ACS resource id")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m shared", description="ACS Email Insights: what happened to my email?")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also print the service's warnings (e.g. a store it skipped)"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _store_commands(commands)
    _query_commands(commands)
    _job_commands(commands)
    from shared.api import suppression

    suppression.add_commands(commands, _window_options)
    from shared.api import sending

    sending.add_commands(commands)
    return parser


def _store_commands(commands: Any) -> None:
    """Commands that write the embedded store."""
    imp = commands.add_parser("import", help="import archive / Log Analytics export files into the local store")
    imp.add_argument("paths", nargs="+", metavar="PATH")
    imp.add_argument("--table", help="target table for Log Analytics exports (default: inferred)")

    sample = commands.add_parser("sample", help="fill the local store with deterministic sample data")
    sample.add_argument("--messages", type=int, default=5000)
    sample.add_argument("--days", type=int, default=3)
    sample.add_argument("--seed", type=int, default=1)
    sample.add_argument("--end", metavar="YYYY-MM-DD", help="last day of sample data (default yesterday, UTC)")

    sample.add_argument("--no-events", action="store_true", help="do not write <store>.events.json beside it")

    events = commands.add_parser("events", help="Event Grid events files (written by `sample`)")
    events_commands = events.add_subparsers(dest="events_command", required=True, parser_class=_Parser)
    send = events_commands.add_parser("send", help="replay an events file to a running host's webhook URL")
    send.add_argument("file", metavar="FILE")
    send.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="e.g. http://localhost:7071/runtime/webhooks/eventgrid?functionName=ingest_email_events",
    )
    send.add_argument("--batch", type=int, default=500, help="events per POST (1-5000, default 500)")


def _query_commands(commands: Any) -> None:
    """The use cases the HTTP API serves, with the same parameters."""
    trace = commands.add_parser("trace", help="what happened to one message")
    trace.add_argument("message_id", metavar="MESSAGE_ID")
    trace.add_argument("--lookback-days", type=int)

    search = commands.add_parser("search", help="one row per recipient, newest send first")
    _window_options(search)
    for option in (
        "sender",
        "sender-domain",
        "recipient",
        "recipient-domain",
        "status",
        "bounce-type",
        "min-duration-seconds",
        "min-size-mb",
        "internet-message-id",
        "message-id",
        "resource-id",
        "top",
        "continuation-token",
    ):
        search.add_argument(f"--{option}")
    search.add_argument("--has-attachments", action="store_true", default=None)

    stats = commands.add_parser("stats", help="aggregates: " + ", ".join(STATS_KINDS))
    stats.add_argument("kind", choices=STATS_KINDS)
    _window_options(stats)
    _scope_options(stats)
    stats.add_argument("--top")
    stats.add_argument("--bin")

    _aggregate_commands(commands)
    _deliverability_commands(commands)


def _deliverability_commands(commands: Any) -> None:
    """Quota headroom, sender health and mailbox providers (GET /api/sending/quota, /api/senders/health,
    /api/stats/providers)."""
    quota = commands.add_parser("quota", help="sends per minute and hour against the ACS limits, with evidence")
    _window_options(quota)
    _scope_options(quota)

    health = commands.add_parser("health", help="sender health: failure, hard-bounce and spam rates and a verdict")
    _window_options(health)
    _scope_options(health)
    health.add_argument("--window", help="24h (default) or 7d, counted back from --to")

    providers = commands.add_parser("providers", help="delivery, bounces, spam and latency per mailbox provider")
    _window_options(providers)
    _scope_options(providers)
    providers.add_argument("--top")


def _deliverability(services: Services, args: argparse.Namespace, out: Any) -> int:
    from shared.deliverability.health import sender_health
    from shared.deliverability.models import ProviderStatsParams, QuotaParams, SenderHealthParams
    from shared.deliverability.providers import provider_stats
    from shared.deliverability.quota import quota

    raw, insights, settings = _raw_params(args), services.insights, services.settings
    if args.command == "quota":
        result: Any = quota(insights, parse_params(QuotaParams, raw), settings)
    elif args.command == "health":
        result = sender_health(insights, parse_params(SenderHealthParams, raw), settings.health)
    else:
        result = provider_stats(insights, parse_params(ProviderStatsParams, raw))
    print(to_json(result, indent=2), file=out)
    return 0


def _aggregate_commands(commands: Any) -> None:
    """Aggregates and histories, with the same parameters as their HTTP routes."""
    series = commands.add_parser("timeseries", help="final statuses per time bin by event time")
    _window_options(series)
    _scope_options(series)
    series.add_argument("--bin", help="5m, 15m, 1h (default) or 1d")
    series.add_argument("--by", help="status (default) or domain")

    engagement = commands.add_parser("engagement", help="open and click rates among delivered mail")
    _window_options(engagement)
    _scope_options(engagement)
    engagement.add_argument("--by", help="sender (default), senderDomain or recipientDomain")
    engagement.add_argument("--top")

    recipient = commands.add_parser("recipient", help="every message to one address, newest first")
    recipient.add_argument("address", metavar="ADDRESS")
    _window_options(recipient)
    recipient.add_argument("--top")

    bounces = commands.add_parser("bounces", help="bounced recipients, one row per address")
    bounces.add_argument("--type", dest="type", default=None)
    _window_options(bounces)
    bounces.add_argument("--recipient-domain")
    _scope_options(bounces)
    bounces.add_argument("--top")
    bounces.add_argument("--format", default=None)

    kql = commands.add_parser("kql", help="print the KQL an operation would send (e.g. `kql search --sender x`)")
    kql.add_argument(
        "--engine",
        choices=["log-analytics", "embedded"],
        default=None,
        help="which form to print (default: the configured source)",
    )
    kql.add_argument("operation", nargs=argparse.REMAINDER, metavar="OPERATION ...")


def _job_commands(commands: Any) -> None:
    """What the timers run, on demand."""
    report = commands.add_parser("report", help="the daily report of one UTC day (HTML page or JSON)")
    report.add_argument("--date", metavar="YYYY-MM-DD", required=True)
    report.add_argument("--format", choices=["html", "json"], default="html")

    summarize = commands.add_parser("summarize", help="run the daily summary job now")
    summarize.add_argument("--date", metavar="YYYY-MM-DD", help="summarize this day only (default: the job's days)")


_NOT_PARAMS = {"command", "engine", "operation", "paths", "verbose"}


def _raw_params(args: argparse.Namespace) -> dict[str, Any]:
    raw = {}
    for key, value in vars(args).items():
        if key in _NOT_PARAMS or value is None:
            continue
        raw["from" if key == "from" else to_camel(key)] = value
    return raw


def _query_for(insights: Insights, args: argparse.Namespace) -> KqlQuery:
    raw = _raw_params(args)
    if args.command == "trace":
        return insights.trace_query(parse_params(TraceParams, raw))
    if args.command == "search":
        return insights.search_query(parse_params(SearchParams, raw))
    if args.command == "stats":
        return insights.stats_query(args.kind, parse_params(StatsRequest, raw))
    if args.command == "bounces":
        return insights.bounces_query(parse_params(BouncesParams, raw))
    if args.command == "timeseries":
        return insights.timeseries_query(parse_params(TimeSeriesParams, raw))
    if args.command == "engagement":
        return insights.engagement_query(parse_params(EngagementParams, raw))
    if args.command == "recipient":
        return insights.recipient_query(parse_params(RecipientParams, raw))
    if args.command in ("health", "providers"):
        return _deliverability_query(insights, args.command, raw)
    raise UsageError(
        f"kql: no query for `{args.command}`; use trace, search, stats, bounces, timeseries, engagement, recipient, "
        "health or providers"
    )


def _deliverability_query(insights: Insights, command: str, raw: dict[str, Any]) -> KqlQuery:
    from shared.deliverability.health import health_query
    from shared.deliverability.models import ProviderStatsParams, SenderHealthParams
    from shared.kql.builder import Filters
    from shared.kql.deliverability import build_provider_stats_query

    if command == "health":
        return health_query(insights, parse_params(SenderHealthParams, raw))
    params = parse_params(ProviderStatsParams, raw)
    return build_provider_stats_query(Filters.from_scope(params), insights.send_window(params))


def _parse_day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} must be a date YYYY-MM-DD, got {text!r}") from None


def run(argv: Sequence[str], out: Any = None, services: Services | None = None) -> int:
    """Run one command; ``services`` replaces the ones built from the settings (tests)."""
    out = out or sys.stdout
    try:
        return _run(list(argv), out, services)
    except ServiceError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a file or port the command needed: name it, no traceback
        print(f"error: {exc.strerror or type(exc).__name__}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # never a traceback (it may quote data); say what failed
        print(f"error: {args_command(argv)} failed unexpectedly ({type(exc).__name__})", file=sys.stderr)
        return EXIT_FAILURE


def _quiet_unless(verbose: bool) -> None:
    """On success the CLI prints its answer and nothing on stderr: the service's warnings (a delivery state that is
    not configured, a store skipped for a fallback) are for the host's logs, shown here only with ``--verbose``.
    Failures still print their one line (``run``)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    root.setLevel(logging.WARNING if verbose else logging.ERROR)


def args_command(argv: Sequence[str]) -> str:
    return next((word for word in argv if not word.startswith("-")), "command")


def _run(argv: list[str], out: Any, services: Services | None) -> int:
    load_local_settings()
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_unless(args.verbose)
    settings = services.settings if services is not None else Settings.from_env()

    if args.command == "import":
        return _import(settings, args, out)
    if args.command == "sample":
        return _sample(settings, args, out)
    if args.command == "events":
        return _events(args, out)
    services = services or Services(settings)
    if args.command == "summarize":
        return _summarize(services, args, out)
    if args.command == "report":
        return _report(services, args, out)
    from shared.api import suppression

    if args.command in suppression.COMMANDS:
        return suppression.run_command(services, args, _raw_params(args), out)
    from shared.api import sending

    if args.command in sending.COMMANDS:
        return sending.run_command(services, args, out)
    if args.command in ("quota", "health", "providers"):
        return _deliverability(services, args, out)
    insights = services.insights
    if args.command == "kql":
        return _kql(parser, insights, settings, args, out)

    raw = _raw_params(args)
    if args.command == "trace":
        from shared.tracing import trace_message

        print(to_json(trace_message(services, parse_params(TraceParams, raw)), indent=2), file=out)
    elif args.command == "search":
        print(to_json(insights.search(parse_params(SearchParams, raw)), indent=2), file=out)
    elif args.command == "stats":
        params = parse_params(StatsRequest, raw)
        print(to_json(insights.stats(params.kind, params), indent=2), file=out)
    elif args.command == "timeseries":
        print(to_json(insights.timeseries(parse_params(TimeSeriesParams, raw)), indent=2), file=out)
    elif args.command == "engagement":
        print(to_json(insights.engagement(parse_params(EngagementParams, raw)), indent=2), file=out)
    elif args.command == "recipient":
        print(to_json(insights.recipient_history(parse_params(RecipientParams, raw)), indent=2), file=out)
    elif args.command == "bounces":
        bounce_params = parse_params(BouncesParams, raw)
        result = insights.bounces(bounce_params)
        print(bounces_csv(result) if bounce_params.format == "csv" else to_json(result, indent=2), file=out, end="")
        if bounce_params.format != "csv":
            print(file=out)
    return 0


def _summarize(services: Services, args: argparse.Namespace, out: Any) -> int:
    """The daily summary job now; exit 1 when any day failed (the report says which and why)."""
    from shared.summaries.job import run_daily_summary

    day = _parse_day(args.date, "--date")
    report = run_daily_summary(
        services.settings, days=[day] if day else None, insights=services.insights, store=services.summaries
    )
    print(json.dumps(report, indent=2), file=out)
    if not report["ok"]:
        failed = ", ".join(item["date"] for item in report["failed"])
        print(f"error: the daily summary failed for {failed}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _report(services: Services, args: argparse.Namespace, out: Any) -> int:
    from shared.report.daily import build_daily_report
    from shared.report.html import render_report_html

    day = _parse_day(args.date, "--date")
    assert day is not None
    report = build_daily_report(
        services.summaries, services.insights, day, now=services.clock(), health=services.settings.health
    )
    print(to_json(report, indent=2) if args.format == "json" else render_report_html(report), file=out)
    return 0


def _kql(
    parser: argparse.ArgumentParser, insights: Insights, settings: Settings, args: argparse.Namespace, out: Any
) -> int:
    if not args.operation:
        raise UsageError("kql: name an operation, e.g. `kql search --sender DoNotReply`")
    operation = list(args.operation)
    if "--engine" in operation:  # accept the option after the operation too
        at = operation.index("--engine")
        if at + 1 >= len(operation) or operation[at + 1] not in ("log-analytics", "embedded"):
            raise UsageError("kql: --engine takes log-analytics or embedded")
        args.engine = operation[at + 1]
        del operation[at : at + 2]
    inner = parser.parse_args(operation)
    query = _query_for(insights, inner)
    engine = args.engine or ("log-analytics" if settings.workspace_id else "embedded")
    print(query.log_analytics_text() if engine == "log-analytics" else query.embedded_text(), file=out)
    return 0


def _local_store(settings: Settings) -> Path:
    if settings.workspace_id:
        raise UsageError("import and sample write the local store; unset LOG_ANALYTICS_WORKSPACE_ID to use them")
    return Path(settings.local_store)


def _import(settings: Settings, args: argparse.Namespace, out: Any) -> int:
    """Into a copy of the store, renamed into place: a server reading the store never blocks it (replacement.py)."""
    from local.importers import import_into_store

    report = import_into_store(_local_store(settings), args.paths, table=args.table)
    print(json.dumps(report.as_dict(), indent=2), file=out)
    return 0


def _sample(settings: Settings, args: argparse.Namespace, out: Any) -> int:
    from local.sample import fill_store_file

    if args.messages < 1 or args.messages > 10_000_000:
        raise UsageError("--messages must be between 1 and 10000000")
    if args.days < 1 or args.days > 90:
        raise UsageError("--days must be between 1 and 90")
    # Whole days up to yesterday by default: no sample send lies in the future, and every day is complete.
    end = _parse_day(args.end, "--end") or datetime.now(UTC).date() - timedelta(days=1)
    counts = fill_store_file(_local_store(settings), args.messages, args.days, args.seed, end)
    summary: dict[str, Any] = {"store": settings.local_store, "end": end.isoformat(), **counts}
    if not args.no_events:
        from local.sample_events import events_path, write_sample_events

        summary["events"] = {
            "file": str(events_path(_local_store(settings))),
            **write_sample_events(_local_store(settings)),
        }
    print(json.dumps(summary, indent=2), file=out)
    return 0


def _events(args: argparse.Namespace, out: Any) -> int:
    """``events send FILE --to URL``: exit 0 when every batch was accepted, 2 for bad input, 1 otherwise."""
    from local.sample_events import read_events_file, replay_events

    result = replay_events(read_events_file(args.file), args.to, batch=args.batch)
    print(json.dumps(result), file=out)
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))
