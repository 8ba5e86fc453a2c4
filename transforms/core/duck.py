"""DuckDB connections configured for batch work: bounded memory, spilling to disk, no progress bar."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import duckdb

from transforms.tables import Table

_SERIAL = itertools.count()

# enough for a timeline batch; beyond it DuckDB spills to disk instead of exhausting the machine
DEFAULT_MEMORY_LIMIT = "6GB"


def connect(path: str = ":memory:", read_only: bool = False, memory_limit: str | None = None,
            threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A connection with bounded memory: KTT_DUCKDB_MEMORY_LIMIT, else the caller's `memory_limit`, else 6GB.

    `threads` caps DuckDB's worker threads (default: one per core), for callers that run several
    connections side by side.
    """
    con = duckdb.connect(path, read_only=read_only)
    con.execute("SET enable_progress_bar = false")
    # DuckDB (1.3+) keeps a copy of what it reads from files, for remote storage; the inputs here are local
    # files already in the page cache, and the copies cost a tenth of a timeline batch's CPU
    if con.execute("SELECT count(*) FROM duckdb_settings() WHERE name = 'enable_external_file_cache'").fetchone()[0]:
        con.execute("SET enable_external_file_cache = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    limit = os.environ.get("KTT_DUCKDB_MEMORY_LIMIT") or memory_limit or DEFAULT_MEMORY_LIMIT
    con.execute(f"SET memory_limit = '{limit}'")
    spill = Path(os.environ.get("KTT_DUCKDB_TEMP_DIR") or Path(tempfile.gettempdir()) / "ktt-duckdb")
    # spill files have fixed names per database: connections side by side (threads or processes) get a
    # folder each, which DuckDB creates on first spill and removes on close
    spill.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = '{spill / f'{os.getpid()}-{next(_SERIAL)}'}'")
    return con


def sql_literal(text: str | Path) -> str:
    """A string (a path) as a DuckDB string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def sql_list(paths: list[Path]) -> str:
    """A list of file paths as a DuckDB list literal (`read_parquet([...])`)."""
    return "[" + ", ".join(sql_literal(p) for p in paths) + "]"


def register_views(con: duckdb.DuckDBPyConnection, root: Path, tables: Iterable[Table]) -> None:
    """One view per written table, named as the table, over its files under the data root `root`."""
    for table in tables:
        hive = "true" if table.hive_partitioning else "false"
        files = table.glob(root) if table.partitioned else str(table.location(root))
        con.execute(f"CREATE OR REPLACE VIEW {table.name} AS SELECT * FROM read_parquet("
                    f"{sql_literal(files)}, hive_partitioning = {hive})")
