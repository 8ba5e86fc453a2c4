"""Submission assets: events for analysts, the daily messages and their ledger."""

import datetime as dt

import dagster as dg
from dagster import AssetExecutionContext
from pydantic import Field

from assets.charts import observed_chart
from assets.partitions import days, single_run
from assets.pools import LEDGER_POOL, TIMELINE_POOL
from assets.resources import KttResource
from assets.specs import asset_spec
from transforms.report.charts import notifications_chart
from transforms.report.markdown import markdown_table
from transforms.submit.checks import CHECKS, CheckOutcome, submission_checks
from transforms.submit.dry_run import plan_backfill, plan_summary, write_plan
from transforms.submit.events import write_events_or_keep
from transforms.submit.ledger import open_ledger
from transforms.submit.writer import SubmissionWriter
from transforms.tables import EVENTS, NOTIFICATIONS, PLAN

GROUP = "submissions"


@dg.multi_asset(specs=[asset_spec(EVENTS.asset, GROUP, {"parquet", "duckdb"})], pool=TIMELINE_POOL)
def service_events(ktt: KttResource) -> dg.MaterializeResult:
    """Every event a message reports (timeline/events.parquet), pseudonymous, with key, day and content hash."""
    settings = ktt.run_settings()
    figures, built = write_events_or_keep(settings)
    return dg.MaterializeResult(metadata={
        "events": figures["events"],
        "by_type": dg.MetadataValue.json(figures["by_type"]),
        "initial_load_events": figures["initial_load_events"],
        "derived_anew": built,
    })


class SubmissionsConfig(dg.Config):
    """Which municipalities to write (default: every one in config/kommuner.toml)."""

    kommuner: list[str] = Field(default_factory=list)


CHECK_SPECS = [dg.AssetCheckSpec(c.name, asset=NOTIFICATIONS.asset, blocking=True, description=c.description)
               for c in CHECKS]


def check_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    """A check's outcome as Dagster records it: its figures, and its tables as Markdown (first 20 rows)."""
    tables = {name: dg.MetadataValue.md(markdown_table(frame, 20)) for name, frame in outcome.tables.items()}
    return dg.AssetCheckResult(check_name=outcome.check.name, asset_key=NOTIFICATIONS.asset, passed=outcome.passed,
                               metadata={**outcome.figures, **tables})


@dg.multi_asset(
    specs=[asset_spec(NOTIFICATIONS.asset, GROUP, {"xml", "duckdb"})],
    check_specs=CHECK_SPECS,
    partitions_def=days,
    backfill_policy=single_run,
    pool=LEDGER_POOL,
)
def daily_submissions(context: AssetExecutionContext, ktt: KttResource, config: SubmissionsConfig):
    settings, keys = ktt.run_settings(), ktt.secret_keys()
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date() - dt.timedelta(days=1)
    writer = SubmissionWriter(settings, keys)
    report = writer.run(first, last, kommuner=config.kommuner or None)
    context.log.info(f"{first}..{last}: {report.files} files, notifications {report.notifications}")
    with open_ledger(settings.data_root, read_only=True) as con:
        yield dg.MaterializeResult(asset_key=NOTIFICATIONS.asset, metadata={
            "first_day": str(first), "last_day": str(last), "files_written": report.files,
            "days_reproduced": report.days_reproduced,
            "notifications": dg.MetadataValue.json(report.notifications),
            # the whole ledger, every day written so far
            **observed_chart(context, NOTIFICATIONS.asset, "notifications_per_day_chart",
                             lambda: notifications_chart(settings.data_root, con)),
        })
        for outcome in submission_checks(con, settings.data_root, first, last):
            yield check_result(outcome)


@dg.multi_asset(specs=[asset_spec(PLAN.asset, GROUP, {"parquet"})], partitions_def=days, backfill_policy=single_run,
                pool=LEDGER_POOL)
def backfill_plan(context: AssetExecutionContext, ktt: KttResource, config: SubmissionsConfig):
    """The dry run of daily_submissions: what a backfill of the range would send (N, M, C by event type and
    day), planned against the current ledger; writes only dry_run/plan.parquet, never a message or the ledger."""
    settings = ktt.run_settings()
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date() - dt.timedelta(days=1)
    plan = plan_backfill(settings, first, last, config.kommuner or None)
    write_plan(settings, plan)
    by_status = dict(plan.group_by("status").len().sort("status").iter_rows())
    context.log.info(f"dry run {first}..{last}: would send {by_status}")
    return dg.MaterializeResult(asset_key=PLAN.asset, metadata={
        "first_day": str(first), "last_day": str(last), "notifications": dg.MetadataValue.json(by_status),
        "by_municipality_and_type": dg.MetadataValue.md(markdown_table(plan_summary(plan), 200)),
        "path": dg.MetadataValue.path(str(PLAN.location(settings.data_root))),
    })
