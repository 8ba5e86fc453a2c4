"""Benchmark: the CPU time of a fixed sample of ingestion tasks, this checkout's against another's, alternately.

Usage: python bench/ingest_tasks_ab.py OTHER_CHECKOUT SOURCE_ROOT [--step N] [--rounds R] [--scratch DIR]

Why: a whole `ktt ingest` (`bench/ingest_ab.py`) on a shared 2-core machine varies by ±5 % from one run to
the next, more than most changes to a reader gain, and each run takes minutes. Here one process per run
stages every N-th task of each kind (the large yearly extracts read alone, the groups of small ones, the EPJ
files and snapshot series) of SOURCE_ROOT on one core, and reports the CPU seconds per kind; runs of the two
checkouts alternate, R rounds. A change that is real shows in every round; the sum is about 15 CPU s at
`--step 20` on the national root. The tasks are those a first ingestion hands its workers (the same planning
code), so what it measures is the workers' part of `ktt ingest`, not the main process's.

SOURCE_ROOT holds `config/` and `raw/`; they are linked into a scratch root (nothing is written there).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ingest_ab import checkouts, order  # bench/ is a folder of scripts, not a package
from ingest_sources import link_root

# Run in the checkout under test (its `transforms` first on the path): prints {kind: CPU seconds}.
_RUN = """
import json, os, sys, time
os.environ["POLARS_MAX_THREADS"] = "1"  # as in a pool worker (`staging._worker_threads`)
from pathlib import Path
from transforms.core.settings import load_settings
from transforms.ingest import fingerprints as sources, staging
from transforms.privacy.keys import load_keys

root, step = Path(sys.argv[1]), int(sys.argv[2])
settings, keys = load_settings(root), load_keys(Path(os.environ["KTT_KEY_FILE"]))
files = [(settings, keys, year, path, "bench") for year in range(2017, 2026)
         for path in sources.iplos_files(settings, year)]
iplos = staging._iplos_tasks(files)
epj = []
for municipality, system in staging.epj_systems(settings):
    epj += staging._plan_system(settings, keys, municipality, system, {}, staging.IngestReport())[0]
sample = {"yearly extracts, large": [t for t in iplos if t[0] is staging._iplos_task][::step],
          "yearly extracts, small": [t for t in iplos if t[0] is staging._iplos_group_task][::step],
          "EPJ files": epj[::step]}
staging._dispatch(*sample["EPJ files"][-1])  # imports and first calls outside the measurement
spent = {}
for kind, tasks in sample.items():
    started = time.process_time()
    for task in tasks:
        staging._dispatch(*task)
    spent[kind] = round(time.process_time() - started, 3)
print(json.dumps({"tasks": {k: len(v) for k, v in sample.items()}, "cpu": spent}))
"""


def run(checkout: Path, root: Path, step: int) -> dict:
    env = {**os.environ, "KTT_ALLOW_SYNTHETIC_IDS": "1", "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, "-c", _RUN, str(root), str(step)], env=env, cwd=checkout,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: the sample failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path, help="a checkout of the version to compare with")
    parser.add_argument("source", type=Path, help="a data root with config/ and raw/ (ktt generate)")
    parser.add_argument("--step", type=int, default=20, help="every N-th task of each kind (default 20)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=None)
    args = parser.parse_args(argv)
    versions = checkouts(args.other)
    if not os.environ.get("KTT_KEY_FILE"):
        raise SystemExit("set KTT_KEY_FILE to the key file (`ktt keys init --key-file FILE`)")
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="ingest-tasks-ab-"))
    root = scratch / "data"
    link_root(args.source.resolve(), root)
    totals: dict[str, list[float]] = {name: [] for name in versions}
    try:
        for round_ in range(1, args.rounds + 1):
            for name in order(round_):
                measured = run(versions[name], root, args.step)
                totals[name].append(sum(measured["cpu"].values()))
                kinds = "  ".join(f"{kind} {cpu:6.2f}" for kind, cpu in measured["cpu"].items())
                print(f"round {round_}  {name:<5}  total {totals[name][-1]:6.2f} CPU s   {kinds}", flush=True)
        for name, values in totals.items():
            print(f"mean  {name:<5}  total {statistics.mean(values):6.2f} CPU s   ({versions[name]})")
        this, other = statistics.mean(totals["this"]), statistics.mean(totals["other"])
        print(f"this checkout: {100 * (this - other) / other:+.1f} % CPU against the other")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
