"""DuckDB connections configured for batch work: bounded memory, spilling to disk, no progress bar."""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import duckdb

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
