"""``python -m shared``: the service from the shell. JSON on stdout; exit 2 with a clear message on bad input."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic.alias_generators import to_camel

from shared.api.params import BadRequest, parse_params
from shared.api.render import bounces_csv, to_json
from shared.insights import Insights, InvalidToken
from shared.kql.query import KqlQuery
from shared.logs.source import LogQueryError
from shared.models import BouncesParams, SearchParams, StatsParams, TraceParams, WindowError
from shared.settings import Settings, load_local_settings

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit; we report like any other bad input
        raise UsageError(f"{self.prog}: {message}")


def _window_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="from", metavar="T", help="start of the send window (ISO 8601, UTC)")
    parser.add_argument("--to", metavar="T", help="end of the send window (exclusive; default now)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m shared", description="ACS Email Insights: what happened to my email?")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    imp = commands.add_parser("import", help="import archive / Log Analytics export files into the local store")
    imp.add_argument("paths", nargs="+", metavar="PATH")
    imp.add_argument("--table", help="target table for Log Analytics exports (default: inferred)")

    sample = commands.add_parser("sample", help="fill the local store with deterministic sample data")
    sample.add_argument("--messages", type=int, default=5000)
    sample.add_argument("--days", type=int, default=3)
    sample.add_argument("--seed", type=int, default=1)
    sample.add_argument("--end", metavar="YYYY-MM-DD", help="last day of sample data (default yesterday, UTC)")

    trace = commands.add_parser("trace", help="what happened to one message")
    trace.add_argument("message_id", metavar="MESSAGE_ID")
    trace.add_argument("--lookback-days", type=int)

    search = commands.add_parser("search", help="one row per recipient, newest send first")
    _window_options(search)
    for option in (
        "sender",
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

    stats = commands.add_parser("stats", help="aggregates: domains, senders, mail-servers, latency, failures, sizes")
    stats.add_argument("kind", choices=["domains", "senders", "mail-servers", "latency", "failures", "sizes"])
    _window_options(stats)
    stats.add_argument("--top")
    stats.add_argument("--bin")

    bounces = commands.add_parser("bounces", help="bounced recipients, one row per address")
    bounces.add_argument("--type", dest="type", default=None)
    _window_options(bounces)
    bounces.add_argument("--recipient-domain")
    bounces.add_argument("--sender")
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

    serve = commands.add_parser("serve", help="serve the Functions app's HTTP API locally")
    serve.add_argument("--port", type=int, default=7071)
    serve.add_argument("--host", default="127.0.0.1")

    summarize = commands.add_parser("summarize", help="run the daily summary job now")
    summarize.add_argument("--date", metavar="YYYY-MM-DD", help="summarize this day only (default: the job's days)")
    return parser


_NOT_PARAMS = {"command", "kind", "engine", "operation", "paths"}


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
        return insights.stats_query(args.kind, parse_params(StatsParams, raw))
    if args.command == "bounces":
        return insights.bounces_query(parse_params(BouncesParams, raw))
    raise UsageError(f"kql: no query for `{args.command}`; use trace, search, stats or bounces")


def _parse_day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} must be a date YYYY-MM-DD, got {text!r}") from None


def run(argv: Sequence[str], out: Any = None) -> int:
    out = out or sys.stdout
    try:
        return _run(list(argv), out)
    except (UsageError, BadRequest, InvalidToken, WindowError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except LogQueryError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return EXIT_FAILURE


def _run(argv: list[str], out: Any) -> int:
    load_local_settings()
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings.from_env()

    if args.command == "serve":
        from function_app import app  # the Functions app itself, served as Core Tools would
        from shared.host import serve

        serve(app, host=args.host, port=args.port)
        return 0
    if args.command == "import":
        return _import(settings, args, out)
    if args.command == "sample":
        return _sample(settings, args, out)
    if args.command == "summarize":
        from shared.summaries.job import run_daily_summary

        day = _parse_day(args.date, "--date")
        report = run_daily_summary(settings, days=[day] if day else None)
        print(json.dumps(report, indent=2), file=out)
        return 0

    from shared.services import make_insights

    insights = make_insights(settings)
    if args.command == "kql":
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

    raw = _raw_params(args)
    if args.command == "trace":
        print(to_json(insights.trace(parse_params(TraceParams, raw)), indent=2), file=out)
    elif args.command == "search":
        print(to_json(insights.search(parse_params(SearchParams, raw)), indent=2), file=out)
    elif args.command == "stats":
        print(to_json(insights.stats(args.kind, parse_params(StatsParams, raw)), indent=2), file=out)
    elif args.command == "bounces":
        params = parse_params(BouncesParams, raw)
        result = insights.bounces(params)
        print(bounces_csv(result) if params.format == "csv" else to_json(result, indent=2), file=out, end="")
        if params.format != "csv":
            print(file=out)
    return 0


def _store_connection(settings: Settings) -> Any:
    if settings.workspace_id:
        raise UsageError("import and sample write the local store; unset LOG_ANALYTICS_WORKSPACE_ID to use them")
    from shared.logs.store import open_store

    return open_store(Path(settings.local_store))


def _import(settings: Settings, args: argparse.Namespace, out: Any) -> int:
    from shared.logs.importers import ImportFailure, import_paths

    con = _store_connection(settings)
    try:
        report = import_paths(con, args.paths, table=args.table)
    except ImportFailure as exc:
        raise UsageError(str(exc)) from exc
    finally:
        con.close()
    print(json.dumps(report.as_dict(), indent=2), file=out)
    return 0


def _sample(settings: Settings, args: argparse.Namespace, out: Any) -> int:
    from shared.logs.sample import fill_store

    if args.messages < 1 or args.messages > 10_000_000:
        raise UsageError("--messages must be between 1 and 10000000")
    if args.days < 1 or args.days > 90:
        raise UsageError("--days must be between 1 and 90")
    # Whole days up to yesterday by default: no sample send lies in the future, and every day is complete.
    end = _parse_day(args.end, "--end") or datetime.now(UTC).date() - timedelta(days=1)
    con = _store_connection(settings)
    try:
        counts = fill_store(con, args.messages, args.days, args.seed, end)
    finally:
        con.close()
    print(json.dumps({"store": settings.local_store, "end": end.isoformat(), **counts}, indent=2), file=out)
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))
