"""Import errors are fast and plain: one ServiceError with one line, never a raw DuckDB or decoding error.

Timings live in benchmarks/import_errors.py; here the bad record of 10,000 files is found by the exact
(line-numbered) path run on that one file only.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from test_importers import SEND, send_record, write_lines

from local import archives
from local.importers import ImportFailure, import_paths
from local.store import StoreBusy, StoreInaccessible, open_store, store_counts
from shared.errors import Conflict, InvalidInput, ServiceError, UpstreamFailure

#: Left out of `make test-fast` (CI runs it): 10,000 archive files (~11 s in all).
pytestmark = pytest.mark.slow

FILES = 10_000


@pytest.fixture()
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_store(tmp_path / "store" / "logs.duckdb")
    yield connection
    connection.close()


@pytest.fixture()
def exact_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the exact path was run on, in order."""
    runs: list[str] = []
    original = archives._stage_numbered_lines

    def spy(con: duckdb.DuckDBPyConnection, file: str, *args: Any) -> None:
        runs.append(file)
        original(con, file, *args)

    monkeypatch.setattr(archives, "_stage_numbered_lines", spy)
    return runs


def many_files(folder: Path, last_lines: list[str], count: int) -> Path:
    """*count* archive blobs of one send record each; the last (in import order) holds *last_lines*."""
    line = json.dumps(send_record("m"))
    for index in range(count - 1):
        (folder / f"{index:05d}.json").write_text(line.replace('"m"', f'"m{index}"') + "\n")
    last = folder / f"{count - 1:05d}.json"
    last.write_text("".join(text + "\n" for text in last_lines))
    return last


@pytest.mark.parametrize(
    ("bad_line", "reason", "count"),
    [
        # DuckDB's reader stops at it: one pass finds the file. The 10,000-file case of issue 10.
        ('{"time": "2026-01-02T03:04:05Z", "category": ', "invalid JSON", FILES),
        # A check fails: the fast path names the file (fewer files: the same code path, less test time).
        (json.dumps({k: v for k, v in send_record("x").items() if k != "time"}), "missing time", 2_000),
    ],
)
def test_a_bad_record_in_the_last_of_many_files_is_named_after_one_exact_pass(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, exact_runs: list[str], bad_line: str, reason: str, count: int
) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    last = many_files(folder, [json.dumps(send_record("ok1")), json.dumps(send_record("ok2")), bad_line], count)
    with pytest.raises(ImportFailure) as caught:
        import_paths(con, [folder])
    assert (caught.value.file, caught.value.line) == (str(last), 3)
    assert reason in caught.value.reason
    assert exact_runs == [str(last)]
    assert store_counts(con)[SEND] == 0
    # Without the bad line, every file imports on the fast path.
    last.write_text(json.dumps(send_record("ok1")) + "\n")
    exact_runs.clear()
    assert import_paths(con, [folder]).inserted == count
    assert exact_runs == []


def test_invalid_utf8_in_a_csv_names_the_line(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "ACSEmailStatusUpdateOperational.csv"
    path.write_bytes(b"TimeGenerated,CorrelationId,DeliveryStatus\n2026-01-02T03:04:05Z,m1,Delivered\nx,\xff\xfe,y\n")
    with pytest.raises(ImportFailure) as caught:
        import_paths(con, [path])
    assert (caught.value.file, caught.value.line) == (str(path), 3)
    assert "not UTF-8" in caught.value.reason and caught.value.exit_code == 2


def test_invalid_utf8_in_an_archive_names_the_line(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, exact_runs: list[str]
) -> None:
    good = write_lines(tmp_path / "a" / "PT1H.json", [send_record("g1")])
    bad = tmp_path / "b" / "PT1H.json"
    bad.parent.mkdir()
    bad.write_bytes(json.dumps(send_record("m1")).encode() + b'\n{"time": "\xff"}\n')
    with pytest.raises(ImportFailure) as caught:
        import_paths(con, [good, bad])
    assert (caught.value.file, caught.value.line) == (str(bad), 2)
    assert "not UTF-8" in caught.value.reason
    assert exact_runs == [str(bad)]


def test_an_unknown_table_is_invalid_input(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "PT1H.json", [send_record("m1")])
    with pytest.raises(InvalidInput) as caught:
        import_paths(con, [path], table="ACSChatOperational\nDROP")
    assert caught.value.exit_code == 2 and [e.parameter for e in caught.value.errors] == ["table"]
    assert "\n" not in str(caught.value) and "ACSEmailSendMailOperational" in str(caught.value)


def test_a_store_another_process_writes_is_a_conflict(tmp_path: Path) -> None:
    path = tmp_path / "logs.duckdb"
    open_store(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('open', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        with pytest.raises(StoreBusy) as caught:
            open_store(path)
    finally:
        holder.communicate("")
    assert isinstance(caught.value, Conflict) and caught.value.exit_code == 1
    assert str(caught.value) == (
        f"the local store {path} is in use by another process (PID {holder.pid}); try again when it is done"
    )


def _open_as_nobody(path: str, answer: Any) -> None:
    """In a forked child: drop root (root writes anywhere), open the store, send back what it raised."""
    try:
        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        open_store(path).close()
        answer.send(None)
    except ServiceError as error:
        answer.send((type(error).__name__, isinstance(error, UpstreamFailure), str(error)))
    except BaseException as error:  # anything else is the bug this test is about
        answer.send((type(error).__name__, False, str(error)))


@pytest.mark.parametrize("read_only", ["folder", "file"])
def test_a_read_only_store_is_a_plain_error(read_only: str) -> None:
    # Under /tmp itself: pytest's own tmp_path is closed to other users, and root is dropped to one.
    folder = Path(tempfile.mkdtemp(prefix="acs-read-only-"))
    try:
        folder.chmod(0o755)
        path = folder / "logs.duckdb"
        if read_only == "file":
            open_store(path).close()
            path.chmod(0o444)
        folder.chmod(0o555)
        ours, theirs = multiprocessing.get_context("fork").Pipe()
        child = multiprocessing.get_context("fork").Process(target=_open_as_nobody, args=(str(path), theirs))
        child.start()
        theirs.close()
        assert ours.poll(60), "the child did not answer"
        name, upstream, message = ours.recv()
        child.join(10)
    finally:
        folder.chmod(0o755)
        for item in folder.iterdir():
            item.unlink()
        folder.rmdir()
    assert (name, upstream) == (StoreInaccessible.__name__, True)
    assert message.startswith(f"the local store {path} cannot be opened: ") and "\n" not in message
