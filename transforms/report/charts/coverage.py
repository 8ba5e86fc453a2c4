"""The coverage chart: which source is authoritative for each day of each municipality.

One row per reporting municipality, time across, one coloured rectangle per coverage
segment (`timeline/coverage_segments.parquet`): the EPJ history, that year's yearly
IPLOS extract, or a gap in red. A municipality made of several units (the numbers valid
before a merger or renumbering) is split into lanes, one per unit alive at the same
time. Everything is drawn as one collection of rectangles from the segments, so a
national chart (~356 municipalities, a few thousand segments) renders in well under a
second.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import polars as pl
from matplotlib.collections import PolyCollection
from matplotlib.patches import Patch
from matplotlib.transforms import ScaledTranslation

from transforms.reference.municipalities import municipality_codes
from transforms.report.charts.render import (
    DPI_FILE,
    DPI_METADATA,
    GAP_COLOUR,
    chart_style,
    message_figure,
    new_figure,
    png_bytes,
    thousands,
)

TITLE = "Source of each day per municipality"
# the metadata chart keeps at most this many municipalities (the file has them all)
METADATA_MAX_ROWS = 40
ROW_IN = 0.30           # height of a one-lane row, inches
LANE_EXTRA_IN = 0.12    # each further lane
HEADER_IN = 1.5         # title, legend and axis
ROW_PAD = 0.12          # blank space above and below each row, in row units

IPLOS_COLOUR = "#4c78a8"
EPJ_COLOURS = ("#2f8a3b", "#8cc56f", "#c7a035")   # first, second, third and later system of a municipality
LEGEND = [
    ("epj1", EPJ_COLOURS[0], "EPJ history, system 1"),
    ("epj2", EPJ_COLOURS[1], "EPJ history, system 2"),
    ("epj3", EPJ_COLOURS[2], "EPJ history, system 3+"),
    ("iplos", IPLOS_COLOUR, "yearly IPLOS extract"),
    ("gap", GAP_COLOUR, "gap: no source"),
]
SEGMENT_SCHEMA = {"kommune": pl.Utf8, "unit": pl.Utf8, "source": pl.Utf8, "first_day": pl.Date,
                  "last_day": pl.Date, "days": pl.Int64}


@dataclass(frozen=True)
class CoverageCharts:
    """The metadata chart (modest, capped rows) and the full chart (every municipality)."""

    metadata_png: bytes
    file_png: bytes
    municipalities: int
    shown: int
    note: str


def read_segments(path: Path) -> pl.DataFrame:
    """The coverage segments of `timeline/coverage_segments.parquet` (empty when there are none yet)."""
    if not path.exists():
        return pl.DataFrame(schema=SEGMENT_SCHEMA)
    return pl.read_parquet(path, columns=list(SEGMENT_SCHEMA))


def _kinds(segments: pl.DataFrame) -> pl.DataFrame:
    """Each segment's legend kind: gap, iplos, or epj1/2/3 by the order systems first appear."""
    systems = (
        segments.filter(pl.col("source").str.starts_with("epj:"))
        .group_by("kommune", "source").agg(pl.col("first_day").min())
        .sort("kommune", "first_day", "source")
        .with_columns(order=pl.col("first_day").rank("ordinal").over("kommune").clip(upper_bound=3))
        .select("kommune", "source", kind=pl.lit("epj") + pl.col("order").cast(pl.Utf8))
    )
    return (
        segments.join(systems, on=["kommune", "source"], how="left")
        .with_columns(kind=pl.when(pl.col("source") == "gap").then(pl.lit("gap"))
                      .when(pl.col("source").str.starts_with("iplos:")).then(pl.lit("iplos"))
                      .otherwise(pl.col("kind")))
    )


def _lanes(segments: pl.DataFrame) -> pl.DataFrame:
    """(kommune, unit, lane, lanes): units alive at the same time get their own lane.

    A greedy interval colouring over the units' spans (one loop step per unit, a few
    hundred nationally): a unit that ends before another begins shares its lane.
    """
    spans = (segments.group_by("kommune", "unit")
             .agg(pl.col("first_day").min().alias("start"), pl.col("last_day").max().alias("end"))
             .sort("kommune", "start", "unit"))
    rows = []
    for (kommune,), frame in spans.group_by("kommune", maintain_order=True):
        lane_ends: list[dt.date] = []
        for unit, start, end in frame.select("unit", "start", "end").iter_rows():
            lane = next((i for i, last in enumerate(lane_ends) if last < start), None)
            if lane is None:
                lane = len(lane_ends)
                lane_ends.append(end)
            else:
                lane_ends[lane] = end
            rows.append((kommune, unit, lane))
    lanes = pl.DataFrame(rows, schema={"kommune": pl.Utf8, "unit": pl.Utf8, "lane": pl.Int64}, orient="row")
    return lanes.with_columns(lanes=pl.col("lane").max().over("kommune") + 1)


