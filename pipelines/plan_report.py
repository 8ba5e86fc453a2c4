"""What `ktt backfill --dry-run` prints: per municipality, the N, M and C it would send by event type and day."""

from __future__ import annotations

import datetime as dt

import polars as pl
from rich.console import Console
from rich.table import Table

from transforms.tables import PLAN

DAYS_LISTED = 40  # days listed per municipality; the plan file has every one


def print_plan(console: Console, settings, first: dt.date, last: dt.date, elapsed: float) -> None:
    from transforms.submit.dry_run import plan_by_day, plan_summary

    path = PLAN.location(settings.data_root)
    plan = pl.read_parquet(path)
    console.print(f"\n[bold]Dry run {first}..{last}[/] of {settings.data_root} in {elapsed:.0f} s: nothing was "
                  f"sent, no message written, the ledger unchanged. Plan: {path}")
    if plan.height == 0:
        console.print("nothing to send: every event of the range is in the ledger already")
        return
    summary, days = plan_summary(plan), plan_by_day(plan)
    for (kommune,), part in summary.group_by("kommune", maintain_order=True):
        wide = (part.pivot(on="status", index="event_type", values="notifications").fill_null(0)
                .sort("event_type"))
        console.print(f"\n{kommune}: notifications it would send by event type")
        table = Table()
        table.add_column("event type")
        for status in ("N", "M", "C"):
            table.add_column(status, justify="right")
        for row in wide.iter_rows(named=True):
            table.add_row(row["event_type"], *[f"{row.get(s, 0) or 0:,}" for s in ("N", "M", "C")])
        console.print(table)
        mine = days.filter(pl.col("kommune") == kommune)
        console.print(f"{kommune}: by day ({mine.height} days with notifications)")
        by_day = Table()
        for column in ("day", "N", "M", "C", "event types"):
            by_day.add_column(column, justify="right" if column in ("N", "M", "C") else "left")
        for row in mine.head(DAYS_LISTED).iter_rows(named=True):
            by_day.add_row(str(row["day"]), f"{row['N']:,}", f"{row['M']:,}", f"{row['C']:,}", row["event_types"])
        console.print(by_day)
        if mine.height > DAYS_LISTED:
            console.print(f"  ... {mine.height - DAYS_LISTED} more days (last {mine['day'].max()}) in {path}")
