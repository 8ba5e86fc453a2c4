"""Delivery: the written messages sent to the registry, with checks that fail on anything not accepted."""

import datetime as dt

import dagster as dg
import polars as pl
from dagster import AssetExecutionContext
from pydantic import Field

from assets.charts import observed_chart
from assets.partitions import days, single_run
from assets.pools import DELIVERY_POOL
from assets.resources import KttResource
from assets.specs import asset_spec
from transforms.deliver.config import load_delivery_config
from transforms.deliver.runner import DeliveryRun
from transforms.deliver.state import LedgerSession
from transforms.deliver.status import delivery_status, range_problems, rejected_messages
from transforms.report.charts import deliveries_chart
from transforms.report.markdown import markdown_table
from transforms.tables import DELIVERIES

GROUP = "submissions"

CHECKS = [
    dg.AssetCheckSpec("nothing_rejected", asset=DELIVERIES.asset, blocking=True,
                      description="the registry rejected no message (a rejection stops its municipality)"),
    dg.AssetCheckSpec("range_accepted", asset=DELIVERIES.asset, blocking=True,
                      description="every message of the run's days was accepted by the registry"),
]


class DeliveryRunConfig(dg.Config):
    """Which municipalities to deliver (default: all), and whether to send a rejected message again."""

    kommuner: list[str] = Field(default_factory=list)
    retry_rejected: bool = False


def municipality_table(status: pl.DataFrame) -> str:
    """Per municipality: accepted, pending, rejected, and the first problem (the message it waits on)."""
    if status.height == 0:
        return "no messages written yet"
    frame = status.select(
        "kommune", "accepted", (pl.col("pending") + pl.col("in_flight")).alias("pending"), "rejected",
        pl.when(pl.col("waiting_day").is_not_null())
        .then(pl.format("{} {}: {} {}", "waiting_day", "waiting_state", pl.col("code").fill_null(""),
                        pl.col("text").fill_null("").str.slice(0, 120)))
        .otherwise(pl.lit("")).alias("first_problem"))
    return markdown_table(frame, 400)


@dg.multi_asset(
    specs=[asset_spec(DELIVERIES.asset, GROUP, {"https", "duckdb"})],
    check_specs=CHECKS,
    partitions_def=days,
    backfill_policy=single_run,
    pool=DELIVERY_POOL,
)
def kpr_delivery(context: AssetExecutionContext, ktt: KttResource, config: DeliveryRunConfig):
    """Every written message up to the range's last day sent to the registry in order (config/delivery.toml);
    with transport "none" nothing is sent and the checks pass with a note."""
    settings = ktt.run_settings()
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date() - dt.timedelta(days=1)
    delivery = load_delivery_config(settings.data_root)
    report = DeliveryRun(settings, delivery).run(config.kommuner or None, None, last, config.retry_rejected)
    context.log.info(f"{delivery.transport}: {report.accepted} accepted, {report.remaining} left, "
                     f"{report.rejected} municipalities stopped by a rejection")
    with LedgerSession(settings.data_root, announce=True) as session:
        status, problems, rejected = session.run(lambda con: (
            delivery_status(con), range_problems(con, first, last, config.kommuner or None),
            rejected_messages(con)))
        chart = session.run(lambda con: observed_chart(context, DELIVERIES.asset, "deliveries_per_day_chart",
                                                        lambda: deliveries_chart(settings.data_root, con)))
    off = delivery.transport == "none"
    yield dg.MaterializeResult(asset_key=DELIVERIES.asset, metadata={
        "transport": delivery.transport, "first_day": str(first), "last_day": str(last),
        "accepted_in_run": report.accepted, "left_pending": report.remaining,
        "stopped_by_rejection": report.rejected, **({"fatal": report.fatal} if report.fatal else {}),
        "municipalities": dg.MetadataValue.md(municipality_table(status)),
        **chart,
    })
    note = {"note": "transport none: messages are written, not sent"} if off else {}
    yield dg.AssetCheckResult(check_name="nothing_rejected", asset_key=DELIVERIES.asset,
                              passed=rejected.height == 0,
                              metadata={"rejected": rejected.height, **note,
                                        "messages": dg.MetadataValue.md(markdown_table(rejected.drop("file"), 20))})
    yield dg.AssetCheckResult(check_name="range_accepted", asset_key=DELIVERIES.asset,
                              passed=off or problems.height == 0,
                              metadata={"not_accepted": 0 if off else problems.height, **note,
                                        "first": dg.MetadataValue.md(markdown_table(problems, 20))})
