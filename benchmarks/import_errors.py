"""How fast a bad record is reported (issue 10 item 8), run by hand: ``python benchmarks/import_errors.py``.

Goal: one bad record in the last of 10,000 archive files is reported (ImportFailure with file and line) in no
more than twice the time a valid import of the same files takes. Builds FILES small ``PT1H.json`` blobs
(RECORDS send records each) under a temporary folder, then times, alternating, a valid import into a new
store and the same import with the last file's last line broken (invalid JSON: DuckDB's reader stops at it;
and a record without ``time``: a check fails). Prints one JSON object.

Options: ``--files N`` (default 10000), ``--records N`` (default 5), ``--runs N`` (default 3).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.importers import ImportFailure, import_paths  # noqa: E402
from local.store import open_store  # noqa: E402

RID = "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.COMMUNICATION/"
BROKEN = {
    "invalid JSON": '{"time": "2026-01-02T03:04:05Z", "category": ',
    "missing time": json.dumps({"category": "EmailSendMailOperational", "properties": {"Size": 1}}),
}


def record(file: int, line: int) -> str:
    return json.dumps(
        {
            "time": f"2026-01-02T03:{file % 60:02d}:{line % 60:02d}.{file:07d}Z",
            "resourceId": RID + "COMMUNICATIONSERVICES/ACS1",
            "operationName": "SendMail",
            "category": "EmailSendMailOperational",
            "correlationId": f"m-{file}-{line}",
            "properties": {"Size": 0.1, "ToRecipientsCount": 1, "UniqueRecipientsCount": 1, "TrafficSource": "SMTP"},
        }
    )


def build(folder: Path, files: int, records: int) -> Path:
    for index in range(files):
        text = "".join(record(index, line) + "\n" for line in range(records))
        (folder / f"{index:05d}" / "PT1H.json").parent.mkdir()
        (folder / f"{index:05d}" / "PT1H.json").write_text(text)
    return folder / f"{files - 1:05d}" / "PT1H.json"


def timed_import(folder: Path, work: Path) -> tuple[float, str]:
    store = work / "store.duckdb"
    con = open_store(store)
    try:
        started = time.perf_counter()
        try:
            import_paths(con, [folder])
            outcome = "imported"
        except ImportFailure as failure:
            outcome = str(failure)
        return time.perf_counter() - started, outcome
    finally:
        con.close()
        store.unlink()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="acs-import-errors-"))
    try:
        folder = work / "archive"
        folder.mkdir()
        last = build(folder, args.files, args.records)
        good = last.read_text()
        times: dict[str, list[float]] = {"valid": [], **{name: [] for name in BROKEN}}
        outcomes: dict[str, str] = {}
        for _ in range(args.runs):  # alternating, so a drift of the machine's speed hits every case alike
            last.write_text(good)
            times["valid"].append(timed_import(folder, work)[0])
            for name, line in BROKEN.items():
                last.write_text(good + line + "\n")
                elapsed, outcomes[name] = timed_import(folder, work)
                times[name].append(elapsed)
        medians = {name: statistics.median(values) for name, values in times.items()}
        print(
            json.dumps(
                {
                    "files": args.files,
                    "records_per_file": args.records,
                    "runs": args.runs,
                    "median_seconds": {name: round(value, 2) for name, value in medians.items()},
                    "ratio_to_valid": {name: round(medians[name] / medians["valid"], 2) for name in BROKEN},
                    "reported": {name: outcome.replace(str(work), "<tmp>") for name, outcome in outcomes.items()},
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
