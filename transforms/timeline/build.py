"""Build the timeline outputs from staged Parquet: coverage, episodes, stops, providers, conflicts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from transforms import duck
from transforms.kommuner import municipality_codes, unit_succession
from transforms.settings import Settings
from transforms.timeline.coverage import as_of_date, build_coverage, epj_system_frame, missing_extracts
from transforms.timeline.episodes import CONFLICTS_SQL, EPISODES_OUT_SQL, EPISODES_SQL, PROVIDERS_SQL, STOPS_SQL
from transforms.timeline.linking import link_records
from transforms.timeline.records import PERSONS_SQL, RECORDS_SQL
from transforms.timeline.sql import run_script
from transforms.timeline.staged import register_staged

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


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    frame.write_parquet(tmp, compression="zstd", statistics=True)
    os.replace(tmp, path)


def build_timeline(settings: Settings, con: duckdb.DuckDBPyConnection | None = None) -> TimelineResult:
    """Reconstruct every reporting municipality's episodes; nothing is written here."""
    own = con is None
    con = con or duck.connect()
    try:
        as_of = as_of_date(settings)
        register_staged(con, settings)
        con.register("municipality_codes", municipality_codes().to_arrow())
        con.register("unit_succession", unit_succession(settings.cutoff_date.year, as_of.year).to_arrow())
        con.register("epj_systems", epj_system_frame(settings).to_arrow())
        coverage, segments = build_coverage(settings, con)
        run_script(con, PERSONS_SQL)
        run_script(con, RECORDS_SQL)
        rounds = link_records(con, settings.tolerances.iplos36_start_days, settings.tolerances.switch_window_days)
        for script in (EPISODES_SQL, CONFLICTS_SQL, EPISODES_OUT_SQL, STOPS_SQL, PROVIDERS_SQL):
            run_script(con, script, {"as_of": as_of})
        episodes = con.execute(
            f"SELECT {', '.join(EPISODE_COLUMNS)} FROM episodes ORDER BY episode_id").pl()
        stops = con.execute("SELECT * FROM episode_stops ORDER BY episode_id, from_date, stop_id, source").pl()
        providers = con.execute("SELECT * FROM provider_changes ORDER BY episode_id, change_date").pl()
        conflicts = con.execute(
            "SELECT * FROM conflicts_out ORDER BY kommune, conflict, episode_id NULLS LAST, record_id NULLS LAST, "
            "detail").pl()
    finally:
        if own:
            con.close()
    gaps = segments.filter(pl.col("source") == "gap").drop("source")
    return TimelineResult(coverage, segments, gaps, missing_extracts(settings, coverage), episodes, stops,
                          providers, conflicts, rounds)


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
