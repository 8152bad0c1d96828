"""The embedded store under use: imports replace the store file while a DuckDbSource serves it.

A real server (DuckDbSource holding the file, in this process) and real imports (other processes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_importers import send_record, status_record, write_lines

from local.embedded import DuckDbSource
from local.importers import ImportFailure, import_into_store
from local.replacement import LOCK_SUFFIX, writing_store
from local.store import StoreBusy, open_store
from shared.insights import Insights
from shared.models import TraceParams

#: Left out of `make test-fast` (CI runs it): imports and servers in subprocesses (~13 s in all).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 3, tzinfo=UTC)
BEFORE = "11111111-1111-4111-8111-111111111111"
AFTER = "22222222-2222-4222-8222-222222222222"
OTHER = "33333333-3333-4333-8333-333333333333"


def archive(folder: Path, message_id: str) -> Path:
    """An archive blob with one delivered message."""
    return write_lines(
        folder / "PT1H.json", [send_record(message_id), status_record(message_id, "a@example.com", "Delivered")]
    )


def in_process(code: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def import_elsewhere(store: Path, *paths: Path) -> subprocess.Popen[str]:
    """import_into_store in another process (what `python -m shared import` is to call)."""
    listed = ", ".join(repr(str(p)) for p in paths)
    return in_process(
        f"from local.importers import import_into_store; import json; "
        f"print(json.dumps(import_into_store({str(store)!r}, [{listed}]).as_dict()))"
    )


def finished(process: subprocess.Popen[str]) -> dict[str, object]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    result: dict[str, object] = json.loads(out)
    return result


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[Path, Insights]]:
    """A store holding BEFORE, served by a DuckDbSource that is open (holding the file) before the test acts."""
    store = tmp_path / "store" / "logs.duckdb"
    import_into_store(store, [archive(tmp_path / "before", BEFORE)])
    source = DuckDbSource(store)
    insights = Insights(source, clock=lambda: NOW)
    assert found(insights, BEFORE) and not found(insights, AFTER)
    yield store, insights
    source.close()


def found(insights: Insights, message_id: str) -> bool:
    """Whether a trace of the message finds it (its send and status rows are stored and served)."""
    result = insights.trace(TraceParams(message_id=message_id))
    return result.state != "notFound" and result.send is not None and len(result.recipients) == 1


def test_an_import_in_another_process_while_served_is_answered_within_seconds(
    served: tuple[Path, Insights], tmp_path: Path
) -> None:
    store, insights = served
    report = finished(import_elsewhere(store, archive(tmp_path / "after", AFTER)))
    assert report["tables"] == {
        "ACSEmailSendMailOperational": {"read": 1, "inserted": 1, "duplicates": 0},
        "ACSEmailStatusUpdateOperational": {"read": 1, "inserted": 1, "duplicates": 0},
    }
    assert eventually(lambda: found(insights, AFTER))
    assert found(insights, BEFORE)
    assert sorted(p.name for p in store.parent.iterdir()) == ["logs.duckdb", "logs.duckdb" + LOCK_SUFFIX]


def test_the_cli_imports_while_served(served: tuple[Path, Insights], tmp_path: Path) -> None:
    store, insights = served
    process = subprocess.run(
        [sys.executable, "-m", "shared", "import", str(archive(tmp_path / "after", AFTER))],
        cwd=ROOT,
        env={**os.environ, "ACS_LOCAL_STORE": str(store), "LOG_ANALYTICS_WORKSPACE_ID": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    assert eventually(lambda: found(insights, AFTER))


def test_a_store_file_replaced_under_the_server_is_not_served_stale(
    served: tuple[Path, Insights], tmp_path: Path
) -> None:
    store, insights = served
    other = tmp_path / "other.duckdb"
    con = open_store(other)
    from local.importers import import_paths

    import_paths(con, [archive(tmp_path / "other", OTHER)])
    con.close()
    other.replace(store)
    assert eventually(lambda: found(insights, OTHER))
    assert not found(insights, BEFORE)


def test_a_failed_import_leaves_the_served_store_as_it_was(served: tuple[Path, Insights], tmp_path: Path) -> None:
    store, insights = served
    before = store.stat()
    bad = write_lines(tmp_path / "bad" / "PT1H.json", [send_record(AFTER), "{not json"])
    with pytest.raises(ImportFailure):
        import_into_store(store, [bad])
    after = store.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in store.parent.iterdir()) == ["logs.duckdb", "logs.duckdb" + LOCK_SUFFIX]
    time.sleep(DuckDbSource.FILE_CHECK_SECONDS)
    assert not found(insights, AFTER) and found(insights, BEFORE)


def test_two_imports_at_once_both_land(served: tuple[Path, Insights], tmp_path: Path) -> None:
    store, insights = served
    # Enough files that the two runs overlap; the second waits for the first's lock and copies its result.
    first = [archive(tmp_path / f"a{i}", f"aaaaaaaa-0000-4000-8000-{i:012d}") for i in range(200)]
    second = [archive(tmp_path / f"b{i}", f"bbbbbbbb-0000-4000-8000-{i:012d}") for i in range(200)]
    runs = [import_elsewhere(store, *first), import_elsewhere(store, *second)]
    reports = [finished(run) for run in runs]
    assert [r["files"] for r in reports] == [200, 200]
    con = open_store(store, read_only=True)
    try:
        assert con.execute('SELECT count(*) FROM "ACSEmailSendMailOperational"').fetchall() == [(401,)]
    finally:
        con.close()
    assert eventually(lambda: insights.source.check()[1].endswith("(401 sends)"))


def test_a_second_import_that_cannot_wait_is_a_conflict_naming_the_first(tmp_path: Path) -> None:
    store = tmp_path / "logs.duckdb"
    holder = in_process(
        "from local.replacement import writing_store; import sys\n"
        f"with writing_store({str(store)!r}):\n"
        "    print('writing', flush=True); sys.stdin.read()\n"
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "writing\n"
        started = time.monotonic()
        with pytest.raises(StoreBusy) as caught:
            import_into_store(store, [archive(tmp_path / "a", AFTER)], wait_seconds=0.5)
        assert time.monotonic() - started < 30
    finally:
        holder.communicate("", timeout=60)
    assert str(caught.value) == (
        f"another import into the local store {store} is running (PID {holder.pid}); try again when it is done"
    )
    assert caught.value.status == 409 and caught.value.exit_code == 1
    # Once the first is done, the lock is free again.
    assert import_into_store(store, [archive(tmp_path / "b", AFTER)], wait_seconds=0).inserted == 2


def test_a_write_that_fails_inside_the_block_changes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "logs.duckdb"
    import_into_store(store, [archive(tmp_path / "a", BEFORE)])
    with pytest.raises(RuntimeError), writing_store(store) as con:
        con.execute('DELETE FROM "ACSEmailSendMailOperational"')
        raise RuntimeError("stop")
    con = open_store(store, read_only=True)
    try:
        assert con.execute('SELECT count(*) FROM "ACSEmailSendMailOperational"').fetchall() == [(1,)]
    finally:
        con.close()


def test_a_second_import_waits_for_the_first(tmp_path: Path) -> None:
    store = tmp_path / "logs.duckdb"
    holder = in_process(
        "from local.replacement import writing_store; import sys\n"
        f"with writing_store({str(store)!r}) as con:\n"
        '    con.execute("CREATE TABLE marker AS SELECT 1 AS written_first")\n'
        "    print('writing', flush=True); sys.stdin.readline()\n"
    )
    assert holder.stdout is not None and holder.stdout.readline() == "writing\n"
    waiting = import_elsewhere(store, archive(tmp_path / "a", AFTER))
    time.sleep(1.0)
    assert waiting.poll() is None  # still waiting for the lock
    holder.communicate("done\n", timeout=60)
    assert finished(waiting)["files"] == 1
    con = open_store(store, read_only=True)
    try:  # the second import started from the first one's result
        assert con.execute("SELECT written_first FROM marker").fetchall() == [(1,)]
        assert con.execute('SELECT count(*) FROM "ACSEmailSendMailOperational"').fetchall() == [(1,)]
    finally:
        con.close()


def test_sample_data_written_while_served_is_answered(served: tuple[Path, Insights]) -> None:
    from datetime import date

    from local.sample import fill_store_file

    store, insights = served
    counts = fill_store_file(store, 40, 1, 5, date(2026, 1, 1))
    assert counts["ACSEmailSendMailOperational"] == 40
    assert eventually(lambda: insights.source.check()[1].endswith("(41 sends)"))
    assert found(insights, BEFORE)
