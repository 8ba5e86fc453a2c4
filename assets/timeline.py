"""Timeline assets: coverage, episodes, day-level aggregates and the analyst warehouse."""

import datetime as dt

import dagster as dg
import polars as pl
from dagster import AssetExecutionContext

from assets.charts import chart_metadata, observed_chart
from assets.partitions import days, single_run
from assets.pools import TIMELINE_POOL, WAREHOUSE_POOL
from assets.resources import KttResource
from assets.specs import asset_spec
from transforms.report.charts import active_users_chart, coverage_chart, reconciliation_chart
from transforms.report.markdown import markdown_table
from transforms.report.warehouse import build_warehouse
from transforms.tables import (
    COMBINED_TABLES,
    CONFLICTS,
    COVERAGE,
    DAILY_ALLOCATION,
    EPISODES,
    RECONCILIATION,
    SPLIT_ASSIGNMENTS,
    STREAMED_TABLES,
    TABLES,
)
from transforms.timeline import checks
from transforms.timeline.build import build_or_keep_timeline
from transforms.timeline.daily import write_daily_allocation
from transforms.timeline.reconciliation import below_threshold, reconcile_or_keep

GROUP = "timeline"
TIMELINE_TABLES = (*COMBINED_TABLES, *STREAMED_TABLES)


@dg.multi_asset(
    specs=[asset_spec(t.asset, GROUP, {"parquet", "duckdb"}) for t in TIMELINE_TABLES],
    check_specs=[dg.AssetCheckSpec("every_day_covered_or_gap", asset=COVERAGE.asset, blocking=True,
                                   description="each day of each municipality is covered by a source or "
                                               "inside a reported gap segment")],
    pool=TIMELINE_POOL,
)
def timeline(context: AssetExecutionContext, ktt: KttResource):
    """Reconstruct the timelines in DuckDB from the staged Parquet."""
    settings = ktt.run_settings()
    result, built = build_or_keep_timeline(settings)
    if not built:
        context.log.info("timeline: inputs unchanged since the last build, its outputs are kept")
    else:
        context.log.info(f"timeline: {len(result.rebuilt)} municipalities rebuilt, those whose inputs changed "
                         "since the last build (all of them after a change of code, settings or as-of date)")
    gap_days = result.gaps.group_by("kommune").agg(pl.col("days").sum().alias("gap_days")).sort("kommune")
    yield dg.MaterializeResult(asset_key=COVERAGE.asset, metadata={
        "days": result.coverage["day"].n_unique(),
        "gap_segments": result.gaps.height,
        "gap_days_per_municipality": dg.MetadataValue.md(markdown_table(gap_days)),
        "missing_extracts": result.missing.height,
        "municipalities_rebuilt": dg.MetadataValue.json(list(result.rebuilt)),
        "coverage_by_year": dg.MetadataValue.md(checks.coverage_chart(result.segments)),
        **chart_metadata(context, "coverage_chart", lambda: coverage_chart(settings.data_root, result.segments)),
    })
    yield dg.MaterializeResult(asset_key=EPISODES.asset, metadata={
        "episodes": result.rows[EPISODES.name],
        "by_flag": dg.MetadataValue.json(result.episode_flags),
        "linking_rounds": result.linking_rounds,
    })
    yield dg.MaterializeResult(asset_key=CONFLICTS.asset, metadata={
        "conflicts": result.conflicts.height,
        "conflicts_by_kind": dg.MetadataValue.json(
            dict(result.conflicts.group_by("conflict").len().sort("conflict").iter_rows())),
    })
    splits = result.split_assignments
    yield dg.MaterializeResult(asset_key=SPLIT_ASSIGNMENTS.asset, metadata={
        "records": splits["record_id"].n_unique(),
        "records_by_rule": dg.MetadataValue.json(
            dict(splits.unique("record_id").group_by("rule").len().sort("rule").iter_rows())),
        "to_review": dg.MetadataValue.md(markdown_table(
            splits.filter(pl.col("rule").is_in(["default", "unassigned"])).group_by("divided_unit", "kommune", "rule")
            .agg(pl.col("record_id").n_unique().alias("records")).sort("divided_unit", "kommune", "rule"))),
    })
    for table in TIMELINE_TABLES:
        if table not in (COVERAGE, EPISODES, CONFLICTS, SPLIT_ASSIGNMENTS):
            yield dg.MaterializeResult(asset_key=table.asset, metadata={"rows": result.rows[table.name]})
    problems = checks.uncovered_days(result.coverage, result.gaps)
    yield dg.AssetCheckResult(asset_key=COVERAGE.asset, check_name="every_day_covered_or_gap",
                              passed=problems.height == 0,
                              metadata={"days_without_source_or_gap": problems.height,
                                        "first": dg.MetadataValue.md(markdown_table(problems, 20))})


