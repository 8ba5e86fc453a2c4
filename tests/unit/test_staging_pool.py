"""The ingestion's pool: the largest tasks handed out first, the outcomes in the order of the tasks."""

from __future__ import annotations

import time
from pathlib import Path

from transforms.ingest import staging
from transforms.ingest.staging import FileOutcome


def _note_start(folder: str, name: str) -> FileOutcome:
    """A task (run in a worker process) that notes when it started."""
    Path(folder, name).write_text(str(time.monotonic_ns()))
    time.sleep(0.2)
    return FileOutcome(source_file=name, format="test", records_in=0, staged=0, quarantined=0, file_rule=None)


def test_the_largest_tasks_start_first_and_outcomes_keep_the_tasks_order(tmp_path, monkeypatch):
    monkeypatch.setenv("KTT_WORKERS", "2")
    names, sizes = ["a", "b", "c", "d", "e"], [1, 50, 2, 40, 3]
    outcomes = staging._run_tasks(_note_start, [(str(tmp_path), name) for name in names], sizes)
    assert [o.source_file for o in outcomes] == names
    started = sorted(names, key=lambda name: int((tmp_path / name).read_text()))
    assert set(started[:2]) == {"b", "d"} and started[-1] == "a"
