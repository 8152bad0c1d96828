"""Every CLI failure ends with one line naming the cause and exit 2 (bad input) or 1 (failure), never a traceback;
run as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Left out of `make test-fast` (CI runs it): the CLI in subprocesses, one builds a sample store (~12 s in all).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "ACS_LOCAL_STORE": str(tmp_path / "store.duckdb"),
        "LOG_ANALYTICS_WORKSPACE_ID": "",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "shared", *args],
        cwd=tmp_path,  # no local.settings.json here
        env={**environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_invalid_utf8_in_a_csv_is_bad_input_naming_the_file(tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    export.write_bytes(b"TimeGenerated,CorrelationId,Size\r\n2026-01-02T15:05:00Z,m\xff\xfe,1.0\r\n")
    assert_one_line(run(tmp_path, "import", str(export)), 2, "export.csv")


def test_an_unknown_table_is_bad_input(tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    export.write_text("TimeGenerated,CorrelationId\r\n2026-01-02T15:05:00Z,m1\r\n")
    assert_one_line(run(tmp_path, "import", str(export), "--table", "NoSuchTable"), 2, "table")


@pytest.mark.skipif(os.geteuid() == 0 and sys.platform != "linux", reason="permission bits")
def test_a_read_only_store_is_a_failure(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    export = tmp_path / "export.csv"
    export.write_text("TimeGenerated,CorrelationId,Size\r\n2026-01-02T15:05:00Z,m1,1.0\r\n")
    store = folder / "store.duckdb"
    assert run(tmp_path, "import", str(export), ACS_LOCAL_STORE=str(store)).returncode == 0
    folder.chmod(0o500)
    store.chmod(0o400)
    try:
        done = run(tmp_path, "import", str(export), ACS_LOCAL_STORE=str(store))
    finally:
        folder.chmod(0o700)
        store.chmod(0o600)
    if os.geteuid() == 0 and done.returncode == 0:
        pytest.skip("root writes through permission bits")
    assert_one_line(done, 1)


def test_a_missing_file_is_bad_input(tmp_path: Path) -> None:
    assert_one_line(run(tmp_path, "import", str(tmp_path / "nothing.json")), 2, "nothing.json")


def test_bad_options_are_bad_input(tmp_path: Path) -> None:
    assert_one_line(run(tmp_path, "stats", "colours"), 2)
    assert_one_line(run(tmp_path, "trace", "has space"), 2, "messageId")
    assert_one_line(run(tmp_path, "sample", "--messages", "0"), 2, "--messages")


def test_summarize_exits_1_when_a_day_failed(tmp_path: Path) -> None:
    """No Table Storage reachable: the day fails, the report says so on stdout, and the exit code is 1."""
    unreachable = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1"
    )
    done = run(tmp_path, "summarize", "--date", "2026-03-10", AzureWebJobsStorage=unreachable)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip().startswith("error: ")


def test_success_says_nothing_on_stderr_and_verbose_shows_the_warnings(tmp_path: Path) -> None:
    """No Table Storage configured: the trace answers from the logs, prints its JSON, and stderr stays empty;
    ``--verbose`` shows the warning that the delivery state was skipped."""
    env = {"AzureWebJobsStorage": "", "SUMMARY_STORAGE": ""}
    assert run(tmp_path, "sample", "--messages", "20", "--days", "1", **env).returncode == 0
    found = run(tmp_path, "search", "--top", "1", **env)
    assert found.returncode == 0 and found.stderr == "", found.stderr
    message_id = json.loads(found.stdout)["value"][0]["messageId"]
    quiet = run(tmp_path, "trace", message_id, **env)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert json.loads(quiet.stdout)["messageId"] == message_id
    verbose = run(tmp_path, "--verbose", "trace", message_id, **env)
    assert verbose.returncode == 0
    assert "delivery state unavailable" in verbose.stderr