@dg.multi_asset(specs=[asset_spec(DAILY_ALLOCATION.asset, GROUP, {"parquet", "duckdb"})], partitions_def=days,
                backfill_policy=single_run, pool=TIMELINE_POOL)
def daily_allocation(context: AssetExecutionContext, ktt: KttResource) -> dg.MaterializeResult:
    """Per day, municipality and service code: active, stopped, started, ended (timeline/daily/day=.../)."""
    settings = ktt.run_settings()
    window = context.partition_time_window
    first_day, last_day = window.start.date(), window.end.date() - dt.timedelta(days=1)
    rows = write_daily_allocation(settings.data_root, first_day, last_day)
    context.log.info(f"daily aggregates {first_day}..{last_day}: {rows} rows")
    return dg.MaterializeResult(metadata={
        "first_day": str(first_day), "last_day": str(last_day), "rows": rows,
        # every day written so far, not only this run's range: one day alone would be a single dot
        **observed_chart(context, DAILY_ALLOCATION.asset, "active_users_chart",
                         lambda: active_users_chart(settings.data_root)),
    })


@dg.multi_asset(
    specs=[asset_spec(RECONCILIATION.asset, GROUP, {"parquet", "duckdb"})],
    check_specs=[dg.AssetCheckSpec("agreement_with_yearly_extracts", asset=RECONCILIATION.asset, blocking=False,
                                   description="every municipality and year agrees with its yearly extract at least "
                                               "as much as [reconciliation] agreement_threshold (a warning)")],
    pool=TIMELINE_POOL,
)
def reconciliation(context: AssetExecutionContext, ktt: KttResource):
    """The reconstruction against the yearly extracts an EPJ made redundant: matched, one-sided, disagreeing."""
    settings = ktt.run_settings()
    result, built = reconcile_or_keep(settings)
    if not built:
        context.log.info("reconciliation: inputs unchanged since the last run, its outputs are kept")
    threshold = settings.reconciliation.agreement_threshold
    summary = result.summary
    yield dg.MaterializeResult(asset_key=RECONCILIATION.asset, metadata={
        "extracts_reconciled": summary.height,
        "discrepancies": dg.MetadataValue.json(
            dict(result.services.group_by("discrepancy").len().sort("discrepancy").iter_rows())),
        **chart_metadata(context, "agreement_chart", lambda: reconciliation_chart(settings.data_root, threshold)),
    })
    low = below_threshold(summary, threshold)
    yield dg.AssetCheckResult(
        asset_key=RECONCILIATION.asset, check_name="agreement_with_yearly_extracts", passed=low.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"threshold": threshold, "below_threshold": low.height,
                  "lowest": dg.MetadataValue.md(markdown_table(low.sort("agreement").select(
                      "kommune", "year", "agreement", "matched", "only_in_extract", "only_in_timeline"), 20))})


# the analyst catalog reads every Parquet table; the staged ones come from ingestion
WAREHOUSE_DEPS = sorted({t.asset for t in TABLES.values() if t.storage == "parquet" and t.asset})


@dg.asset(group_name=GROUP, deps=WAREHOUSE_DEPS, kinds={"duckdb"}, pool=WAREHOUSE_POOL)
def warehouse(ktt: KttResource) -> dg.MaterializeResult:
    """`warehouse.duckdb`: read-only views over every Parquet output, with the registry's descriptions."""
    path, views = build_warehouse(ktt.run_settings())
    return dg.MaterializeResult(metadata={"path": str(path), "views": dg.MetadataValue.json(views)})

