"""Benchmark: `ktt ingest` of every source of a data root, as a user runs it; then again with nothing changed,
then with one extract and one export file changed.

Usage: python bench/ingest_sources.py SOURCE_ROOT [--scratch DIR] [--keep]

SOURCE_ROOT holds `config/` and `raw/` (e.g. `ktt generate --scale national --seed 42 --data-root
data/national`, generated once and shared read-only). They are linked (hard links, nothing is
copied or written there) into a scratch root, and the whole command runs three times in a fresh
process each: the first ingestion, a second with no source changed (it must read nothing), and a
third after one yearly extract and one EPJ export file were replaced by an edited copy. Prints wall
time, CPU time and the peak resident memory of the command's whole process tree (its workers
included), and what each run read. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def run_measured(command: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak MiB) of a command and every process it starts.

    The CPU is the command's own resource usage when it is reaped, which includes every descendant it waited
    for (the pool's workers): summing each process's times as sampled counted a worker twice, once itself and
    once in its parent's reaped children."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    parent = psutil.Process(process.pid)
    peak = 0.0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        try:
            total = sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])
            peak = max(peak, total / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.2)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr.read()[-3000:]}")
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime, peak


def link_root(source: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    shutil.copytree(source / "config", target / "config")
    subprocess.run(["cp", "-al", str(source / "raw"), str(target / "raw")], check=True)


def replace_with_edit(path: Path, old: bytes, new: bytes) -> None:
    """A changed copy in place of a hard link (the shared source stays as it was)."""
    data = path.read_bytes().replace(old, new, 1)
    path.unlink()
    path.write_bytes(data)


def staged_at(root: Path) -> dict[str, str]:
    files = json.loads((root / "staging" / "source_files.json").read_text())
    return {rel: v["staged_at"] for rel, v in files.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    root = scratch / "data"
    link_root(args.source.resolve(), root)
    raw_mb = sum(p.stat().st_size for p in (root / "raw").rglob("*") if p.is_file()) / 1e6
    env = {**os.environ, "KTT_ALLOW_SYNTHETIC_IDS": "1", "PYTHONPATH": str(ROOT)}
    command = [str(Path(sys.executable).with_name("ktt")), "ingest", "--data-root", str(root)]
    print(f"sources: {raw_mb:,.0f} MB in {root / 'raw'}; {os.cpu_count()} cores", flush=True)
    print(f"{'run':<34} {'wall s':>8} {'CPU s':>8} {'peak MiB':>9} {'files read':>11}", flush=True)
    before: dict[str, str] = {}
    for label in ("first ingestion", "again, nothing changed", "one extract and one export changed"):
        if label.startswith("one"):
            extract = next(p for p in sorted((root / "raw" / "iplos" / "2024").glob("*.xml")))
            replace_with_edit(extract, b'kjonn="2"', b'kjonn="1"')
            export = next(p for p in sorted((root / "raw" / "epj").rglob("*")) if p.is_file())
            replace_with_edit(export, b"\n", b"\n\n")  # a blank line: a changed file with the same records
        wall, cpu, peak = run_measured(command, env)
        after = staged_at(root)
        read = sum(1 for rel, stamp in after.items() if before.get(rel) != stamp)
        before = after
        print(f"{label:<34} {wall:8.1f} {cpu:8.1f} {peak:9.0f} {read:11,}", flush=True)
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
