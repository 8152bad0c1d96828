"""Writing the store while it is served: each write builds the next store file and renames it into place.

The local server (:class:`local.embedded.DuckDbSource`) holds the store file open read-only for as long
as it runs, and DuckDB lets no process open a file for writing while another holds it. So writers never open
the served file: :func:`writing_store` copies it beside itself (``.<name>.<pid>.next``), hands out a
connection to the copy, and when the caller is done checkpoints it and renames it over the store
(``os.replace``: atomic, the path always names a whole store, old or new). A server notices the new file by
its identity (inode, modification time, size; one ``stat`` at most every second) and reopens it; queries
already running finish on the file they started on. Why this design:

* a running server never blocks an import, and an import never waits for queries or has them fail;
* a failed import leaves the store untouched (its copy is deleted), on top of the import's own transaction;
* no server change is needed beyond the stat; DuckDB keeps its one-writer rule on every file it opens.

The cost is one copy of the store per write (``shutil.copyfile``: sendfile on Linux, about a second per GB
here), and the disk space of a second store while a write runs and of the old one while a server still reads
it. A first import into a store that does not exist copies nothing.

Writers take turns through an exclusive ``flock`` on ``<store>.lock`` (a file that is never removed: removing
a lock file lets two writers lock different files). A second writer waits up to ``wait_seconds`` and then
fails with :class:`~local.store.StoreBusy` naming the process that holds the lock. The lock only orders
writers that use :func:`writing_store`; :func:`~local.store.open_store` on the path writes in place and
is for stores nobody serves (tests, benchmarks).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

from local.store import StoreBusy, open_store, store_error

#: Suffix of the lock file beside the store.
LOCK_SUFFIX = ".lock"
#: How long a second writer waits for the first by default (seconds).
WAIT_SECONDS = 10.0
_POLL_SECONDS = 0.05

StoreIdentity = tuple[int, int, int, int]


def store_identity(path: str | Path) -> StoreIdentity | None:
    """What tells one store file from its replacement: device, inode, modification time (ns), size; None if absent."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size


@contextlib.contextmanager
def writing_store(path: str | Path, wait_seconds: float = WAIT_SECONDS) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the next version of the store at *path*, renamed into place when the block ends normally.

    If the block raises, the store is left as it was. Raises :class:`StoreBusy` when another writer keeps the
    lock for *wait_seconds*, :class:`~local.store.StoreInaccessible` when the folder is not writable.
    """
    store = Path(path)
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise store_error(store, error) from None
    with _writer_lock(store, wait_seconds):
        for stale in store.parent.glob(
            f".{glob.escape(store.name)}.*.next"
        ):  # left by a writer that died; none runs now
            _remove(stale)
        work = store.with_name(f".{store.name}.{os.getpid()}.next")
        try:
            _copy_store(store, work)
            con = open_store(work)
        except OSError as error:
            _remove(work)
            raise store_error(store, error) from None
        except BaseException:
            _remove(work)
            raise
        try:
            yield con
            con.execute("CHECKPOINT")
        except BaseException:
            con.close()
            _remove(work)
            raise
        con.close()
        _install(work, store)


def _copy_store(store: Path, work: Path) -> None:
    """Copy the store (and a write-ahead log a crashed writer left) to *work*; nothing if there is no store."""
    if store.exists():
        shutil.copyfile(store, work)
        wal = _wal(store)
        if wal.exists():
            shutil.copyfile(wal, _wal(work))


def _install(work: Path, store: Path) -> None:
    """Rename the finished copy over the store. A stale log of the old file must not meet the new one: it goes
    first (a reader opening in between sees the old file without it, never a mismatched pair)."""
    with contextlib.suppress(FileNotFoundError):
        _wal(store).unlink()
    work.replace(store)
    folder = os.open(store.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


@contextlib.contextmanager
def _writer_lock(store: Path, wait_seconds: float) -> Iterator[None]:
    """Hold the exclusive lock on ``<store>.lock``, waiting up to *wait_seconds* for another writer."""
    lock_path = store.with_name(store.name + LOCK_SUFFIX)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise store_error(store, error) from None
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                    by = f" (PID {holder})" if holder.isdigit() else ""
                    raise StoreBusy(
                        f"another import into the local store {store} is running{by}; try again when it is done"
                    ) from None
                time.sleep(_POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _wal(store: Path) -> Path:
    return store.with_name(store.name + ".wal")


def _remove(work: Path) -> None:
    for leftover in (work, _wal(work)):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
