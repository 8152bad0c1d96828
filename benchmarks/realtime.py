"""Real-time benchmarks (run by hand, never timed tests): push latency and fold throughput over the dev host.

    python benchmarks/realtime.py push [--messages 1000] [--rate 50]
    python benchmarks/realtime.py sendtrack [--messages 1000] [--rate 50]
    python benchmarks/realtime.py throughput [--events 500000] [--batch 500]

``push``: Azurite (tables and queues) and the dev host with its timers off, so only the queue-triggered shard
folds can write partitions and push. ``--senders`` filter subscriptions, one per sender (a subscription's
pushes go out one at a time, so one subscription caps the rate of its pushes, not the fold); then
``--messages`` one-recipient messages, spread over those senders, each made final by a Delivered event,
POSTed to the Event Grid webhook in small batches at ``--rate`` events a second. Latency: from the moment
the webhook acknowledged the event (202) to the moment the callback received its outcome. Prints
p50/p95/p99/max.

``sendtrack``: as ``push``, but each message is sent through ``POST /api/messages`` (the real ACS SDK against
the loopback ACS stand-in, ``tests/acs_standin.py``), which registers its recipient, and gets a message
subscription of its own (``POST /api/subscriptions`` with ``messageId``); then one Delivered event each makes it
final. Latency: from the webhook's acknowledgement of the event to the callback's receipt of the message's trace.

``throughput``: synthetic events (``benchmarks/state.py``: shuffled, a tenth duplicated) ingested and folded
by dev host processes (``python -m tools.devhost --no-timers``) sharing one Azurite: first one process, then
two (batches alternate between them), each on fresh tables and a fresh queue. End to end: from the first POST
until the journal is empty (every observation folded into its partition), observations a second. A batch
answered 5xx (the store too slow for the webhook's budget: the host answers 5xx rather than lose events) is
delivered again after a pause, as Event Grid does (sooner: its first retry waits 10 s), and counted; the hosts'
logs are kept in ``--logs`` (default: a temporary directory, named in the output).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from state import post, synthetic_events  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Receiver:
    """Records when each message's outcome arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with receiver.lock:
                    receiver.arrived.setdefault(body["messageId"], time.monotonic())
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def delivered(message_id: str, sender: str, at: str, recipient: str | None = None) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "subject": f"sender/{sender}/message/{message_id}",
        "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
        "eventTime": at,
        "dataVersion": "1.0",
        "data": {
            "sender": sender,
            "recipient": recipient or f"r-{message_id[:8]}@example.com",
            "messageId": message_id,
            "status": "Delivered",
            "deliveryStatusDetails": {"statusMessage": "ok"},
            "deliveryAttemptTimeStamp": at,
        },
    }


