"""Start (and stop) Azurite's Table and Queue services for tests; not a test module.

Uses the Azurite pinned in ``tools/azurite`` (``npm ci --prefix tools/azurite``): ``azurite-table`` and
``azurite-queue``, each on a free loopback port with in-memory persistence. ``connection_string`` names the
Table endpoint only (stores built from it work without a queue: the timer folds the journal in line);
``storage_connection_string`` names both (the fold is queued, as in Azure). Set ``AZURITE_TABLE_ENDPOINT``
(e.g. ``http://127.0.0.1:10002/devstoreaccount1``) or ``AZURITE_CONNECTION_STRING`` (and
``AZURITE_QUEUE_ENDPOINT``) to reuse an Azurite that is already running (CI may start one); then nothing is
started or stopped here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

# Azurite's well-known development account (public, documented), as the product resolves UseDevelopmentStorage=true.
from shared.summaries.table import DEV_ACCOUNT, DEV_KEY

ROOT = Path(__file__).resolve().parents[2]
AZURITE_DIR = ROOT / "tools" / "azurite"
AZURITE_TABLE_BIN = AZURITE_DIR / "node_modules" / ".bin" / "azurite-table"
AZURITE_QUEUE_BIN = AZURITE_DIR / "node_modules" / ".bin" / "azurite-queue"


FLAGS = (
    "--inMemoryPersistence",
    "--skipApiVersionCheck",
    "--loose",
    "--disableProductStyleUrl",
    "--disableTelemetry",
    "--silent",
)


class AzuriteUnavailable(RuntimeError):
    """Azurite is not installed or did not start."""


def connection_string(
    endpoint: str, account: str = DEV_ACCOUNT, key: str = DEV_KEY, queue_endpoint: str | None = None
) -> str:
    text = f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};TableEndpoint={endpoint}"
    return f"{text};QueueEndpoint={queue_endpoint}" if queue_endpoint else text


@dataclass
class Azurite:
    endpoint: str
    connection_string: str
    host: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    started_seconds: float = 0.0
    _workdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)
    #: The Queue service (None: not started, or an external Azurite without AZURITE_QUEUE_ENDPOINT).
    queue_endpoint: str | None = None
    queue: Azurite | None = field(default=None, repr=False)

    @property
    def storage_connection_string(self) -> str:
        """Table and Queue endpoints (the Functions app's AzureWebJobsStorage, folds queued)."""
        if self.queue_endpoint is None:
            raise AzuriteUnavailable("Azurite's Queue service is not running (set AZURITE_QUEUE_ENDPOINT)")
        return connection_string(self.endpoint, queue_endpoint=self.queue_endpoint)

    @property
    def external(self) -> bool:
        return self.process is None

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.queue is not None:
            self.queue.stop()
            self.queue = None
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)  # its own process group, started below
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _answers(host: str, port: int) -> bool:
    """True once the port speaks HTTP (any status)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/{DEV_ACCOUNT}/Tables", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, urllib.error.URLError):
        return False


def _external() -> Azurite | None:
    explicit = os.environ.get("AZURITE_CONNECTION_STRING", "").strip()
    endpoint = os.environ.get("AZURITE_TABLE_ENDPOINT", "").strip().rstrip("/")
    if explicit:
        parts = dict(p.split("=", 1) for p in explicit.split(";") if "=" in p)
        endpoint = parts.get("TableEndpoint", endpoint).rstrip("/")
        if not endpoint:
            raise AzuriteUnavailable("AZURITE_CONNECTION_STRING must contain TableEndpoint=...")
        conn = explicit
    elif endpoint:
        if endpoint.rsplit("/", 1)[-1] != DEV_ACCOUNT:
            endpoint = f"{endpoint}/{DEV_ACCOUNT}"
        conn = connection_string(endpoint)
    else:
        return None
    host_port = endpoint.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    azurite = Azurite(endpoint=endpoint, connection_string=conn, host=host or host_port, port=int(port or 80))
    queue = os.environ.get("AZURITE_QUEUE_ENDPOINT", "").strip().rstrip("/")
    if queue:
        azurite.queue_endpoint = queue if queue.endswith(DEV_ACCOUNT) else f"{queue}/{DEV_ACCOUNT}"
    if not _answers(azurite.host, azurite.port):
        raise AzuriteUnavailable(
            f"the Azurite at {endpoint} (AZURITE_TABLE_ENDPOINT/AZURITE_CONNECTION_STRING) does not answer"
        )
    return azurite


def start(timeout: float = 30.0, host: str = "127.0.0.1") -> Azurite:
    """Azurite's Table and Queue services for this test session (or the external one, if configured)."""
    external = _external()
    if external is not None:
        return external
    table = _start_service(AZURITE_TABLE_BIN, "table", timeout, host)
    try:
        table.queue = _start_service(AZURITE_QUEUE_BIN, "queue", timeout, host)
    except AzuriteUnavailable:
        table.stop()
        raise
    table.queue_endpoint = table.queue.endpoint
    return table


def _start_service(binary: Path, service: str, timeout: float, host: str) -> Azurite:
    if not binary.exists():
        raise AzuriteUnavailable(f"Azurite is not installed ({binary} is missing): run `npm ci --prefix tools/azurite`")
    if shutil.which("node") is None:
        raise AzuriteUnavailable("Azurite needs Node.js (`node` is not on PATH)")
    began = time.monotonic()
    last_error = ""
    for _attempt in range(3):  # the free port can be taken between probing and binding
        port = _free_port(host)
        workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        log_path = Path(workdir.name) / "azurite.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(binary), f"--{service}Host", host, f"--{service}Port", str(port), *FLAGS],
                cwd=workdir.name,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        endpoint = f"http://{host}:{port}/{DEV_ACCOUNT}"
        azurite = Azurite(
            endpoint=endpoint,
            connection_string=connection_string(endpoint),
            host=host,
            port=port,
            process=process,
            log_path=log_path,
            _workdir=workdir,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if _answers(host, port):
                azurite.started_seconds = round(time.monotonic() - began, 3)
                return azurite
            time.sleep(0.1)
        code = process.poll()
        what = f"exited with code {code}" if code is not None else f"did not answer within {timeout:.0f} s"
        last_error = f"{what}: {azurite.log_tail()}"
        azurite.stop()
    raise AzuriteUnavailable(f"Azurite {last_error}")


@contextmanager
def running(timeout: float = 30.0) -> Iterator[Azurite]:
    azurite = start(timeout)
    try:
        yield azurite
    finally:
        azurite.stop()
