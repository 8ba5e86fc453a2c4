"""Benchmark: this checkout's first `ktt ingest` against another checkout's, in interleaved runs.

Usage: python bench/ingest_ab.py OTHER_CHECKOUT SOURCE_ROOT [--pairs N] [--scratch DIR]

Why interleaved: a shared 2-core machine's speed drifts from hour to hour (the same national ingestion took
279 to 301 CPU seconds in one morning), more than most changes gain, so two versions timed an hour apart say
nothing. Here each pair runs the other checkout, then this one (the order alternates from pair to pair), each
in a fresh process on a fresh scratch root linked to SOURCE_ROOT's `config/` and `raw/` (hard links; nothing
is written there). OTHER_CHECKOUT is a clone or worktree of another commit; both run with this venv's
packages and the key file in `KTT_KEY_FILE`. Prints each run's wall time, CPU time and the process tree's
peak memory, then the means.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from ingest_sources import link_root, run_measured  # bench/ is a folder of scripts, not a package

ROOT = Path(__file__).resolve().parents[1]


def checkouts(other: Path) -> dict[str, Path]:
    """The two versions compared: "other" (a clone or worktree of another commit) and "this" checkout."""
    if not (other / "pipelines" / "cli.py").is_file():
        raise SystemExit(f"{other}: not a checkout of this project (no pipelines/cli.py)")
    return {"other": other.resolve(), "this": ROOT}


def order(round_: int) -> list[str]:
    """Which version runs first in a round: they take turns, so neither always runs on a warmer machine."""
    return ["other", "this"] if round_ % 2 else ["this", "other"]


def ingest(checkout: Path, source: Path, scratch: Path) -> tuple[float, float, float]:
    """(wall s, CPU s, peak MiB) of one first ingestion of `source` with the code of `checkout`."""
    root = scratch / "data"
    link_root(source, root)
    env = {**os.environ, "KTT_ALLOW_SYNTHETIC_IDS": "1", "PYTHONPATH": str(checkout)}
    # `-m` puts the working directory first on the path: it must be the checkout whose code runs
    command = [sys.executable, "-m", "pipelines.cli", "ingest", "--data-root", str(root)]
    try:
        return run_measured(command, env, cwd=checkout)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path, help="a checkout of the version to compare with")
    parser.add_argument("source", type=Path, help="a data root with config/ and raw/ (ktt generate)")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--scratch", type=Path, default=None)
    args = parser.parse_args(argv)
    versions = checkouts(args.other)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="ingest-ab-"))
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in versions}
    print(f"{'pair':<5} {'checkout':<9} {'wall s':>8} {'CPU s':>8} {'peak MiB':>9}", flush=True)
    for pair in range(1, args.pairs + 1):
        for name in order(pair):
            wall, cpu, peak = ingest(versions[name], args.source.resolve(), scratch)
            runs[name].append((wall, cpu, peak))
            print(f"{pair:<5} {name:<9} {wall:8.1f} {cpu:8.1f} {peak:9.0f}", flush=True)
    for name, measured in runs.items():
        walls, cpus = [m[0] for m in measured], [m[1] for m in measured]
        print(f"mean  {name:<9} {statistics.mean(walls):8.1f} {statistics.mean(cpus):8.1f}   ({versions[name]})")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