def bench_push(messages: int, rate: float, senders: int) -> None:
    from datetime import UTC, datetime

    from shared.services import Services

    from apphost import serve, settings  # type: ignore[import-not-found]
    from azurite import running  # type: ignore[import-not-found]

    os.environ.setdefault("PYTHON_THREADPOOL_THREAD_COUNT", "32")
    with running() as azurite, tempfile.TemporaryDirectory() as work:
        tag = uuid.uuid4().hex[:8]
        os.environ.update(
            {
                "AzureWebJobsStorage": azurite.storage_connection_string,
                "STATE_TABLE": f"PushState{tag}",
                "FOLD_QUEUE": f"push-folds-{tag}",
                "ACS_LOCAL_STORE": str(Path(work) / "empty.duckdb"),
            }
        )
        from local.store import open_store

        open_store(os.environ["ACS_LOCAL_STORE"]).close()
        services = Services(
            settings(
                state_table=f"PushState{tag}", subscriptions_table=f"PushSubs{tag}", fold_queue=f"push-folds-{tag}"
            )
        )
        receiver = Receiver()
        acknowledged: dict[str, float] = {}
        ids = [str(uuid.uuid4()) for _ in range(messages)]
        names = [f"Bench{n}@fabrikam.com" for n in range(senders)]
        with serve(services) as host:
            for name in names:
                request = urllib.request.Request(
                    f"{host.base_url}/api/subscriptions",
                    json.dumps({"callbackUrl": receiver.url, "filter": {"sender": name}}).encode(),
                    {"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=60) as response:
                    assert response.status == 201
            url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName=ingest_email_events"
            post(url, [delivered(str(uuid.uuid4()), "Warm@fabrikam.com", "2026-03-10T10:00:00Z")])  # imports, tables
            time.sleep(3)
            batch = max(1, round(rate / 10))  # ten deliveries a second, as Event Grid spreads them
            started = time.monotonic()
            for index in range(0, messages, batch):
                time.sleep(max(0.0, started + index / rate - time.monotonic()))
                chunk = ids[index : index + batch]
                at = datetime.now(UTC).isoformat()
                post(url, [delivered(mid, names[hash(mid) % senders], at) for mid in chunk])
                acknowledged.update(dict.fromkeys(chunk, time.monotonic()))
            deadline = time.monotonic() + 120
            while sum(1 for mid in ids if mid in receiver.arrived) < messages and time.monotonic() < deadline:
                time.sleep(0.1)
        latencies = [receiver.arrived[mid] - acknowledged[mid] for mid in ids if mid in receiver.arrived]
        missing = messages - len(latencies)
        print(
            f"push ({senders} filter subscription(s)): {messages:,} messages made final by events at {rate:g} "
            f"events/s over the dev host (timers off: queue-triggered folds only): "
            f"p50 {percentile(latencies, 0.5):.2f} s, p95 {percentile(latencies, 0.95):.2f} s, "
            f"p99 {percentile(latencies, 0.99):.2f} s, max {max(latencies):.2f} s; {missing} not received in 120 s"
        )
        services.close()


def _call(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(response.status), json.loads(response.read())


def bench_sendtrack(messages: int, rate: float) -> None:  # long: one scenario, set-up to figures, read top down
    from datetime import UTC, datetime

    from shared.services import Services

    from acs_standin import AcsEmailStandIn  # type: ignore[import-not-found]
    from apphost import serve, settings  # type: ignore[import-not-found]
    from azurite import running  # type: ignore[import-not-found]

    os.environ.setdefault("PYTHON_THREADPOOL_THREAD_COUNT", "32")
    with running() as azurite, tempfile.TemporaryDirectory() as work, AcsEmailStandIn() as acs:
        tag = uuid.uuid4().hex[:8]
        os.environ.update(
            {
                "AzureWebJobsStorage": azurite.storage_connection_string,
                "STATE_TABLE": f"SendState{tag}",
                "FOLD_QUEUE": f"send-folds-{tag}",
                "ACS_LOCAL_STORE": str(Path(work) / "empty.duckdb"),
            }
        )
        from local.store import open_store

        open_store(os.environ["ACS_LOCAL_STORE"]).close()
        services = Services(
            settings(
                state_table=f"SendState{tag}",
                subscriptions_table=f"SendSubs{tag}",
                fold_queue=f"send-folds-{tag}",
                acs_connection_string=acs.connection_string,
                max_subscriptions=messages + 10,
            )
        )
        receiver = Receiver()
        sender = "Bench@send.fabrikam.com"
        with serve(services) as host:

            def send(index: int) -> tuple[str, str]:
                recipient = f"r{index}@example.com"
                body = {
                    "senderAddress": sender,
                    "recipients": {"to": [{"address": recipient}]},
                    "content": {"subject": f"Bench {index}", "plainText": "Hello"},
                    "repeatabilityRequestId": f"{tag}-{index}",
                }
                status, accepted = _call(f"{host.base_url}/api/messages", body)
                assert status == 202 and accepted["registered"], accepted
                mid = str(accepted["messageId"])
                hook = {"callbackUrl": receiver.url, "messageId": mid}
                assert _call(f"{host.base_url}/api/subscriptions", hook)[0] == 201
                return mid, recipient

            set_up = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                sent = list(pool.map(send, range(messages)))
            set_up = time.monotonic() - set_up
            assert len(acs.emails) == messages
            url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName=ingest_email_events"
            time.sleep(3)
            acknowledged: dict[str, float] = {}
            batch = max(1, round(rate / 10))  # ten deliveries a second, as Event Grid spreads them
            started = time.monotonic()
            for index in range(0, messages, batch):
                time.sleep(max(0.0, started + index / rate - time.monotonic()))
                chunk = sent[index : index + batch]
                at = datetime.now(UTC).isoformat()
                post(url, [delivered(mid, sender, at, recipient) for mid, recipient in chunk])
                acknowledged.update(dict.fromkeys((mid for mid, _ in chunk), time.monotonic()))
            deadline = time.monotonic() + 120
            while sum(1 for mid, _ in sent if mid in receiver.arrived) < messages and time.monotonic() < deadline:
                time.sleep(0.1)
        latencies = [receiver.arrived[mid] - acknowledged[mid] for mid, _ in sent if mid in receiver.arrived]
        missing = messages - len(latencies)
        print(
            f"sendtrack: {messages:,} messages sent through POST /api/messages (ACS stand-in) with a message "
            f"subscription each in {set_up:.1f} s ({messages / set_up:.0f} sends+subscriptions/s), made final by "
            f"events at {rate:g} events/s (timers off: queue-triggered folds only): "
            f"p50 {percentile(latencies, 0.5):.2f} s, p95 {percentile(latencies, 0.95):.2f} s, "
            f"p99 {percentile(latencies, 0.99):.2f} s, max {max(latencies):.2f} s; {missing} not received in 120 s"
        )
        services.close()


def _start_host(
    port: int, env: dict[str, str], *, new_group: bool = False, log: Path | None = None
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "tools.devhost", "--no-timers", "--port", str(port), "--settings", "/nonexistent"]
    handle = log.open("ab") if log is not None else None
    output = handle if handle is not None else subprocess.DEVNULL
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=output,
        start_new_session=new_group,  # its own process group, whose CPU time is measured
    )
    if handle is not None:
        handle.close()  # the host has its own copy
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/openapi.json", timeout=5):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the dev host did not start")


def cpu_seconds(group_leaders: list[int]) -> float:
    """CPU time (user + system) used so far by every process in these process groups (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        # after the command: state ppid pgrp session ... utime (index 11) stime (12)
        if int(fields[2]) in group_leaders:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _azurite_groups(azurite: Any) -> list[int]:
    return [service.process.pid for service in (azurite, azurite.queue) if service and service.process]


class Redelivery:
    """POSTs a batch until it is accepted, as Event Grid delivers again after a 5xx (or no answer); counts them."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def post(self, url: str, events: list[dict[str, Any]]) -> None:
        pause = 1.0
        for _ in range(30):
            try:
                post(url, events)
                return
            except (urllib.error.HTTPError, urllib.error.URLError, TimeoutError) as exc:
                if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code != 429:
                    raise
            with self._lock:
                self.count += 1
            time.sleep(pause)
            pause = min(2 * pause, 10.0)
        raise RuntimeError("a batch was refused 30 times")


def _run(hosts: int, events: list[dict[str, Any]], batch: int, azurite: Any, work: str, logs: Path) -> float:
    """Seconds from the first POST until the journal is empty, with *hosts* dev host processes; prints the CPU
    time the hosts and Azurite used per observation, which says how many cores a target rate needs."""
    from shared.state.store import StateStore

    from azurite import _free_port  # type: ignore[import-not-found]

    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "AzureWebJobsStorage": azurite.storage_connection_string,
        "STATE_TABLE": f"Tput{tag}",
        "SUBSCRIPTIONS_TABLE": f"TputSubs{tag}",
        "FOLD_QUEUE": f"tput-{tag}",
        "ACS_LOCAL_STORE": str(Path(work) / "empty.duckdb"),
        "PYTHON_THREADPOOL_THREAD_COUNT": "32",
        "PYTHONPATH": str(ROOT),
    }
    ports = [_free_port("127.0.0.1") for _ in range(hosts)]
    processes = [
        _start_host(port, env, new_group=True, log=logs / f"host-{hosts}-{index}.log")
        for index, port in enumerate(ports)
    ]
    redelivery = Redelivery()
    store = StateStore.from_connection_string(azurite.connection_string, f"Tput{tag}")
    try:
        urls = [
            f"http://127.0.0.1:{port}/runtime/webhooks/eventgrid?functionName=ingest_email_events" for port in ports
        ]
        batches = [events[start : start + batch] for start in range(0, len(events), batch)]
        groups = [process.pid for process in processes]
        host_cpu, azurite_cpu = cpu_seconds(groups), cpu_seconds(_azurite_groups(azurite))
        started = time.monotonic()
        with ThreadPoolExecutor(2 * hosts) as pool:
            list(pool.map(lambda item: redelivery.post(urls[item[0] % hosts], item[1]), enumerate(batches)))
        ingested = time.monotonic() - started
        assert store.journal is not None
        while store.journal.shards():
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        host_cpu, azurite_cpu = cpu_seconds(groups) - host_cpu, cpu_seconds(_azurite_groups(azurite)) - azurite_cpu
        print(
            f"  {hosts} host process(es): {len(events):,} events ingested in {ingested:.1f} s "
            f"({len(events) / ingested:,.0f}/s; {redelivery.count} deliveries answered 5xx and made again), "
            f"folded by {elapsed:.1f} s: "
            f"{len(events) / elapsed:,.0f} observations/s end to end; CPU per observation: hosts "
            f"{1000 * host_cpu / len(events):.2f} ms, Azurite {1000 * azurite_cpu / len(events):.2f} ms "
            f"(1,500 observations/s would take {1500 * (host_cpu + azurite_cpu) / len(events):.1f} busy cores); "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        return elapsed
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        store.close()


def bench_throughput(count: int, batch: int, logs: Path) -> None:
    from local.store import open_store

    from azurite import running

    events = synthetic_events(count)
    logs.mkdir(parents=True, exist_ok=True)
    with running() as azurite, tempfile.TemporaryDirectory() as work:
        open_store(str(Path(work) / "empty.duckdb")).close()
        print(f"throughput: {count:,} events (shuffled, 10 % duplicates), batches of {batch}, Azurite shared")
        print(f"  host logs: {logs}")
        one = _run(1, events, batch, azurite, work, logs)
        two = _run(2, events, batch, azurite, work, logs)
        print(f"  two processes: {one / two:.2f}x the single-process figure")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("push", "sendtrack", "throughput"))
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--logs", type=Path, default=None, help="where the hosts' logs go (throughput)")
    args = parser.parse_args()
    if args.what == "push":
        bench_push(args.messages, args.rate, args.senders)
    elif args.what == "sendtrack":
        bench_sendtrack(args.messages, args.rate)
    else:
        bench_throughput(args.events, args.batch, args.logs or Path(tempfile.mkdtemp(prefix="throughput-")))


if __name__ == "__main__":
    main()
