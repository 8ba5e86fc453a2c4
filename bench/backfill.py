"""Benchmark: the whole `ktt backfill` (ingestion to messages, asset checks included), then one new day.

Usage: python bench/backfill.py SOURCE_ROOT [--scratch DIR] [--to DAY] [--new-day DAY] [--keep]

SOURCE_ROOT holds `config/` and `raw/` (e.g. `data/national`); they are linked into a scratch root
(hard links, nothing is written there). Each run is a fresh process that does what `ktt backfill` does,
through the same code path (`pipelines.run.Runner.backfill`, each stage one Dagster run with its asset
checks), while a thread samples the resident memory of the whole process tree (the writer's and the
ingestion's pool processes included) every 0.1 s. Printed per stage: wall time, CPU time of the tree and
peak memory; the asset checks of the message stage are timed on their own (from their log lines).

Runs: the backfill from the cut-off to `--to` (default 2025-12-31), then `ktt backfill --from D --to D` for
the next day `--new-day` with no source changed (the daily schedule's work), then the day after with one
municipality's EPJ export changed (`--changed-kommune`, default 3301: the last record of its largest CSV or
JSON Lines file dropped, in a copy that replaces the link): only that file is read again and only that
municipality's timeline rebuilt; last, a new day as the schedule runs it the next morning, with the as-of
date one day later (`KTT_AS_OF_DATE` today instead of the default, yesterday) and no source changed: every
municipality's coverage gains a day, so every timeline is rebuilt, and the stages after it keep what derives
from rows that came out the same; then the morning after that, as the schedule usually finds it, with the
as-of date a day later again and one export changed overnight (`--overnight-kommune`, default 5001).
Delivery runs only when the
source root's `config/delivery.toml` names a transport (a national source root has none).
Run it on an otherwise idle machine: other jobs change the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest_sources import link_root  # noqa: E402  (bench/ is a folder of scripts, not a package)

STAGE_MARK = "@stage"  # the child's line on stderr as each stage ends


class TreeSampler(threading.Thread):
    """Peak RSS (MiB) of this process and all its descendants, since the last `mark`."""

    def __init__(self, interval: float = 0.1):
        super().__init__(daemon=True)
        self.interval, self.me = interval, psutil.Process()
        self.peak = self.overall = self.peak_self = self.stage_self = 0.0
        self._stop = threading.Event()

    def tree_mib(self) -> float:
        total = own = 0
        for p in [self.me, *self.me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a process that ended meanwhile
                rss = p.memory_info().rss
                total += rss
                own = own or rss
        self.peak_self = max(self.peak_self, own / 2**20)
        self.stage_self = max(self.stage_self, own / 2**20)
        return total / 2**20

    def run(self) -> None:
        while not self._stop.is_set():
            mib = self.tree_mib()
            self.peak, self.overall = max(self.peak, mib), max(self.overall, mib)
            self._stop.wait(self.interval)

    def mark(self) -> float:
        """The peak since the previous mark; starts the next interval."""
        peak, self.peak = self.peak, self.tree_mib()
        return max(peak, self.peak)

    def mark_self(self) -> float:
        """The main process's own peak since the previous call; starts the next interval."""
        peak, self.stage_self = self.stage_self, 0.0
        return peak

    def stop(self) -> None:
        self._stop.set()


def cpu_seconds() -> float:
    """CPU of this process, its live descendants and the ones it has reaped."""
    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for p in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            c = p.cpu_times()
            total += c.user + c.system
    return total


class CheckTimes(logging.Handler):
    """The asset checks' own timings and peak memory (`transforms.submit.checks` logs a line as they start and
    one per check); the writer's peak is the message stage's until the checks start."""

    PATTERN = re.compile(r"check (\S+): ([\d.]+) s")

    def __init__(self, sampler: TreeSampler) -> None:
        super().__init__(logging.INFO)
        self.sampler = sampler
        self.seconds: dict[str, float] = {}
        self.peaks: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("checks of"):
            self.peaks["(the writer, before the checks)"] = self.sampler.mark()
        elif m := self.PATTERN.match(message):
            self.seconds[m.group(1)] = self.seconds.get(m.group(1), 0.0) + float(m.group(2))
            self.peaks[m.group(1)] = self.sampler.mark()


def child(data_root: Path, first: dt.date | None, last: dt.date) -> dict:
    """One `ktt backfill` in this process, measured (the CLI's path without its progress bar)."""
    from pipelines.run import Runner
    from transforms.core.settings import load_settings

    settings = load_settings(data_root)
    sampler = TreeSampler()
    sampler.start()
    checks = CheckTimes(sampler)
    checks_log = logging.getLogger("transforms.submit.checks")
    checks_log.setLevel(logging.INFO)
    checks_log.addHandler(checks)
    stages: list[dict] = []
    started = time.perf_counter()
    cpu_start = cpu_seconds()

    def close_stage() -> None:
        if stages:
            stage = stages[-1]
            stage["wall_s"] = time.perf_counter() - stage.pop("_t")
            stage["cpu_s"] = cpu_seconds() - stage.pop("_cpu")
            stage["peak_mib"] = sampler.mark()
            stage["main_peak_mib"] = sampler.mark_self()
            # as it ends, not only at the end: a run that fails later still shows how far it got
            print(f"{STAGE_MARK} {stage['stage']}: {stage['wall_s']:.1f} s, CPU {stage['cpu_s']:.1f} s, "
                  f"peak {stage['peak_mib']:.0f} MiB", file=sys.stderr, flush=True)

    def on_stage(name: str) -> None:
        close_stage()
        sampler.mark()
        sampler.mark_self()
        stages.append({"stage": name, "_t": time.perf_counter(), "_cpu": cpu_seconds(),
                       "main_start_mib": psutil.Process().memory_info().rss / 2**20})

    Runner(data_root).backfill(first or settings.cutoff_date, last, on_stage=on_stage)
    close_stage()
    sampler.stop()
    return {"stages": stages, "checks_s": checks.seconds, "checks_peak_mib": checks.peaks,
            "wall_s": time.perf_counter() - started, "cpu_s": cpu_seconds() - cpu_start, "peak_mib": sampler.overall,
            "peak_main_process_mib": sampler.peak_self}


