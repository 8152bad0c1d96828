"""Trace from the delivery state vs today's log-query trace, over local HTTP, on the same data (run by hand).

    python benchmarks/trace_state.py [--messages 100000] [--traces 300] [--final-traces 1000]

A sample store of ``--messages`` messages (generated under benchmarks/.data and reused), the delivery state
on Azurite (tests/support/azurite.py). Messages final in the logs are traced once (the log trace writes them back
into the state), then each is traced over the dev host's HTTP route twice: by a host whose state store is
configured (answered from the state, ``source: "state"``) and by one without a state store (today's log
query). Log queries are counted at the source: ``--final-traces`` traces of final messages must make 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from local.embedded import DuckDbSource  # noqa: E402
from local.sample import fill_store  # noqa: E402
from local.store import open_store  # noqa: E402
from shared.insights import Insights  # noqa: E402
from shared.kql.query import KqlQuery  # noqa: E402
from shared.logs.source import QueryResult  # noqa: E402
from shared.models import TraceParams  # noqa: E402
from shared.services import Services  # noqa: E402
from shared.state.store import StateStore  # noqa: E402
from shared.tracing import trace_message  # noqa: E402

DATA = ROOT / "benchmarks" / ".data"
END = date(2026, 3, 31)


class CountingSource:
    def __init__(self, inner: DuckDbSource) -> None:
        self.inner, self.name, self.queries = inner, inner.name, 0

    def run(self, query: KqlQuery) -> QueryResult:
        self.queries += 1
        return self.inner.run(query)

    def check(self) -> tuple[bool, str]:
        return self.inner.check()

    def query_text(self, query: KqlQuery) -> str:
        return self.inner.query_text(query)


def store_of(messages: int) -> Path:
    path = DATA / f"sample-{messages}.duckdb"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        con = open_store(path)
        fill_store(con, messages, 7, 7, END)
        con.close()
        print(f"generated {messages} messages in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def get_ms(url: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:  # loopback http
        body = json.loads(response.read())
    return (time.perf_counter() - started) * 1000, body


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--traces", type=int, default=300)
    parser.add_argument("--final-traces", type=int, default=1000)
    args = parser.parse_args()

    from apphost import serve, settings
    from azurite import running  # type: ignore[import-not-found]

    path = store_of(args.messages)
    con = open_store(path, read_only=True)
    ids = [
        r[0]
        for r in con.execute(
            f'SELECT "CorrelationId" FROM "ACSEmailSendMailOperational" USING SAMPLE {args.traces * 2} ROWS'
        ).fetchall()
    ]
    con.close()
    now = datetime.combine(END + timedelta(days=1), datetime.min.time(), UTC)
    source = CountingSource(DuckDbSource(path))
    insights = Insights(source, clock=lambda: now)
    with running() as azurite:
        state = StateStore.from_connection_string(azurite.connection_string, "BenchTrace")
        state.ensure_table()
        # Subscriptions on the same Azurite: a trace that makes a message final asks for its subscribers.
        with_state = Services(
            settings(summary_storage=azurite.connection_string), insights=insights, state=state, clock=lambda: now
        )
        logs_only = Services(settings(summary_storage="NoStateConfigured"), insights=insights, clock=lambda: now)
        final_ids = []
        for message_id in ids:  # the first trace of each writes the logs' answer into the state
            answer = trace_message(with_state, TraceParams(message_id=message_id))
            if answer.state == "final":
                final_ids.append(message_id)
            if len(final_ids) == args.traces:
                break
        results: dict[str, Any] = {"messages": args.messages, "tracedMessages": len(final_ids)}
        with serve(with_state) as state_host, serve(logs_only) as logs_host:
            for label, host in (("state", state_host), ("logs", logs_host)):
                get_ms(f"{host.base_url}/api/messages/{final_ids[0]}")  # warm
                timings, sources = [], set()
                for message_id in final_ids:
                    ms, body = get_ms(f"{host.base_url}/api/messages/{message_id}")
                    timings.append(ms)
                    sources.add(body["source"])
                results[label] = {
                    "p50Ms": round(statistics.median(timings), 1),
                    "p95Ms": round(percentile(timings, 95), 1),
                    "sources": sorted(sources),
                }
            results["speedupAtP50"] = round(results["logs"]["p50Ms"] / results["state"]["p50Ms"], 1)
            before = source.queries
            started = time.perf_counter()
            for n in range(args.final_traces):
                get_ms(f"{state_host.base_url}/api/messages/{final_ids[n % len(final_ids)]}")
            results["finalTraces"] = {
                "traces": args.final_traces,
                "logQueries": source.queries - before,
                "seconds": round(time.perf_counter() - started, 2),
            }
        state.client.delete_table()
        state.close()
    source.inner.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
