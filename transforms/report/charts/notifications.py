"""Notifications per day from the ledger, stacked by status: N new, M correction, C annulment.

The initial load (every service open on the cut-off day, all on 2017-01-01) is usually
a hundred times an ordinary day; a day that tall would flatten the rest, so the y axis
is cut above the ordinary days and each cut day is written on the chart with its count.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import matplotlib.dates as mdates
import numpy as np
import polars as pl

from transforms.report.charts.render import (
    DPI_METADATA,
    chart_style,
    date_axes,
    message_figure,
    new_figure,
    png_bytes,
    thousands,
)

TITLE = "Notifications per day"
STATUSES = (("N", "N new", "#4c78a8"), ("M", "M correction (KorrigerErstatt)", "#f58518"),
            ("C", "C annulment (KorrigerAnnuller)", "#e45756"))
# cut the y axis above the ordinary days when some days exceed this many times their 99th percentile
CUT_RATIO = 3.0
MAX_LABELLED_CUTS = 3
COUNT_SCHEMA = {"day": pl.Date, "status": pl.Utf8, "notifications": pl.Int64}

COUNTS_SQL = "SELECT day, status, count(*) AS notifications FROM notifications GROUP BY ALL ORDER BY ALL"


def notification_counts(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """(day, status, notifications) from an open ledger connection (read-only is enough)."""
    frame = con.execute(COUNTS_SQL).pl()
    return frame.cast(COUNT_SCHEMA) if frame.height else pl.DataFrame(schema=COUNT_SCHEMA)


def ledger_counts(path: Path) -> pl.DataFrame:
    """The counts from the ledger database `path`, opened read-only; empty when there is no ledger yet."""
    if not path.exists():
        return pl.DataFrame(schema=COUNT_SCHEMA)
    with duckdb.connect(str(path), read_only=True) as con:
        return notification_counts(con)


def _wide(counts: pl.DataFrame) -> pl.DataFrame:
    """One row per day from the first to the last day with notifications, zeros filled, a column per status."""
    first, last = counts["day"].min(), counts["day"].max()
    days = pl.DataFrame({"day": pl.date_range(first, last, "1d", eager=True)})
    wide = counts.pivot(on="status", index="day", values="notifications", aggregate_function="sum")
    wide = days.join(wide, on="day", how="left").fill_null(0)
    for status, _, _ in STATUSES:
        if status not in wide.columns:
            wide = wide.with_columns(pl.lit(0, pl.Int64).alias(status))
    return wide.with_columns(total=pl.sum_horizontal([s for s, _, _ in STATUSES])).sort("day")


def notifications_figure(counts: pl.DataFrame, scope: str = "all municipalities"):
    if counts.height == 0 or counts["notifications"].sum() == 0:
        return message_figure(TITLE, "No notifications yet: materialise daily_submissions for a range of days.")
    wide = _wide(counts)
    figure = new_figure(3.6)
    axes = figure.add_subplot()
    x = np.array([mdates.date2num(d) for d in (wide["day"].min(), wide["day"].max() + dt.timedelta(days=1))])
    day_x = mdates.date2num(dt.datetime(1970, 1, 1)) + wide["day"].cast(pl.Int32).to_numpy().astype(float)
    # a step per day: the count holds over the whole day [d, d+1)
    edges = np.append(day_x, day_x[-1] + 1.0)
    bottom = np.zeros(wide.height)
    totals = {}
    for status, label, colour in STATUSES:
        values = wide[status].to_numpy().astype(float)
        totals[status] = int(values.sum())
        if totals[status] == 0:
            continue
        axes.stairs(bottom + values, edges, baseline=bottom, fill=True, color=colour,
                    label=f"{label}: {thousands(totals[status])}")
        bottom += values
    total = wide["total"].to_numpy()
    busy = total[total > 0]
    # an outlier is a day above CUT_RATIO times the 99th percentile of the days with any notification
    threshold = CUT_RATIO * float(np.percentile(busy, 99, method="lower")) if len(busy) > 1 else np.inf
    cap = None
    if total.max() > threshold:
        cap = max(float(total[total <= threshold].max()), 1.0) * 1.3
        axes.set_ylim(0, cap)
        cut = wide.filter(pl.col("total") > cap).sort("total", descending=True)
        for i, (day, value) in enumerate(cut.select("day", "total").head(MAX_LABELLED_CUTS).iter_rows()):
            what = " (initial load)" if i == 0 and day == wide["day"].min() else ""
            axes.annotate(f"{day}: {thousands(value)}{what}, axis cut", xy=(mdates.date2num(day) + 0.5, cap),
                          xytext=(6, -12 - 11 * i), textcoords="offset points", fontsize=7.5, color="#333333",
                          arrowprops={"arrowstyle": "-", "color": "#777777", "linewidth": 0.6})
        if cut.height > MAX_LABELLED_CUTS:
            axes.text(0.99, 0.97, f"{cut.height - MAX_LABELLED_CUTS} more days above the axis", ha="right",
                      va="top", fontsize=7.5, transform=axes.transAxes)
    else:
        axes.set_ylim(0, max(float(total.max()), 1.0) * 1.1)
    axes.set_xlim(x[0], x[1])
    date_axes(axes, "notifications per day")
    first, last = wide["day"].min(), wide["day"].max()
    axes.set_title(f"{TITLE}, {scope}, {first} to {last}: {thousands(total.sum())} on "
                   f"{thousands((total > 0).sum())} days", loc="left")
    axes.legend(loc="upper right", ncols=3, handlelength=1.2)
    return figure


def notifications_png(counts: pl.DataFrame, scope: str = "all municipalities", dpi: int = DPI_METADATA) -> bytes:
    with chart_style():
        return png_bytes(notifications_figure(counts, scope), dpi)