def measured_run(data_root: Path, first: dt.date | None, last: dt.date, env: dict[str, str]) -> dict:
    command = [sys.executable, __file__, "--child", str(data_root), "--to", last.isoformat()]
    if first:
        command += ["--from", first.isoformat()]
    tail: deque[str] = deque(maxlen=200)
    with tempfile.TemporaryFile("w+") as out:  # a file, not a pipe: stdout is read after stderr has ended
        child_process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
        assert child_process.stderr is not None
        for line in child_process.stderr:  # the log: stage lines shown as they come, the rest kept for a failure
            if line.startswith(STAGE_MARK):
                print(f"  ...{line[len(STAGE_MARK):].rstrip()}", flush=True)
            else:
                tail.append(line)
        if child_process.wait() != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{''.join(tail)[-4000:]}")
        out.seek(0)
        return json.loads(out.read().strip().splitlines()[-1])


def report(label: str, result: dict) -> None:
    print(f"\n{label}")
    print(f"  {'stage':<32} {'wall s':>8} {'CPU s':>8} {'peak MiB':>9}   main process MiB: at start, peak")
    for s in result["stages"]:
        print(f"  {s['stage']:<32} {s['wall_s']:8.1f} {s['cpu_s']:8.1f} {s['peak_mib']:9.0f}"
              f"   {s['main_start_mib']:9.0f} {s['main_peak_mib']:9.0f}")
        if s["stage"] == "write daily messages":
            for name, peak in result["checks_peak_mib"].items():
                seconds = result["checks_s"].get(name)
                label = f"check {name}" if seconds is not None else name
                print(f"    {label:<30} {'' if seconds is None else f'{seconds:6.1f}':>6} {'':>8} {peak:9.0f}")
    print(f"  {'total':<32} {result['wall_s']:8.1f} {result['cpu_s']:8.1f} {result['peak_mib']:9.0f}")
    print(f"  (peak of the main process alone: {result['peak_main_process_mib']:.0f} MiB)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument("--from", dest="first", type=dt.date.fromisoformat, default=None)
    parser.add_argument("--to", type=dt.date.fromisoformat, default=dt.date(2025, 12, 31))
    parser.add_argument("--new-day", type=dt.date.fromisoformat, default=None,
                        help="the day after --to unless given")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--changed-kommune", default="3301",
                        help="the municipality whose export changes before the last new day")
    parser.add_argument("--overnight-kommune", default="5001",
                        help="the municipality whose export changes before the last morning's run")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.source, args.first, args.to)))
        return 0
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="backfill-bench-"))
    root = scratch / "data"
    link_root(args.source.resolve(), root)
    env = {**os.environ, "KTT_ALLOW_SYNTHETIC_IDS": "1", "PYTHONPATH": str(ROOT)}
    raw_mb = sum(p.stat().st_size for p in (root / "raw").rglob("*") if p.is_file()) / 1e6
    print(f"sources: {raw_mb:,.0f} MB in {root / 'raw'}; {os.cpu_count()} cores; "
          f"peak memory is the whole process tree's", flush=True)
    report(f"ktt backfill --to {args.to}", measured_run(root, None, args.to, env))
    new_day = args.new_day or args.to + dt.timedelta(days=1)
    report(f"one new day: ktt backfill --from {new_day} --to {new_day} (no source changed)",
           measured_run(root, new_day, new_day, env))
    changed = change_one_export(root, args.changed_kommune)
    next_day = new_day + dt.timedelta(days=1)
    report(f"one new day: ktt backfill --from {next_day} --to {next_day} "
           f"({changed.relative_to(root)} changed)", measured_run(root, next_day, next_day, env))
    morning = next_day + dt.timedelta(days=1)
    report(f"the next morning: ktt backfill --from {morning} --to {morning} (as-of date one day later)",
           measured_run(root, morning, morning, {**env, "KTT_AS_OF_DATE": dt.date.today().isoformat()}))
    overnight = change_one_export(root, args.overnight_kommune)
    after = morning + dt.timedelta(days=1)
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    report(f"the morning after: ktt backfill --from {after} --to {after} (as-of date a day later again, "
           f"{overnight.relative_to(root)} changed overnight)",
           measured_run(root, after, after, {**env, "KTT_AS_OF_DATE": tomorrow.isoformat()}))
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def change_one_export(root: Path, kommune: str) -> Path:
    """Drop the last record of the municipality's largest CSV or JSON Lines export file. The file is a hard
    link into the source root: it is replaced by a changed copy, the source root is left as it was."""
    files = [p for p in (root / "raw" / "epj").glob(f"{kommune}-*/*") if p.suffix in (".csv", ".jsonl")]
    if not files:
        raise SystemExit(f"--changed-kommune {kommune}: no CSV or JSON Lines export under raw/epj/{kommune}-*")
    largest = max(files, key=lambda p: p.stat().st_size)
    records = largest.read_bytes().rstrip(b"\r\n").split(b"\n")
    largest.unlink()
    largest.write_bytes(b"\n".join(records[:-1]) + b"\n")
    return largest


if __name__ == "__main__":
    sys.exit(main())
