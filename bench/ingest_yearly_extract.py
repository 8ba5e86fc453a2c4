"""Benchmark: read one oslo-scale yearly extract; MB/s and peak memory at two file sizes, against the
bare `iterparse` limit measured in the same run.

Usage: python bench/ingest_yearly_extract.py [--data-root DIR] [--year 2023] [--factor 4] [--unit 0301]

Generates the `oslo` scale into DIR if it holds no data, picks the unit's (Oslo, 0301) extract of
the year, builds a copy `factor` times larger (the persons repeated), and reads each file in a fresh
child process so the peak resident memory of one read is measured on its own: once with the
ingestion reader (collect, judge, stage, write Parquet), once with a bare `lxml.etree.iterparse`
that only walks the persons and frees them (the most any iterparse-based reader can reach). Flat
memory means the peak barely moves with file size.
"""

from __future__ import annotations

import argparse
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


def bare_once(path: Path) -> dict:
    """Child process body: the bare iterparse walk over the persons, nothing read from them."""
    from lxml import etree

    from transforms.ingest.readers.iplos_collect import root_layout
    from transforms.ingest.readers.xml_source import release

    layout = root_layout(path)
    started, persons = time.perf_counter(), 0
    batch = []
    for _event, elem in etree.iterparse(str(path), events=("end",), tag=layout.q(layout.person)):
        persons += 1
        batch.append(elem)
        if len(batch) >= 10_000:
            release(batch)
            batch = []
    release(batch)
    return {"seconds": time.perf_counter() - started, "records": persons,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def read_once(path: Path, year: int, unit: str, out: Path) -> dict:
    """Child process body: stage one file, report seconds and records."""
    from transforms.core.layout import DataRoot
    from transforms.ingest.readers.base import ReadContext
    from transforms.ingest.readers.iplos_xml import read_iplos_file
    from transforms.ingest.sink import FileSink
    from transforms.privacy.identity import Pseudonymizer

    sink = FileSink(DataRoot(out), f"raw/iplos/{year}/{unit}.xml", "iplos", {"year": str(year), "unit": unit},
                    Pseudonymizer(os.urandom(32)), os.urandom(32))
    started = time.perf_counter()
    read_iplos_file(path, sink, ReadContext(True, year=year, unit=unit))
    sink.commit()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "records": sum(sink.records_in.values()),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def enlarge(source: Path, target: Path, factor: int) -> None:
    """Repeat the persons of an extract `factor` times (streaming, line based)."""
    lines = source.read_bytes().split(b"\n")
    start = next(i for i, line in enumerate(lines) if b"<Bruker " in line)
    end = max(i for i, line in enumerate(lines) if b"</Kommune>" in line)
    with target.open("wb") as handle:
        handle.write(b"\n".join(lines[:start]) + b"\n")
        body = b"\n".join(lines[start:end]) + b"\n"
        for _ in range(factor):
            handle.write(body)
        handle.write(b"\n".join(lines[end:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=ROOT / "data" / "bench-oslo")
    parser.add_argument("--year", type=int, default=2023)
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--unit", default="0301")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--bare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, year, unit, out = args.child
        print(json.dumps(read_once(Path(path), int(year), unit, Path(out))))
        return
    if args.bare:
        print(json.dumps(bare_once(Path(args.bare))))
        return
    source = args.data_root / "raw" / "iplos" / str(args.year) / f"{args.unit}.xml"
    if not source.exists():
        from transforms.synthetic import generate

        print(f"generating the oslo scale into {args.data_root} ...", flush=True)
        print(generate(args.data_root, "oslo", 42), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / f"{args.unit}.xml"
        enlarge(source, big, args.factor)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        print(f"{'file':<22} {'reader':<16} {'MB':>7} {'records':>10} {'s':>7} {'MB/s':>7} {'of bare':>8} "
              f"{'peak RSS MiB':>13}")
        for label, path in ((f"{args.year}/{args.unit}.xml", source), (f"same x{args.factor}", big)):
            mb = path.stat().st_size / 1e6
            bare = json.loads(subprocess.run([sys.executable, __file__, "--bare", str(path)], check=True,
                                             capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1])
            out = Path(tempfile.mkdtemp(dir=tmp))
            result = subprocess.run(
                [sys.executable, __file__, "--child", str(path), str(args.year), args.unit, str(out)],
                check=True, capture_output=True, text=True, env=env,
            )
            r = json.loads(result.stdout.strip().splitlines()[-1])
            for name, run in (("bare iterparse", bare), ("ingestion", r)):
                share = bare["seconds"] / run["seconds"]
                print(f"{label:<22} {name:<16} {mb:7.1f} {run['records']:10,} {run['seconds']:7.2f} "
                      f"{mb / run['seconds']:7.1f} {share:8.0%} {run['peak_rss_mib']:13.0f}", flush=True)


if __name__ == "__main__":
    main()