def _choose_rows(segments: pl.DataFrame, max_rows: int | None) -> tuple[list[str], str]:
    """The municipalities to draw and a note saying what was left out."""
    kommuner = sorted(segments["kommune"].unique().to_list())
    if max_rows is None or len(kommuner) <= max_rows:
        return kommuner, ""
    gap_days = (segments.filter(pl.col("source") == "gap").group_by("kommune").agg(pl.col("days").sum())
                .sort(["days", "kommune"], descending=[True, False]))
    if gap_days.height:
        chosen = gap_days["kommune"].head(max_rows).to_list()
        note = (f"Showing {len(chosen)} of {len(kommuner)} municipalities: those with gaps, most gap days first"
                + (f" ({gap_days.height - len(chosen)} more with gaps left out)" if gap_days.height > max_rows else "")
                + ". Every municipality is in the full-size chart.")
    else:
        chosen = kommuner[:max_rows]
        note = (f"No municipality has a gap. Showing the first {len(chosen)} of {len(kommuner)} municipalities; "
                "every municipality is in the full-size chart.")
    return sorted(chosen), note


def _row_label(kommune: str, names: dict[str, str]) -> str:
    name = names.get(kommune)
    return f"{kommune} {name}" if name else kommune


def _label_units(axes, data: pl.DataFrame, lane_h: pl.Expr) -> None:
    """The unit number at the start of each unit's lane, where the lane is tall enough to hold it."""
    starts = (data.with_columns(lane_height=lane_h)
              .group_by("kommune", "unit", "lane", "lanes", "bottom", "height", "lane_height")
              .agg(pl.col("first_day").min()).sort("kommune", "unit"))
    if starts.height == 0 or starts["lanes"].max() == 1:
        return
    points_per_unit = ROW_IN * 72
    for row in starts.filter(pl.col("lanes") > 1).iter_rows(named=True):
        if row["lane_height"] * points_per_unit < 7:
            continue
        y = row["bottom"] + ROW_PAD + (row["lanes"] - 0.5 - row["lane"]) * row["lane_height"]
        axes.text(mdates.date2num(row["first_day"]) + 15, y, row["unit"], fontsize=6, color="white",
                  va="center", ha="left", fontweight="bold")


