"""Checks and summaries of the timeline outputs, for asset checks and metadata."""

from __future__ import annotations

import polars as pl

SOURCE_SYMBOL = {"gap": "·"}


def uncovered_days(coverage: pl.DataFrame, gaps: pl.DataFrame) -> pl.DataFrame:
    """Days that have neither a source nor a place inside a reported gap segment, and missing days."""
    gap_days = (
        gaps.with_columns(day=pl.date_ranges("first_day", "last_day")).explode("day").select("kommune", "unit", "day")
    )
    marked_gap = coverage.filter(pl.col("source") == "gap").select("kommune", "unit", "day")
    unreported = marked_gap.join(gap_days, on=["kommune", "unit", "day"], how="anti")
    # every unit must have one row per day between its first and last day (no holes)
    spans = coverage.group_by("kommune", "unit").agg(
        pl.col("day").min().alias("first"), pl.col("day").max().alias("last"), pl.len().alias("rows"))
    holes = spans.filter(
        (pl.col("last") - pl.col("first")).dt.total_days() + 1 != pl.col("rows")
    ).select("kommune", "unit", pl.col("first").alias("day"))
    missing_source = coverage.filter(pl.col("source").is_null()).select("kommune", "unit", "day")
    return pl.concat([unreported, holes, missing_source]).unique().sort("kommune", "unit", "day")


def coverage_chart(segments: pl.DataFrame) -> str:
    """A Markdown table per municipality: units down, years across, the source of each year's days."""
    if segments.height == 0:
        return "_no coverage_"
    yearly = (
        segments.with_columns(year=pl.int_ranges(pl.col("first_day").dt.year(), pl.col("last_day").dt.year() + 1))
        .explode("year")
        .group_by("kommune", "unit", "year")
        .agg(pl.col("source").unique().sort().str.join(" + "))
        .sort("kommune", "unit", "year")
    )
    parts = []
    for (kommune,), frame in yearly.group_by("kommune", maintain_order=True):
        table = frame.pivot(on="year", index="unit", values="source").fill_null("")
        header = "| unit | " + " | ".join(str(c) for c in table.columns[1:]) + " |"
        rule = "|---" * len(table.columns) + "|"
        rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.iter_rows()]
        parts.append(f"**{kommune}**\n\n" + "\n".join([header, rule, *rows]))
    return "\n\n".join(parts)


EPISODE_FLAGS = ("stitched", "end_imputed", "bridged_gap", "conflict", "reporting_id_derived")
# what `episode_flag_counts` reads of the episodes
EPISODE_FLAG_COLUMNS = (*EPISODE_FLAGS, "end_date")


def episode_flag_counts(episodes: pl.DataFrame) -> dict[str, int]:
    counts = {flag: int(episodes[flag].sum()) for flag in EPISODE_FLAGS}
    counts["open"] = int(episodes["end_date"].is_null().sum())
    counts["total"] = episodes.height
    return counts
