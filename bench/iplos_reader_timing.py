"""Time the yearly-extract reader on one file: collect only (old lxml / new fast / bare iterparse) and
collect + judge + sink (`read_iplos_file`, old and new), each the best of `--repeat` runs in this process.

    python bench/iplos_reader_timing.py FILE [--repeat 5] [--year 2019]

"old" is the lxml collector (`KTT_IPLOS_FAST=0`), "new" the xml2arrow collector of `iplos_fast`
(falling back to lxml where it must; the fallback reasons are printed)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lxml import etree  # noqa: E402

from transforms.core.layout import DataRoot  # noqa: E402
from transforms.ingest.readers import iplos_fast  # noqa: E402
from transforms.ingest.readers.base import ReadContext  # noqa: E402
from transforms.ingest.readers.iplos_collect import Header, root_layout  # noqa: E402
from transforms.ingest.readers.iplos_xml import batches, read_iplos_file  # noqa: E402
from transforms.ingest.readers.xml_source import release  # noqa: E402
from transforms.ingest.sink import FileSink  # noqa: E402
from transforms.privacy.identity import Pseudonymizer  # noqa: E402


def bare(path: Path) -> None:
    layout = root_layout(path)
    held = []
    for _event, elem in etree.iterparse(str(path), events=("end",), tag=layout.q(layout.person)):
        held.append(elem)
        if len(held) >= 10_000:
            release(held)
            held = []
    release(held)


def collect(path: Path) -> None:
    layout = root_layout(path)
    for _batch in batches(path, layout, Header(), lambda: None):
        pass


def stage(path: Path, year: int) -> None:
    with tempfile.TemporaryDirectory() as out:
        sink = FileSink(DataRoot(Path(out)), f"raw/iplos/{year}/{path.stem}.xml", "iplos",
                        {"year": str(year), "unit": path.stem}, Pseudonymizer(b"k" * 32), b"v" * 32)
        read_iplos_file(path, sink, ReadContext(True, year=year, unit=path.stem))
        sink.commit()


def best(fn, repeat: int) -> tuple[float, float]:
    """(best wall seconds, its CPU seconds)."""
    runs = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--year", type=int, default=2019)
    args = parser.parse_args()
    path, repeat = args.path, args.repeat
    print(f"{path} {path.stat().st_size / 1e6:.2f} MB, best of {repeat}")
    stage(path, args.year)  # warm: imports, parser compilation, page cache
    results = {}
    for mode in ("0", "1"):
        os.environ["KTT_IPLOS_FAST"] = mode
        label = "old (lxml)" if mode == "0" else "new (xml2arrow)"
        results[f"collect {label}"] = best(lambda: collect(path), repeat)
        results[f"collect+judge+sink {label}"] = best(lambda: stage(path, args.year), repeat)
    results["bare iterparse"] = best(lambda: bare(path), repeat)
    for name, (wall, cpu) in results.items():
        print(f"  {name:36s} {wall * 1000:9.1f} ms wall {cpu * 1000:9.1f} ms CPU")
    print("  fast reader outcomes:", dict(iplos_fast.FALLBACKS))


if __name__ == "__main__":
    main()
