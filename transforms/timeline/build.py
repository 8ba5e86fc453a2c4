"""Build the timeline outputs from staged Parquet: coverage, episodes, stops, providers, conflicts."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq

from transforms import duck
from transforms.config import load_kommuner
from transforms.conservation import staged_files
from transforms.kommuner import municipality_codes, unit_succession
from transforms.settings import Settings
from transforms.timeline.coverage import as_of_date, build_coverage, epj_system_frame, missing_extracts
from transforms.timeline.episodes import CONFLICTS_SQL, EPISODES_OUT_SQL, EPISODES_SQL, PROVIDERS_SQL, STOPS_SQL
from transforms.timeline.linking import link_records
from transforms.timeline.records import PERSONS_SQL, RECORDS_SQL
from transforms.timeline.sql import run_script
from transforms.timeline.staged import register_staged

log = logging.getLogger(__name__)

# staged service rows per batch: about 1-2 GiB of DuckDB working memory
BATCH_SERVICE_ROWS = 2_000_000

EPISODE_COLUMNS = ("episode_id", "kommune", "reporting_id", "reporting_id_derived", "person_key", "user_no",
                   "service_code", "start_date", "end_date", "provider_org", "hours_per_week", "start_registered_at",
                   "end_registered_at", "stitched", "end_imputed",
                   "bridged_gap", "conflict", "start_source", "n_records", "records", "lineage")


@dataclass(frozen=True)
class TimelineResult:
    coverage: pl.DataFrame
    segments: pl.DataFrame
    gaps: pl.DataFrame
    missing: pl.DataFrame
    episodes: pl.DataFrame
    stops: pl.DataFrame
    provider_changes: pl.DataFrame
    conflicts: pl.DataFrame
    linking_rounds: int


def timeline_dir(settings: Settings) -> Path:
    return settings.data_root / "timeline"


def register_timeline_views(con: duckdb.DuckDBPyConnection, folder: Path,
                            names: tuple[str, ...] = ("episodes", "stops")) -> None:
    """Views over written timeline outputs (`timeline/<name>.parquet`) on a DuckDB connection."""
    for name in names:
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{folder / f'{name}.parquet'}')")


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    frame.write_parquet(tmp, compression="zstd", statistics=True)
    os.replace(tmp, path)


def _build_batch(settings: Settings, kommuner: set[str] | None) -> TimelineResult:
    """Reconstruct the episodes of `kommuner` (all when None) on one DuckDB connection."""
    as_of = as_of_date(settings)
    with duck.connect() as con:
        register_staged(con, settings, kommuner)
        con.register("municipality_codes", municipality_codes().to_arrow())
        con.register("unit_succession", unit_succession(settings.cutoff_date.year, as_of.year).to_arrow())
        con.register("epj_systems", epj_system_frame(settings, kommuner).to_arrow())
        coverage, segments = build_coverage(settings, con, kommuner)
        run_script(con, PERSONS_SQL)
        run_script(con, RECORDS_SQL)
        rounds = link_records(con, settings.tolerances.iplos36_start_days, settings.tolerances.switch_window_days)
        for script in (EPISODES_SQL, CONFLICTS_SQL, EPISODES_OUT_SQL, STOPS_SQL, PROVIDERS_SQL):
            run_script(con, script, {"as_of": as_of})
        episodes = con.execute(f"SELECT {', '.join(EPISODE_COLUMNS)} FROM episodes").pl()
        stops = con.execute("SELECT * FROM episode_stops").pl()
        providers = con.execute("SELECT * FROM provider_changes").pl()
        conflicts = con.execute("SELECT * FROM conflicts_out").pl()
    gaps = segments.filter(pl.col("source") == "gap").drop("source")
    return TimelineResult(coverage, segments, gaps, missing_extracts(settings, coverage, kommuner), episodes, stops,
                          providers, conflicts, rounds)


def plan_batches(settings: Settings, rows_per_batch: int = BATCH_SERVICE_ROWS) -> list[set[str]]:
    """Reporting municipalities grouped so each batch holds about `rows_per_batch` staged service rows.

    Episodes never cross reporting municipalities, so batches are independent: memory is
    bounded by the largest batch instead of growing with the country.
    """
    units = dict(municipality_codes().select("code", "reporting_kommune").iter_rows())
    sizes: dict[str, int] = {}
    for table in ("iplos_services", "epj_service_versions"):
        for path in staged_files(settings, table):
            part = next((p for p in path.parts if p.startswith(("kommune=", "system="))), "=")
            key, _, value = part.partition("=")
            kommune = units.get(value) if key == "kommune" else value.split("-", 1)[0]
            if kommune:
                sizes[kommune] = sizes.get(kommune, 0) + pq.read_metadata(path).num_rows
    configured = sorted(m.nr for m in load_kommuner(settings.config_dir / "kommuner.toml"))
    batches: list[set[str]] = []
    current: set[str] = set()
    filled = 0
    for kommune in configured:
        if current and filled + sizes.get(kommune, 0) > rows_per_batch:
            batches.append(current)
            current, filled = set(), 0
        current.add(kommune)
        filled += sizes.get(kommune, 0)
    if current:
        batches.append(current)
    return batches


def build_timeline(settings: Settings, rows_per_batch: int = BATCH_SERVICE_ROWS) -> TimelineResult:
    """Reconstruct every reporting municipality's episodes, batch by batch; nothing is written here."""
    batches = plan_batches(settings, rows_per_batch)
    log.info("timeline: %d municipalities in %d batches", sum(len(b) for b in batches), len(batches))
    parts = [_build_batch(settings, batch) for batch in batches] or [_build_batch(settings, set())]

    def combined(name: str, *order: str) -> pl.DataFrame:
        return pl.concat([getattr(p, name) for p in parts], how="vertical_relaxed").sort(*order, nulls_last=True)

    return TimelineResult(
        coverage=combined("coverage", "kommune", "unit", "day"),
        segments=combined("segments", "kommune", "unit", "first_day"),
        gaps=combined("gaps", "kommune", "unit", "first_day"),
        missing=combined("missing", "kommune", "unit", "year"),
        episodes=combined("episodes", "episode_id"),
        stops=combined("stops", "episode_id", "from_date", "stop_id", "source"),
        provider_changes=combined("provider_changes", "episode_id", "change_date"),
        conflicts=combined("conflicts", "kommune", "conflict", "episode_id", "record_id", "detail"),
        linking_rounds=max(p.linking_rounds for p in parts),
    )


def write_timeline(settings: Settings, result: TimelineResult) -> dict[str, Path]:
    out = timeline_dir(settings)
    paths = {
        "coverage": out / "coverage.parquet",
        "coverage_segments": out / "coverage_segments.parquet",
        "gaps": out / "gaps.parquet",
        "missing_extracts": out / "missing_extracts.parquet",
        "episodes": out / "episodes.parquet",
        "stops": out / "stops.parquet",
        "provider_changes": out / "provider_changes.parquet",
        "conflicts": out / "conflicts.parquet",
    }
    frames = {
        "coverage": result.coverage, "coverage_segments": result.segments, "gaps": result.gaps,
        "missing_extracts": result.missing, "episodes": result.episodes, "stops": result.stops,
        "provider_changes": result.provider_changes, "conflicts": result.conflicts,
    }
    for name, path in paths.items():
        write_parquet_atomic(frames[name], path)
    return paths
