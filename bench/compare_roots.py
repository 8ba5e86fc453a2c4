"""Compare the outputs of two data roots: every Parquet table, message file and ledger table.

Used to show that a change of code (a restructuring, a new reader) leaves the outputs as they were:
run the same backfill on two copies of one synthetic world, one with each version of the code, then

    python bench/compare_roots.py data/before data/after [--ignore GLOB ...]

Parquet files are matched by their path under the root and compared as tables with DuckDB's
`EXCEPT ALL` both ways (row order and file layout may differ, contents may not); message files
(`submissions/`, `outbox/`) byte for byte; the ledger's tables with `EXCEPT ALL` both ways. List columns
(episode lineage) compare as lists. Exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

import duckdb

SKIPPED_FOLDERS = ("raw", "truth", "config", ".dagster", "reports")
LEDGER_TABLES = ("notifications", "written_days", "persons")


def _files(root: Path, suffix: str, ignore: list[str]) -> set[str]:
    found = set()
    for path in root.rglob(f"*{suffix}"):
        rel = path.relative_to(root).as_posix()
        if rel.split("/", 1)[0] in SKIPPED_FOLDERS or any(fnmatch.fnmatch(rel, g) for g in ignore):
            continue
        found.add(rel)
    return found


def _q(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _table_difference(con: duckdb.DuckDBPyConnection, left: str, right: str) -> tuple[int, int, int, int]:
    """(rows left, rows right, rows only left, rows only right) of two relations given as SQL."""
    n_left = con.execute(f"SELECT count(*) FROM {left}").fetchone()[0]
    n_right = con.execute(f"SELECT count(*) FROM {right}").fetchone()[0]
    only_left = con.execute(f"SELECT count(*) FROM (FROM {left} EXCEPT ALL FROM {right})").fetchone()[0]
    only_right = con.execute(f"SELECT count(*) FROM (FROM {right} EXCEPT ALL FROM {left})").fetchone()[0]
    return n_left, n_right, only_left, only_right


def compare(a: Path, b: Path, ignore: list[str]) -> list[str]:
    problems: list[str] = []
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    parquet_a, parquet_b = _files(a, ".parquet", ignore), _files(b, ".parquet", ignore)
    for rel in sorted(parquet_a ^ parquet_b):
        problems.append(f"{rel}: only in {'first' if rel in parquet_a else 'second'}")
    tables = 0
    for rel in sorted(parquet_a & parquet_b):
        left, right = f"read_parquet({_q(a / rel)})", f"read_parquet({_q(b / rel)})"
        cols_left = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {left}").fetchall()]
        cols_right = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {right}").fetchall()]
        if cols_left != cols_right:
            problems.append(f"{rel}: columns differ: {cols_left} vs {cols_right}")
            continue
        n_left, n_right, only_left, only_right = _table_difference(con, left, right)
        tables += 1
        if only_left or only_right or n_left != n_right:
            problems.append(f"{rel}: {n_left} vs {n_right} rows, {only_left} only in first, "
                            f"{only_right} only in second")
    messages = 0
    xml_a, xml_b = _files(a, ".xml", ignore), _files(b, ".xml", ignore)
    for rel in sorted(xml_a ^ xml_b):
        problems.append(f"{rel}: only in {'first' if rel in xml_a else 'second'}")
    for rel in sorted(xml_a & xml_b):
        messages += 1
        if (a / rel).read_bytes() != (b / rel).read_bytes():
            problems.append(f"{rel}: bytes differ")
    ledger_a, ledger_b = a / "ledger" / "ledger.duckdb", b / "ledger" / "ledger.duckdb"
    ledger_rows = 0
    if ledger_a.exists() != ledger_b.exists():
        problems.append("ledger/ledger.duckdb: only in one root")
    elif ledger_a.exists():
        con.execute(f"ATTACH {_q(ledger_a)} AS la (READ_ONLY)")
        con.execute(f"ATTACH {_q(ledger_b)} AS lb (READ_ONLY)")
        for table in LEDGER_TABLES:
            n_left, n_right, only_left, only_right = _table_difference(con, f"la.{table}", f"lb.{table}")
            ledger_rows += n_left
            if only_left or only_right or n_left != n_right:
                problems.append(f"ledger {table}: {n_left} vs {n_right} rows, {only_left} only in first, "
                                f"{only_right} only in second")
    print(f"compared {tables} Parquet files, {messages} message files, {ledger_rows} ledger rows")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--ignore", nargs="*", default=[], help="globs of relative paths to leave out")
    args = parser.parse_args(argv)
    problems = compare(args.first.resolve(), args.second.resolve(), args.ignore)
    for line in problems:
        print(line)
    print("identical" if not problems else f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
