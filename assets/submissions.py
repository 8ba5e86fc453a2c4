"""Submission assets: events for analysts, the daily messages and their ledger."""

import datetime as dt

import dagster as dg
import polars as pl
from dagster import AssetExecutionContext
from pydantic import Field

from assets.charts import chart_metadata
from assets.partitions import days, single_run
from assets.pools import LEDGER_POOL, TIMELINE_POOL
from assets.resources import KttResource
from assets.specs import asset_spec
from transforms.report.charts import notifications_chart
from transforms.report.markdown import markdown_table
from transforms.submit.dry_run import plan_backfill, plan_summary, write_plan
from transforms.submit.events import write_events
from transforms.submit.ledger import integrity_problems, open_ledger
from transforms.submit.replay import repeated_starts, replay_differences
from transforms.submit.serializers import get_serializer
from transforms.submit.writer import SubmissionWriter
from transforms.tables import EVENTS, NOTIFICATIONS, PLAN

GROUP = "submissions"


@dg.multi_asset(specs=[asset_spec(EVENTS.asset, GROUP, {"parquet", "duckdb"})], pool=TIMELINE_POOL)
def service_events(ktt: KttResource) -> dg.MaterializeResult:
    """Every event a message reports (timeline/events.parquet), pseudonymous, with key, day and content hash."""
    settings = ktt.run_settings()
    events = write_events(settings.data_root, settings.cutoff_date)
    return dg.MaterializeResult(metadata={
        "events": events.height,
        "by_type": dg.MetadataValue.json(dict(events.group_by("event_type").len().sort("event_type").iter_rows())),
        "initial_load_events": int((events["day"] == settings.cutoff_date).sum()),
    })


class SubmissionsConfig(dg.Config):
    """Which municipalities to write (default: every one in config/kommuner.toml)."""

    kommuner: list[str] = Field(default_factory=list)


CHECKS = [
    dg.AssetCheckSpec("messages_schema_valid", asset="daily_submissions", blocking=True,
                      description="every message written in the run validates against XPR(ipl).xsd"),
    dg.AssetCheckSpec("ledger_sequence_and_chain", asset="daily_submissions", blocking=True,
                      description="notifikasjonLopeNr 1..N without holes, GUID chain intact, nothing sent twice"),
    dg.AssetCheckSpec("replay_reproduces_episodes", asset="daily_submissions", blocking=True,
                      description="N/M/C replayed give exactly the current events; one start per service"),
]


@dg.multi_asset(
    specs=[asset_spec(NOTIFICATIONS.asset, GROUP, {"xml", "duckdb"})],
    check_specs=CHECKS,
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
        yield dg.MaterializeResult(asset_key="daily_submissions", metadata={
            "first_day": str(first), "last_day": str(last), "files_written": report.files,
            "days_reproduced": report.days_reproduced,
            "notifications": dg.MetadataValue.json(report.notifications),
            # the whole ledger, every day written so far
            **chart_metadata(context, "notifications_per_day_chart",
                             lambda: notifications_chart(settings.data_root, con)),
        })
        written = con.execute("SELECT file FROM written_days WHERE file IS NOT NULL AND day BETWEEN ? AND ?",
                              [first, last]).fetchall()
        serializer = get_serializer()
        invalid = []
        for (rel,) in written:
            issues = serializer.validate((settings.data_root / rel).read_bytes())
            if issues:
                invalid.append({"file": rel, "first_issue": str(issues[0])})
        yield dg.AssetCheckResult(check_name="messages_schema_valid", asset_key="daily_submissions",
                                  passed=not invalid, metadata={"files_checked": len(written),
                                                                "invalid": dg.MetadataValue.md(
                                                                    markdown_table(pl.DataFrame(invalid), 20))})
        problems = integrity_problems(con)
        yield dg.AssetCheckResult(check_name="ledger_sequence_and_chain", asset_key="daily_submissions",
                                  passed=problems.height == 0,
                                  metadata={"problems": dg.MetadataValue.md(markdown_table(problems, 20))})
        differences = replay_differences(con, writer.events)
        starts = repeated_starts(con)
        yield dg.AssetCheckResult(check_name="replay_reproduces_episodes", asset_key="daily_submissions",
                                  passed=differences.height == 0 and starts.height == 0,
                                  metadata={"differences": differences.height, "repeated_starts": starts.height,
                                            "first": dg.MetadataValue.md(markdown_table(differences, 20))})


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
