"""A dry run: what a backfill of a range would send, planned against the current ledger, sending nothing.

It plans exactly as the writer does (`planning.ACTIVE_SQL` and `planning.plan_notifications`, the same days
per municipality: days already in the ledger are reproduced, not planned), but opens the ledger
read-only and writes only the plan (`PLAN`, `dry_run/plan.parquet`): no message file, no ledger row,
no manifest. A real run over the same range and the same events then sends exactly the plan.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from transforms.core.atomic import write_parquet
from transforms.core.config import load_kommuner
from transforms.core.settings import Settings
from transforms.submit.events import MunicipalityEvents
from transforms.submit.ledger import DayOrderError, last_written_days, open_ledger
from transforms.submit.planning import ACTIVE_SQL, plan_notifications
from transforms.tables import EVENTS, PLAN


def plan_backfill(settings: Settings, first_day: dt.date, last_day: dt.date,
                  kommuner: list[str] | None = None) -> pl.DataFrame:
    """The notifications a backfill of `first_day`..`last_day` would send (`PLAN`, in its order)."""
    configured = sorted(m.nr for m in load_kommuner(settings.root.kommuner_toml))
    targets = sorted(kommuner or configured)
    unknown = [k for k in targets if k not in configured]
    if unknown:
        raise ValueError(f"municipalities not in config/kommuner.toml: {', '.join(unknown)}")
    events = MunicipalityEvents(EVENTS.location(settings.data_root))
    parts = []
    with open_ledger(settings.data_root, read_only=True) as con:
        last = last_written_days(con)
        for kommune in targets:
            first_missing = last[kommune] + dt.timedelta(days=1) if kommune in last else settings.cutoff_date
            if first_day > first_missing:
                raise DayOrderError(f"municipality {kommune}: cannot write {first_day} before {first_missing} is "
                                    f"written (first missing day {first_missing}; start the range there)")
            new_first = max(first_day, first_missing)
            if new_first > last_day:
                continue
            active = con.execute(ACTIVE_SQL, {"kommune": kommune, "first_day": new_first}).pl()
            plan = plan_notifications(active, events.take(kommune), new_first, last_day)
            parts.append(plan.with_columns(kommune=pl.lit(kommune)))
    frame = pl.concat(parts, how="vertical_relaxed") if parts else PLAN.empty()
    return PLAN.sorted(PLAN.conform(frame))


def write_plan(settings: Settings, plan: pl.DataFrame) -> None:
    write_parquet(plan, PLAN.location(settings.data_root))


def plan_summary(plan: pl.DataFrame) -> pl.DataFrame:
    """Per municipality, event type and status: notifications, first and last day."""
    return (plan.group_by("kommune", "event_type", "status")
            .agg(pl.len().alias("notifications"), pl.col("day").min().alias("first_day"),
                 pl.col("day").max().alias("last_day"))
            .sort("kommune", "event_type", "status"))


def plan_by_day(plan: pl.DataFrame) -> pl.DataFrame:
    """Per municipality and day: N, M and C, and the event types of the day's notifications."""
    counts = (plan.group_by("kommune", "day")
              .agg(*[(pl.col("status") == s).sum().alias(s) for s in ("N", "M", "C")],
                   pl.col("event_type").unique().sort().str.join(", ").alias("event_types"))
              .sort("kommune", "day"))
    return counts
