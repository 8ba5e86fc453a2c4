"""`warehouse.duckdb`: a catalog of views over every Parquet output, for analysts.

The views, their descriptions and their columns' descriptions come from the table registry
(`transforms.tables`), so `duckdb_views()` and `duckdb_columns()` in the catalog document every
table as it is declared. The catalog holds only views, so it is small and rebuilt in a second; it
is written to a temporary file and renamed into place, so a reader (the webserver, an analyst's
session) never sees a half-written catalog and the writer never holds the published file open.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from transforms.core import duck
from transforms.core.atomic import replacing
from transforms.core.duck import sql_literal
from transforms.core.settings import Settings
from transforms.core.stamps import Stamp
from transforms.tables import EPISODE_STOPS, EPISODES, SPLIT_ASSIGNMENTS, TABLES, Table
from transforms.timeline.coverage import as_of_date
from transforms.timeline.daily import ALLOCATION_VIEW_SQL
from transforms.timeline.partial import without_as_of
from transforms.timeline.splits import SPLIT_DEFAULTS_DESCRIPTION, SPLIT_DEFAULTS_VIEW, SPLIT_DEFAULTS_VIEW_SQL

ALLOCATION_DESCRIPTION = ("Episodes expanded to one row per day and person (computed on demand): "
                          "day, kommune, person_key, service_code, episode_id, state (active or stopped).")


def published_tables(settings: Settings) -> list[Table]:
    """The Parquet tables that have files under the data root (only they get a view)."""
    return [t for t in TABLES.values() if t.storage == "parquet" and t.files(settings.data_root)]


def _create_view(con: duckdb.DuckDBPyConnection, root: Path, table: Table) -> None:
    source = sql_literal(table.glob(root) if table.partitioned else table.location(root))
    if table.hive_partitioning:
        keys = ", ".join(f"CAST({k} AS DATE) AS {k}" for k in table.partition_keys if k == "day")
        select = f"SELECT * REPLACE ({keys}) FROM read_parquet({source}, hive_partitioning = true)"
    else:
        select = f"SELECT * FROM read_parquet({source}, hive_partitioning = false, union_by_name = true)"
    con.execute(f"CREATE VIEW {table.name} AS {select}")
    con.execute(f"COMMENT ON VIEW {table.name} IS {sql_literal(table.description)}")
    for column in table.columns:
        con.execute(f"COMMENT ON COLUMN {table.name}.{column.name} IS {sql_literal(column.description)}")


def warehouse_stamp(settings: Settings) -> Stamp:
    return Stamp(settings.data_root, settings.root.warehouse.with_name(".warehouse.stamp.json"),
                 (settings.root.warehouse,))


def build_warehouse(settings: Settings) -> tuple[Path, list[str]]:
    """Write `warehouse.duckdb` atomically; return its path and the views it holds.

    Kept when it would hold the same views: a view names its files by glob and reads what is there when it
    is queried, so new days and rewritten tables need no new catalog, only other tables or other code.
    Creating the views binds each to its files' schemas, tens of thousands of staged files nationally: 4 s
    of every daily run. Another as-of date (the allocation view's last day, which the schedule moves every
    morning) gives a copy of the catalog with that one view made again.
    """
    target = settings.root.warehouse
    tables = published_tables(settings)
    stamp = warehouse_stamp(settings)
    base = stamp.inputs_digest(without_as_of(settings), [], str(settings.data_root.resolve()),
                               *sorted(t.name for t in tables))
    as_of = as_of_date(settings)
    digest = f"{base} {as_of}"
    recorded = stamp.recorded_figures() if target.exists() else None
    if recorded is not None and recorded.get("base") == base:
        if stamp.kept(digest) is None:
            with replacing(target) as tmp:
                shutil.copyfile(target, tmp)
                with duck.connect(str(tmp)) as con:
                    if "allocation" in recorded["views"]:
                        _create_allocation_view(con, settings)
                    con.execute("CHECKPOINT")
            stamp.record(digest, recorded)
        return target, recorded["views"]
    with replacing(target) as tmp, duck.connect(str(tmp)) as con:
        for table in sorted(tables, key=lambda t: t.name):
            _create_view(con, settings.data_root, table)
        views = [t.name for t in tables]
        if SPLIT_ASSIGNMENTS in tables:
            con.execute(SPLIT_DEFAULTS_VIEW_SQL)
            con.execute(f"COMMENT ON VIEW {SPLIT_DEFAULTS_VIEW} IS {sql_literal(SPLIT_DEFAULTS_DESCRIPTION)}")
            views.append(SPLIT_DEFAULTS_VIEW)
        if {EPISODES, EPISODE_STOPS} <= set(tables):
            _create_allocation_view(con, settings)
            views.append("allocation")
        con.execute("CHECKPOINT")
    stamp.record(digest, {"views": sorted(views), "base": base})
    return target, sorted(views)


def _create_allocation_view(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    con.execute(ALLOCATION_VIEW_SQL.format(first_day=settings.cutoff_date.isoformat(),
                                           last_day=as_of_date(settings).isoformat()))
    con.execute(f"COMMENT ON VIEW allocation IS {sql_literal(ALLOCATION_DESCRIPTION)}")
