"""Benchmark: read one oslo-scale yearly extract; MB/s and peak memory at two file sizes, against the
bare `iterparse` limit measured in the same run.

Usage: python bench/ingest_yearly_extract.py [--data-root DIR] [--year 2023] [--factor 4] [--unit 0301]
                                            [--small 40]

Generates the `oslo` scale into DIR if it holds no data, picks the unit's (Oslo, 0301) extract of
the year, builds a copy `factor` times larger (the persons repeated), and reads each file in a fresh
child process so the peak resident memory of one read is measured on its own: once with the
ingestion reader (collect, judge, stage, write Parquet), once with a bare `lxml.etree.iterparse`
that only walks the persons and frees them (the most any iterparse-based reader can reach). Flat
memory means the peak barely moves with file size. Then the same for up to `small` of the year's small
extracts (up to 1 MB; most extracts are: a national year has some 300 of them), read as ingestion reads
them, whole and judged together, so their per-file cost (parsing each, a Parquet file per table) shows.
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

SMALL_FILE_BYTES = 1 << 20  # as `transforms.ingest.readers.iplos_xml`


def bare_once(paths: list[Path]) -> dict:
    """Child process body: the bare iterparse walk over the persons, nothing read from them."""
    from lxml import etree

    from transforms.ingest.readers.base import FileRejected
    from transforms.ingest.readers.iplos_collect import root_layout
    from transforms.ingest.readers.xml_source import release

    started, persons = time.perf_counter(), 0
    for path in paths:
        try:
            layout = root_layout(path)
            batch = []
            for _event, elem in etree.iterparse(str(path), events=("end",), tag=layout.q(layout.person)):
                persons += 1
                batch.append(elem)
                if len(batch) >= 10_000:
                    release(batch)
                    batch = []
            release(batch)
        except (FileRejected, etree.XMLSyntaxError):  # a broken extract: ingestion rejects it too
            continue
    return {"seconds": time.perf_counter() - started, "records": persons,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def read_once(paths: list[Path], year: int, out: Path) -> dict:
    """Child process body: stage one file (or several small ones together), report seconds and records."""
    from transforms.core.layout import DataRoot
    from transforms.ingest.readers.base import ReadContext
    from transforms.ingest.readers.iplos_xml import read_iplos_file, read_small_iplos_files
    from transforms.ingest.sink import FileSink
    from transforms.privacy.identity import Pseudonymizer

    pseudonymizer, vault_key = Pseudonymizer(os.urandom(32)), os.urandom(32)
    sinks = [FileSink(DataRoot(out), f"raw/iplos/{year}/{p.stem}.xml", "iplos", {"year": str(year), "unit": p.stem},
                      pseudonymizer, vault_key) for p in paths]
    started = time.perf_counter()
    if len(paths) == 1:
        read_iplos_file(paths[0], sinks[0], ReadContext(True, year=year, unit=paths[0].stem))
    else:
        read_small_iplos_files([(p, sink, ReadContext(True, year=year, unit=p.stem))
                                for p, sink in zip(paths, sinks, strict=True)])
    for sink in sinks:
        sink.commit()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "records": sum(sum(sink.records_in.values()) for sink in sinks),
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
    parser.add_argument("--small", type=int, default=40, help="small extracts of the year to read together")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--bare", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        year, out, *paths = args.child
        print(json.dumps(read_once([Path(p) for p in paths], int(year), Path(out))))
        return
    if args.bare:
        print(json.dumps(bare_once([Path(p) for p in args.bare])))
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
        small = sorted(p for p in source.parent.glob("*.xml") if p.stat().st_size <= SMALL_FILE_BYTES)[:args.small]
        runs = [(f"{args.year}/{args.unit}.xml", [source]), (f"same x{args.factor}", [big])]
        if len(small) > 1:
            runs.append((f"{len(small)} small of {args.year}", small))
        for label, paths in runs:
            mb = sum(p.stat().st_size for p in paths) / 1e6
            bare = json.loads(subprocess.run([sys.executable, __file__, "--bare", *map(str, paths)], check=True,
                                             capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1])
            out = Path(tempfile.mkdtemp(dir=tmp))
            result = subprocess.run(
                [sys.executable, __file__, "--child", str(args.year), str(out), *map(str, paths)],
                check=True, capture_output=True, text=True, env=env,
            )
            r = json.loads(result.stdout.strip().splitlines()[-1])
            for name, run in (("bare iterparse", bare), ("ingestion", r)):
                share = bare["seconds"] / run["seconds"]
                print(f"{label:<22} {name:<16} {mb:7.1f} {run['records']:10,} {run['seconds']:7.2f} "
                      f"{mb / run['seconds']:7.1f} {share:8.0%} {run['peak_rss_mib']:13.0f}", flush=True)


if __name__ == "__main__":
    main()
