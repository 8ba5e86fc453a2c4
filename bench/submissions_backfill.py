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


def child(data_root: Path, workers: int | None) -> dict:
    import dataclasses
    import datetime as dt

    from transforms.events import build_events
    from transforms.identity import read_vault, write_vault_part
    from transforms.keys import load_keys
    from transforms.settings import load_settings
    from transforms.submissions import SubmissionWriter
    from transforms.timeline.build import write_parquet_atomic

    settings = dataclasses.replace(load_settings(data_root), as_of_date=dt.date(2025, 12, 31))
    keys = load_keys()
    started = time.perf_counter()
    events = build_events(data_root / "timeline", settings.cutoff_date)
    write_parquet_atomic(events, data_root / "timeline" / "events.parquet")
    vault = read_vault(sorted((data_root / "identity" / "parts").glob("*.bin")), keys.vault_key)
    write_vault_part(data_root / "identity" / "vault.bin", vault, keys.vault_key)
    prepared = time.perf_counter()
    cpu_before = _cpu_seconds()
    report = SubmissionWriter(settings, keys, workers=workers).run(dt.date(2017, 1, 1), dt.date(2025, 12, 31))
    finished = time.perf_counter()
    cpu = [round(a - b, 1) for a, b in zip(_cpu_seconds(), cpu_before, strict=True)]
    return {"events": events.height, "prepare_s": round(prepared - started, 1),
            "write_s": round(finished - prepared, 1), "messages": report.files,
            "notifications": sum(report.notifications.values()),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "cpu_s": cpu}


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its finished children (the pool processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.data_root, args.workers)))
        return
    os.environ.setdefault("KTT_KEY_FILE", str(Path(tempfile.gettempdir()) / "ktt-bench-keys.json"))
    for folder in ("ledger", "submissions"):
        shutil.rmtree(args.data_root / folder, ignore_errors=True)
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
