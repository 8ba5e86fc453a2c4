"""Quarantined records by rule: a horizontal bar per rule id, stacked by data year or input format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from matplotlib import colormaps
from matplotlib.colors import to_hex
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from transforms.ingest.conservation import quarantine_rows
from transforms.report.charts.render import DPI_METADATA, chart_style, message_figure, new_figure, png_bytes, thousands

TITLE = "Quarantined records by rule"
FORMAT_COLOURS = {"iplos": "#4c78a8", "epj-a-csv": "#f58518", "epj-b-jsonl": "#e45756"}
OTHER_COLOUR = "#9d9d9d"
COUNT_SCHEMA = {"rule_id": pl.Utf8, "part": pl.Utf8, "records": pl.Int64}
# how a bar is split: the data year of a yearly extract (from its path), or the input format
PART = {
    "year": lambda: pl.col("source_file").str.extract(r"^raw/iplos/([0-9]{4})/", 1).fill_null("other"),
    "format": lambda: pl.col("format").fill_null("unknown"),
}
PART_TITLE = {"year": "data year", "format": "input format"}


def quarantine_counts(files: list[Path], source_prefix: str = "", by: str = "format") -> pl.DataFrame:
    """(rule_id, part, records) of the quarantine `files` for source files starting with `source_prefix`;
    `part` is the year or format."""
    if not files:
        return pl.DataFrame(schema=COUNT_SCHEMA)
    # the rows as the ingestion's asset metadata read them a moment before (`quarantine_rows` keeps them)
    frame = (quarantine_rows(files).filter(pl.col("source_file").str.starts_with(source_prefix))
             .group_by(pl.col("rule_id"), PART[by]().alias("part")).agg(pl.len().alias("records"))
             .sort("rule_id", "part", "records", nulls_last=True))
    return frame.cast(COUNT_SCHEMA) if frame.height else pl.DataFrame(schema=COUNT_SCHEMA)


def _part_colours(parts: list[str]) -> dict[str, str]:
    """Formats keep fixed colours; years run through a sequential palette, oldest lightest."""
    if all(p in FORMAT_COLOURS or not p.isdigit() for p in parts):
        return {p: FORMAT_COLOURS.get(p, OTHER_COLOUR) for p in parts}
    years = sorted(p for p in parts if p.isdigit())
    palette = colormaps["viridis_r"]
    colours = {y: to_hex(palette(0.1 + 0.8 * i / max(len(years) - 1, 1))) for i, y in enumerate(years)}
    return {p: colours.get(p, OTHER_COLOUR) for p in parts}


def quarantine_figure(counts: pl.DataFrame, scope: str = "", by: str = "format"):
    title = f"{TITLE}{f' ({scope})' if scope else ''}"
    if counts.height == 0 or counts["records"].sum() == 0:
        return message_figure(title, "Nothing quarantined: every record read was staged.")
    wide = counts.pivot(on="part", index="rule_id", values="records", aggregate_function="sum").fill_null(0)
    formats = sorted(c for c in wide.columns if c != "rule_id")
    colours = _part_colours(formats)
    wide = (wide.with_columns(total=pl.sum_horizontal(formats))
            .sort(["total", "rule_id"], descending=[False, True]))   # largest at the top
    rules = wide["rule_id"].to_list()
    figure = new_figure(1.3 + 0.28 * len(rules), width_in=9.0)
    axes = figure.add_subplot()
    y = np.arange(len(rules))
    left = np.zeros(len(rules))
    for fmt in formats:
        values = wide[fmt].to_numpy().astype(float)
        axes.barh(y, values, left=left, color=colours[fmt], height=0.7, label=fmt)
        left += values
    total = wide["total"].to_numpy()
    for row, value in zip(y, total, strict=True):
        axes.text(value, row, f" {thousands(value)}", va="center", ha="left", fontsize=8)
    axes.set_yticks(y, rules)
    axes.set_xlim(0, float(total.max()) * 1.15)
    axes.set_xlabel("records (a file quarantined whole counts once, as rule file.*)")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(axis="x", color="#e5e5e5", linewidth=0.6)
    axes.set_axisbelow(True)
    axes.tick_params(axis="y", length=0)
    axes.set_title(f"{title}: {thousands(total.sum())} records", loc="left")
    axes.legend(handles=[Patch(facecolor=colours[f], label=f) for f in formats],
                loc="upper left", bbox_to_anchor=(1.01, 1.0), title=PART_TITLE.get(by, by), title_fontsize=8)
    return figure


def quarantine_png(counts: pl.DataFrame, scope: str = "", by: str = "format", dpi: int = DPI_METADATA) -> bytes:
    with chart_style():
        return png_bytes(quarantine_figure(counts, scope, by), dpi)
