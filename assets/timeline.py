"""Timeline assets: coverage, episodes, day-level aggregates and the analyst warehouse."""

import datetime as dt

import dagster as dg
import polars as pl
from dagster import AssetExecutionContext

from assets.charts import chart_metadata
from assets.partitions import days, single_run
from assets.pools import TIMELINE_POOL, WAREHOUSE_POOL
from assets.resources import KttResource
from transforms.core import duck
from transforms.report.charts import active_users_chart, coverage_chart
from transforms.report.markdown import markdown_table
from transforms.report.warehouse import build_warehouse
from transforms.timeline import checks
from transforms.timeline.build import build_and_write_timeline, register_timeline_views, timeline_dir
from transforms.timeline.daily import DAILY_MEMORY_LIMIT, write_daily_partitions

GROUP = "timeline"
INGESTED = ["iplos_services", "iplos_persons", "epj_service_versions", "epj_stops", "epj_persons",
            "municipality_numbers"]


@dg.multi_asset(
    specs=[
        dg.AssetSpec("coverage", group_name=GROUP, deps=INGESTED, kinds={"parquet", "duckdb"},
                     description="Authoritative source per municipality, unit and day; gap segments; "
                                 "missing predecessor extracts (timeline/coverage*.parquet, gaps.parquet)."),
        dg.AssetSpec("service_episodes", group_name=GROUP, deps=INGESTED, kinds={"parquet", "duckdb"},
                     description="Canonical episodes with stops, provider changes and conflicts "
                                 "(timeline/episodes.parquet, stops, provider_changes, conflicts)."),
    ],
    check_specs=[dg.AssetCheckSpec("every_day_covered_or_gap", asset="coverage", blocking=True,
                                   description="each day of each municipality is covered by a source or "
                                               "inside a reported gap segment")],
    pool=TIMELINE_POOL,
)
def timeline(context: AssetExecutionContext, ktt: KttResource):
    """Reconstruct the timelines in DuckDB from the staged Parquet."""
    settings = ktt.run_settings()
    result = build_and_write_timeline(settings)
    gap_days = result.gaps.group_by("kommune").agg(pl.col("days").sum().alias("gap_days")).sort("kommune")
    yield dg.MaterializeResult(asset_key="coverage", metadata={
        "days": result.coverage["day"].n_unique(),
        "gap_segments": result.gaps.height,
        "gap_days_per_municipality": dg.MetadataValue.md(markdown_table(gap_days)),
        "missing_extracts": result.missing.height,
        "coverage_by_year": dg.MetadataValue.md(checks.coverage_chart(result.segments)),
        **chart_metadata(context, "coverage_chart", lambda: coverage_chart(settings.data_root, result.segments)),
    })
    flags = result.episode_flags
    yield dg.MaterializeResult(asset_key="service_episodes", metadata={
        "episodes": result.rows["episodes"],
        "by_flag": dg.MetadataValue.json(flags),
        "conflicts": result.conflicts.height,
        "conflicts_by_kind": dg.MetadataValue.json(
            dict(result.conflicts.group_by("conflict").len().sort("conflict").iter_rows())),
        "stops": result.rows["stops"],
        "provider_changes": result.rows["provider_changes"],
        "linking_rounds": result.linking_rounds,
    })
    problems = checks.uncovered_days(result.coverage, result.gaps)
    yield dg.AssetCheckResult(asset_key="coverage", check_name="every_day_covered_or_gap",
                              passed=problems.height == 0,
                              metadata={"days_without_source_or_gap": problems.height,
                                        "first": dg.MetadataValue.md(markdown_table(problems, 20))})


@dg.asset(group_name=GROUP, deps=["service_episodes"], partitions_def=days, backfill_policy=single_run,
          kinds={"parquet", "duckdb"}, pool=TIMELINE_POOL)
def daily_allocation(context: AssetExecutionContext, ktt: KttResource) -> dg.MaterializeResult:
    """Per day, municipality and service code: active, stopped, started, ended (timeline/daily/day=.../)."""
    settings = ktt.run_settings()
    window = context.partition_time_window
    first_day, last_day = window.start.date(), window.end.date() - dt.timedelta(days=1)
    out = timeline_dir(settings)
    with duck.connect(memory_limit=DAILY_MEMORY_LIMIT) as con:
        register_timeline_views(con, out)
        rows = write_daily_partitions(con, out / "daily", first_day, last_day)
    context.log.info(f"daily aggregates {first_day}..{last_day}: {rows} rows")
    return dg.MaterializeResult(metadata={
        "first_day": str(first_day), "last_day": str(last_day), "rows": rows,
        # every day written so far, not only this run's range: one day alone would be a single dot
        **chart_metadata(context, "active_users_chart", lambda: active_users_chart(settings.data_root)),
    })


@dg.asset(group_name=GROUP, deps=["coverage", "service_episodes", "daily_allocation", "iplos_services",
                                  "epj_service_versions"], kinds={"duckdb"}, pool=WAREHOUSE_POOL)
def warehouse(ktt: KttResource) -> dg.MaterializeResult:
    """`warehouse.duckdb`: read-only views over every Parquet output, rebuilt atomically."""
    path, views = build_warehouse(ktt.run_settings())
    return dg.MaterializeResult(metadata={"path": str(path), "views": dg.MetadataValue.json(views)})
