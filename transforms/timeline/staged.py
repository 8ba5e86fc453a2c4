"""Registering the staged Parquet (and empty stand-ins) as DuckDB views."""

from __future__ import annotations

from pathlib import Path

import duckdb

from transforms.conservation import staged_files
from transforms.schemas import STAGED_TABLES
from transforms.settings import Settings


def sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def register_staged(con: duckdb.DuckDBPyConnection, settings: Settings) -> dict[str, int]:
    """One view per staged table; a table with no files yet is an empty table of the declared schema.

    Returns the number of files behind each view.
    """
    counts = {}
    for name, table in STAGED_TABLES.items():
        files = staged_files(settings, name)
        counts[name] = len(files)
        if files:
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({sql_list(files)}, "
                        "hive_partitioning = false, union_by_name = true)")
        else:
            con.register(f"{name}_empty", table.empty().to_arrow())
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {name}_empty")
    return counts
