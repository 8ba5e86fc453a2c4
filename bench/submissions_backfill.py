"""Benchmark: the nine-year submission backfill; messages and notifications per second, peak memory.

Usage: python bench/submissions_backfill.py --data-root DIR [--workers N]
       (DIR a root prepared by bench/timeline_stages.py)

Derives the events from DIR's timeline, then writes every message 2017-01-01..2025-12-31 from an
empty ledger in a fresh child process, and reports wall time, throughput and the peak RSS of that
process (the planning and committing one; its pool processes, which render, validate and write the
files, are not included: spawned from it, the kernel would report the parent's size for them), and
the CPU seconds of that process and of its pool processes.

--workers N  pool processes beside the planning process (default: the writer's choice, up to two;
             0 writes everything in the one process)
--no-settle  write right after removing the previous run's files. By default, on ext4 without a journal
             (as /tmp on the build machine), the bench waits until 6 minutes have passed since it removed
             them: such a file system does not reuse an inode for 60 s after its deletion (360 s while its
             inode table block is dirty) and, for every file it creates, walks past all such inodes of the
             block group. Writing 931k files right after deleting 931k cost the pool processes some 200 CPU
             seconds in the kernel: a cost of the previous run's deletion, not of this run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SETTLE_S = 360  # ext4's RECENTCY_MIN + RECENTCY_DIRTY (fs/ext4/ialloc.c)
SETTLE_FILES = 10_000  # fewer removed files than this cost the next run little


def child(data_root: Path, workers: int | None) -> dict:
    import dataclasses
    import datetime as dt

    from transforms.core.settings import load_settings
    from transforms.privacy.identity import merge_vault
    from transforms.privacy.keys import load_keys
    from transforms.submit.events import write_events
    from transforms.submit.writer import SubmissionWriter

    settings = dataclasses.replace(load_settings(data_root), as_of_date=dt.date(2025, 12, 31))
    keys = load_keys()
    started = time.perf_counter()
    events = write_events(data_root, settings.cutoff_date)
    merge_vault(settings, keys)
    prepared = time.perf_counter()
    cpu_before = _cpu_seconds()
    report = SubmissionWriter(settings, keys, workers=workers).run(dt.date(2017, 1, 1), dt.date(2025, 12, 31))
    finished = time.perf_counter()
    cpu = [round(a - b, 1) for a, b in zip(_cpu_seconds(), cpu_before, strict=True)]
    return {"events": events["events"], "prepare_s": round(prepared - started, 1),
            "write_s": round(finished - prepared, 1), "messages": report.files,
            "notifications": sum(report.notifications.values()),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "cpu_s": cpu}


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its finished children (the pool processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def remove_previous(data_root: Path) -> int:
    """Remove the previous run's ledger and messages; returns how many files there were."""
    from transforms.core.layout import DataRoot

    layout, removed = DataRoot(data_root), 0
    for path in (layout.ledger, layout.submissions):
        removed += sum(len(files) for _, _, files in os.walk(path))
        shutil.rmtree(path, ignore_errors=True)
    return removed


def ext4_without_journal(path: Path) -> bool:
    """Whether `path` is on an ext4 file system without a journal (Linux; False when it cannot tell)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return False
    target = str(path.resolve())
    fitting = [m for m in mounts if target == m[1] or target.startswith(m[1].rstrip("/") + "/")]
    if not fitting:
        return False
    device, _, fstype = max(fitting, key=lambda m: len(m[1]))[:3]
    journals = Path("/proc/fs/jbd2")
    names = [j.name for j in journals.iterdir()] if journals.is_dir() else []
    return fstype == "ext4" and not any(n.startswith(Path(device).name + "-") for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--no-settle", dest="settle", action="store_false")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.data_root, args.workers)))
        return
    os.environ.setdefault("KTT_KEY_FILE", str(Path(tempfile.gettempdir()) / "ktt-bench-keys.json"))
    removed = remove_previous(args.data_root)
    if args.settle and removed >= SETTLE_FILES and ext4_without_journal(args.data_root):
        print(f"removed the previous run's {removed:,} files: waiting {SETTLE_S} s until ext4 reuses their inodes "
              "(--no-settle to start now)", flush=True)
        time.sleep(SETTLE_S)
    workers = [] if args.workers is None else ["--workers", str(args.workers)]
    result = subprocess.run([sys.executable, __file__, "--child", "--data-root", str(args.data_root), *workers],
                            check=True,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    r = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"events {r['events']:,} (derived in {r['prepare_s']} s)")
    print(f"messages {r['messages']:,}, notifications {r['notifications']:,} in {r['write_s']} s: "
          f"{r['messages'] / r['write_s']:,.0f} messages/s, {r['notifications'] / r['write_s']:,.0f} notifications/s, "
          f"peak RSS {r['peak_rss_mib']:,} MiB")
    print(f"CPU {r['cpu_s'][0]:,} s planning and committing, {r['cpu_s'][1]:,} s in pool processes")


if __name__ == "__main__":
    main()
