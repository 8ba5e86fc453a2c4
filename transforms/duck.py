"""DuckDB connections configured for batch work: bounded memory, spilling to disk, no progress bar."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import duckdb

# enough for a timeline batch; beyond it DuckDB spills to disk instead of exhausting the machine
DEFAULT_MEMORY_LIMIT = "6GB"


def connect(path: str = ":memory:", read_only: bool = False, memory_limit: str | None = None
            ) -> duckdb.DuckDBPyConnection:
    """A connection with bounded memory: KTT_DUCKDB_MEMORY_LIMIT, else the caller's `memory_limit`, else 6GB."""
    con = duckdb.connect(path, read_only=read_only)
    con.execute("SET enable_progress_bar = false")
    limit = os.environ.get("KTT_DUCKDB_MEMORY_LIMIT") or memory_limit or DEFAULT_MEMORY_LIMIT
    con.execute(f"SET memory_limit = '{limit}'")
    spill = Path(os.environ.get("KTT_DUCKDB_TEMP_DIR") or Path(tempfile.gettempdir()) / "ktt-duckdb")
    con.execute(f"SET temp_directory = '{spill}'")
    return con
