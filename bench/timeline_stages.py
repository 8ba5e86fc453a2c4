"""Benchmark: episodes and daily aggregates for a large synthetic world, wall time and peak memory.

Usage: python bench/timeline_stages.py --scale {oslo,national} [--data-root DIR]

Generates and ingests the scale into DIR when it holds no staged data yet (timed
too), then runs each stage in a fresh child process so that the peak resident
memory reported is that stage's own: `episodes` (coverage, linking, episodes,
stops, provider changes, written to timeline/) and `daily` (per-day aggregates
2017-01-01..2025-12-31 written to timeline/daily/day=.../).

Options: `--stages episodes,daily` runs only the stages named (`daily` reads the episodes
an earlier run wrote). `--truth 5055,5056,5059,1806,1875,1580` compares the episodes with
the generator's ground truth for those municipalities after the stages (every covered day,
every person and service; not timed): the national check of the split municipalities.
The load average before and after is printed with the figures: the machine is shared, and
wall times taken under load are not comparable.
Run national measurements one at a time: `flock /tmp/ktt-bench.lock python bench/...`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LAST_DAY = dt.date(2025, 12, 31)


def stage(name: str, data_root: Path) -> dict:
    """Child process body: run one stage, report its seconds and peak RSS."""
    import dataclasses

    from transforms.core.settings import load_settings

    settings = dataclasses.replace(load_settings(data_root), as_of_date=LAST_DAY)
    started = time.perf_counter()
    detail: dict = {}
    if name == "ingest":
        from transforms.ingest.staging import ingest_epj, ingest_iplos_year
        from transforms.privacy.keys import load_keys

        keys = load_keys()
        records = 0
        for year in range(2017, 2026):
            records += ingest_iplos_year(settings, keys, year).records_in
        records += ingest_epj(settings, keys).records_in
        detail["records"] = records
    elif name == "episodes":
        from transforms.timeline.build import build_timeline

        summary = build_timeline(settings)
        detail = {"episodes": summary.rows["episodes"], "stops": summary.rows["stops"],
                  "conflicts": summary.rows["conflicts"], "linking_rounds": summary.linking_rounds}
    elif name == "daily":
        from transforms.timeline.daily import write_daily_allocation

        detail["rows"] = write_daily_allocation(settings.data_root, dt.date(2017, 1, 1), LAST_DAY)
    seconds = time.perf_counter() - started
    return {"stage": name, "seconds": round(seconds, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), **detail}


def run_child(name: str, data_root: Path) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", name, "--data-root", str(data_root)],
                            check=True, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "KTT_ALLOW_SYNTHETIC_IDS": "1"})
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["demo", "small", "oslo", "national"], default="oslo")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--stages", default="episodes,daily",
                        help="comma-separated stages to run (episodes, daily); default both")
    parser.add_argument("--truth", default="",
                        help="comma-separated municipalities to compare with the ground truth afterwards")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    data_root = args.data_root or ROOT / "data" / f"bench-{args.scale}"
    if args.child:
        print(json.dumps(stage(args.child, data_root)))
        return
    if not os.environ.get("KTT_KEY_FILE"):
        os.environ["KTT_KEY_FILE"] = str(Path(tempfile.gettempdir()) / "ktt-bench-keys.json")
    from transforms.privacy.keys import init_key_file

    init_key_file()
    results = []
    if not (data_root / "raw").exists():
        from transforms.synthetic import generate

        started = time.perf_counter()
        summary = generate(data_root, args.scale, 42)
        results.append({"stage": "generate", "seconds": round(time.perf_counter() - started, 1),
                        "persons": summary.persons, "episodes": summary.episodes})
        print(results[-1], flush=True)
    if not (data_root / "staging").exists():
        results.append(run_child("ingest", data_root))
        print(results[-1], flush=True)
    load_before = os.getloadavg()
    for name in ("episodes", "daily"):
        if name not in args.stages.split(","):
            continue
        results.append(run_child(name, data_root))
        print(results[-1], flush=True)
    size = sum(p.stat().st_size for p in (data_root / "raw").rglob("*") if p.is_file()) / 1e6
    load_after = os.getloadavg()
    print(f"\n{args.scale}: raw data {size:,.0f} MB; load average (1/5/15 min) before "
          f"{' '.join(f'{x:.2f}' for x in load_before)}, after {' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"{'stage':<10} {'seconds':>8} {'peak RSS MiB':>13}  detail")
    for r in results:
        detail = {k: v for k, v in r.items() if k not in ("stage", "seconds", "peak_rss_mib")}
        print(f"{r['stage']:<10} {r['seconds']:>8} {r.get('peak_rss_mib', ''):>13}  {detail}")
    if args.truth:
        truth_agreement(data_root, args.truth.split(","))


def truth_agreement(data_root: Path, kommuner: list[str]) -> None:
    """Per municipality: days compared and (kommune, day, person, service) rows missing or extra."""
    from tests.truth_compare import compare_with_truth

    print("\nground truth:")
    for kommune in kommuner:
        agreement = compare_with_truth(data_root, kommuner=[kommune])
        print(f"{kommune}: {agreement.compared_days:,} days compared, {agreement.truth_rows:,} rows; "
              f"missing {agreement.n_missing:,}, extra {agreement.n_extra:,}")


if __name__ == "__main__":
    main()
