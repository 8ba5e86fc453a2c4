"""DuckDB connections configured for batch work: no progress bar on the terminal."""

from __future__ import annotations

import duckdb


def connect(path: str = ":memory:", read_only: bool = False) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(path, read_only=read_only)
    con.execute("SET enable_progress_bar = false")
    return con
