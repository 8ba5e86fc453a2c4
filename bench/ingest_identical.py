"""Stage a reference root's sources with this checkout and compare the staged tables with the reference's.

Usage: python bench/ingest_identical.py REFERENCE_ROOT [--scratch DIR] [--keep]

REFERENCE_ROOT is a data root ingested by another version of the code (e.g. a clone of an earlier
commit that ran `ktt generate` and `ktt ingest` on it), with the same key file in `KTT_KEY_FILE`.
Its `config/` and `raw/` are copied to a scratch root, `ktt ingest` runs there, and every staged
Parquet file (the staged tables, the quarantine, the per-file counts) is compared by path with
DuckDB's `EXCEPT ALL` both ways. The per-file counts compare on the columns both versions write
(this version adds `unchanged`). Exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]


def _q(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def compare_staging(reference: Path, candidate: Path) -> list[str]:
    problems = []
    ref_files = {p.relative_to(reference).as_posix() for p in (reference / "staging").rglob("*.parquet")}
    new_files = {p.relative_to(candidate).as_posix() for p in (candidate / "staging").rglob("*.parquet")}
    problems += [f"{rel}: only in the reference" for rel in sorted(ref_files - new_files)]
    problems += [f"{rel}: only in the candidate" for rel in sorted(new_files - ref_files)]
    con = duckdb.connect()
    rows = 0
    for rel in sorted(ref_files & new_files):
        left, right = f"read_parquet({_q(reference / rel)})", f"read_parquet({_q(candidate / rel)})"
        cols_left = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {left}").fetchall()]
        cols_right = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {right}").fetchall()]
        shared = [c for c in cols_left if c in cols_right]
        if shared != cols_left:
            problems.append(f"{rel}: columns {cols_left} vs {cols_right}")
            continue
        select = ", ".join(f'"{c}"' for c in shared)
        a, b = f"(SELECT {select} FROM {left})", f"(SELECT {select} FROM {right})"
        n_a = con.execute(f"SELECT count(*) FROM {a}").fetchone()[0]
        n_b = con.execute(f"SELECT count(*) FROM {b}").fetchone()[0]
        only_a = con.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchone()[0]
        only_b = con.execute(f"SELECT count(*) FROM ({b} EXCEPT ALL {a})").fetchone()[0]
        rows += n_a
        if n_a != n_b or only_a or only_b:
            problems.append(f"{rel}: {n_a} vs {n_b} rows, {only_a} only in the reference, {only_b} only in the "
                            "candidate")
    print(f"compared {len(ref_files & new_files)} staged Parquet files, {rows:,} rows")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("--scratch", type=Path, default=None, help="where to stage (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch root")
    args = parser.parse_args(argv)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="ingest-identical-"))
    target = scratch / "data"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for folder in ("config", "raw"):
        shutil.copytree(args.reference / folder, target / folder)
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("ktt")), "ingest", "--data-root", str(target)], check=True,
                   env={**os.environ, "KTT_ALLOW_SYNTHETIC_IDS": "1"}, stdout=subprocess.DEVNULL)
    print(f"ingested {target} in {time.perf_counter() - started:.1f} s")
    problems = compare_staging(args.reference.resolve(), target)
    for line in problems[:50]:
        print(line)
    print("identical" if not problems else f"{len(problems)} differences")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