def coverage_figure(segments: pl.DataFrame, max_rows: int | None = None):
    """The figure, a note on what was left out, and how many municipalities it shows.

    `max_rows` caps the municipalities shown (those with gaps first).
    """
    if segments.height == 0:
        return message_figure(TITLE, "No coverage yet: the timeline has not been built."), "", 0
    kommuner, note = _choose_rows(segments, max_rows)
    data = _kinds(segments.filter(pl.col("kommune").is_in(kommuner)))
    lanes = _lanes(data)
    # rows top to bottom in kommune order; each row's height grows with its lanes
    rows = (lanes.select("kommune", "lanes").unique().sort("kommune")
            .with_columns(height=1.0 + (pl.col("lanes") - 1) * (LANE_EXTRA_IN / ROW_IN)))
    rows = rows.with_columns(bottom=-(pl.col("height").cum_sum()))
    total_height = float(rows["height"].sum())
    data = data.join(lanes, on=["kommune", "unit"]).join(rows.select("kommune", "height", "bottom"), on="kommune")

    epoch = mdates.date2num(dt.datetime(1970, 1, 1))
    pad = ROW_PAD
    lane_h = ((pl.col("height") - 2 * pad) / pl.col("lanes"))
    geometry = data.select(
        x0=pl.col("first_day").cast(pl.Int32).cast(pl.Float64) + epoch,
        x1=pl.col("last_day").cast(pl.Int32).cast(pl.Float64) + epoch + 1.0,
        y0=pl.col("bottom") + pad + (pl.col("lanes") - 1 - pl.col("lane")) * lane_h,
        y1=pl.col("bottom") + pad + (pl.col("lanes") - pl.col("lane")) * lane_h,
        kind=pl.col("kind"),
    )
    x0, x1, y0, y1 = (geometry[c].to_numpy() for c in ("x0", "x1", "y0", "y1"))
    vertices = np.stack([np.column_stack([x0, y0]), np.column_stack([x0, y1]),
                         np.column_stack([x1, y1]), np.column_stack([x1, y0])], axis=1)
    colour_of = {kind: colour for kind, colour, _ in LEGEND}
    colours = [colour_of[k] for k in geometry["kind"].to_list()]
    gaps = geometry["kind"].to_numpy() == "gap"

    height_in = HEADER_IN + total_height * ROW_IN
    figure = new_figure(height_in)
    axes = figure.add_subplot()
    # a gap is outlined as well as filled, so even a one-day gap stays visible at a few pixels per week
    # thin white edges separate the lanes of a row and the yearly extracts of a lane
    axes.add_collection(PolyCollection(vertices[~gaps], facecolors=np.array(colours, dtype=object)[~gaps],
                                       edgecolors="white", linewidths=0.5))
    if gaps.any():
        axes.add_collection(PolyCollection(vertices[gaps], facecolors=GAP_COLOUR, edgecolors=GAP_COLOUR,
                                           linewidths=1.0))
    first = float(x0.min())
    last = float(x1.max())
    axes.set_xlim(first, last)
    axes.set_ylim(-total_height, 0)
    axes.xaxis.set_major_locator(mdates.YearLocator())
    axes.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
    axes.grid(axis="x", color="#bbbbbb", linewidth=0.6)
    axes.set_axisbelow(False)
    names = dict(municipality_codes().select("reporting_kommune", "reporting_name").unique().drop_nulls()
                 .iter_rows())
    axes.set_yticks((rows["bottom"] + rows["height"] / 2).to_list(),
                    [_row_label(k, names) for k in rows["kommune"].to_list()])
    axes.tick_params(axis="y", length=0)
    axes.spines[["left", "top", "right"]].set_visible(False)

    gap_segments = data.filter(pl.col("kind") == "gap")
    first_day = mdates.num2date(first).date()
    last_day = mdates.num2date(last).date() - dt.timedelta(days=1)
    top_labels = total_height > 30
    if top_labels:
        axes.tick_params(axis="x", labeltop=True)
    # the legend sits just above the plot (above the top date labels of a tall chart) and the title above it
    lift_pt = 19 if top_labels else 3
    lift = ScaledTranslation(0, lift_pt / 72, figure.dpi_scale_trans)
    summary = (f"{len(kommuner)} municipalities shown; {thousands(gap_segments['days'].sum())} gap days in "
               f"{gap_segments.height} segments. A row with lanes had several units at once (the numbers before "
               "a merger); EPJ systems are numbered per municipality in the order they start.")
    if len(kommuner) <= METADATA_MAX_ROWS:
        _label_units(axes, data, lane_h)
    present = set(geometry["kind"].unique().to_list())
    handles = [Patch(facecolor=colour, label=label) for kind, colour, label in LEGEND
               if kind in present or kind == "gap"]
    if "gap" not in present:
        handles[-1] = Patch(facecolor=GAP_COLOUR, label="gap: no source (none here)")
    axes.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1), bbox_transform=axes.transAxes + lift,
                ncols=len(handles), handlelength=1.2, columnspacing=1.2, borderaxespad=0, borderpad=0)
    axes.set_title(f"{TITLE}, {first_day} to {last_day}", loc="left", pad=lift_pt + 19)
    caption = "\n".join(textwrap.wrap(summary + (f" {note}" if note else ""), 150))
    axes.set_xlabel(caption, loc="left", fontsize=7.5, color="#444444")
    return figure, note, len(kommuner)


def coverage_charts(segments: pl.DataFrame, metadata_max_rows: int = METADATA_MAX_ROWS) -> CoverageCharts:
    """Both charts as PNG: the metadata one capped to `metadata_max_rows`, the file one complete."""
    with chart_style():
        small, note, shown = coverage_figure(segments, metadata_max_rows)
        metadata_png = png_bytes(small, DPI_METADATA)
        full, _, municipalities = coverage_figure(segments, None)
        file_png = png_bytes(full, DPI_FILE)
    return CoverageCharts(metadata_png, file_png, municipalities, shown, note)


def coverage_png(segments: pl.DataFrame, max_rows: int | None = None, dpi: int = DPI_METADATA) -> bytes:
    with chart_style():
        figure, _, _ = coverage_figure(segments, max_rows)
        return png_bytes(figure, dpi)
