"""`warehouse.duckdb`: a catalog of views over every Parquet output, for analysts.

The catalog holds only views, so it is small and rebuilt in a second; it is
written to a temporary file and renamed into place, so a reader (the webserver,
an analyst's session) never sees a half-written catalog and the writer never
holds the published file open.
"""

from __future__ import annotations

import os
from pathlib import Path

from transforms.core import duck
from transforms.core.settings import Settings
from transforms.tables import STAGED_TABLES
from transforms.timeline.coverage import as_of_date
from transforms.timeline.daily import ALLOCATION_VIEW_SQL


def _q(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def view_sources(settings: Settings) -> dict[str, str]:
    """View name -> the Parquet glob it reads (only outputs that exist get a view)."""
    root = settings.data_root
    sources: dict[str, str] = {}
    for name in STAGED_TABLES:
        folder = "iplos" if name.startswith("iplos_") else "epj"
        if any((root / "staging" / folder).glob(f"**/{name}-*.parquet")):
            sources[name] = str(root / "staging" / folder / "**" / f"{name}-*.parquet")
    if any(settings.quarantine_dir.glob("*.parquet")):
        sources["quarantine"] = str(settings.quarantine_dir / "*.parquet")
    if any((settings.staging_dir / "file_counts").glob("*.parquet")):
        sources["file_counts"] = str(settings.staging_dir / "file_counts" / "*.parquet")
    for name in ("coverage", "coverage_segments", "gaps", "missing_extracts", "episodes", "stops",
                 "provider_changes", "conflicts"):
        path = root / "timeline" / f"{name}.parquet"
        if path.exists():
            sources[name] = str(path)
    if any((root / "timeline" / "daily").glob("day=*/*.parquet")):
        sources["daily_allocation"] = str(root / "timeline" / "daily" / "day=*" / "*.parquet")
    codes = root / "reference" / "municipality_codes.parquet"
    if codes.exists():
        sources["municipality_codes"] = str(codes)
    return sources


def build_warehouse(settings: Settings) -> tuple[Path, list[str]]:
    """Write `warehouse.duckdb` atomically; return its path and the views it holds."""
    target = settings.data_root / "warehouse.duckdb"
    tmp = target.with_name(f".warehouse.{os.getpid()}.duckdb")
    tmp.unlink(missing_ok=True)
    sources = view_sources(settings)
    with duck.connect(str(tmp)) as con:
        for name, glob in sorted(sources.items()):
            if name == "daily_allocation":
                con.execute(f"CREATE VIEW {name} AS SELECT * REPLACE (CAST(day AS DATE) AS day) "
                            f"FROM read_parquet({_q(glob)}, hive_partitioning = true)")
            else:
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_q(glob)}, "
                            "hive_partitioning = false, union_by_name = true)")
        views = sorted(sources)
        if {"episodes", "stops"} <= set(sources):
            con.execute(ALLOCATION_VIEW_SQL.format(first_day=settings.cutoff_date.isoformat(),
                                                   last_day=as_of_date(settings).isoformat()))
            views.append("allocation")
        con.execute("CHECKPOINT")
    os.replace(tmp, target)
    return target, sorted(views)
