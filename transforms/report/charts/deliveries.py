"""Messages per day by delivery state, from the ledger's `delivery_state` view.

One step per message day, stacked: accepted by the registry (green), waiting (pending or in
flight, grey) and rejected (red), so a stuck municipality shows as a red day followed by grey.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import matplotlib.dates as mdates
import numpy as np
import polars as pl

from transforms.report.charts.render import date_axes, message_figure, new_figure, thousands

TITLE = "Messages per day by delivery state"
STATES = (("accepted", "accepted", "#54a24b"), ("waiting", "pending or in flight", "#9d9d9d"),
          ("rejected", "rejected", "#d62728"))
COUNTS_SQL = """
SELECT day, CASE WHEN state IN ('pending', 'in_flight') THEN 'waiting' ELSE state END AS state,
       count(*) AS messages
FROM delivery_state WHERE kind = 'stream' GROUP BY ALL ORDER BY ALL
"""
COUNT_SCHEMA = {"day": pl.Date, "state": pl.Utf8, "messages": pl.Int64}


def delivery_counts(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """(day, state, messages) from a ledger connection that has the `delivery_state` view."""
    frame = con.execute(COUNTS_SQL).pl()
    return frame.cast(COUNT_SCHEMA) if frame.height else pl.DataFrame(schema=COUNT_SCHEMA)


def deliveries_figure(counts: pl.DataFrame):
    if counts.height == 0:
        return message_figure(TITLE, "No messages written yet: materialise daily_submissions first.")
    first, last = counts["day"].min(), counts["day"].max()
    days = pl.DataFrame({"day": pl.date_range(first, last, "1d", eager=True)})
    wide = days.join(counts.pivot(on="state", index="day", values="messages", aggregate_function="sum"),
                     on="day", how="left").fill_null(0).sort("day")
    figure = new_figure(3.2)
    axes = figure.add_subplot()
    x = mdates.date2num(np.array([*wide["day"].to_list(), last + dt.timedelta(days=1)], dtype="datetime64[D]"))
    bottom = np.zeros(wide.height)
    for state, label, colour in STATES:
        values = wide[state].to_numpy().astype(float) if state in wide.columns else np.zeros(wide.height)
        if values.sum() == 0:
            continue
        axes.stairs(bottom + values, x, baseline=bottom, fill=True, color=colour,
                    label=f"{label}: {thousands(values.sum())}")
        bottom += values
    axes.set_xlim(x[0], x[-1])
    axes.set_ylim(0, max(float(bottom.max()), 1.0) * 1.15)
    date_axes(axes, "messages (one per municipality)")
    axes.set_title(f"{TITLE}, {first} to {last}: {thousands(bottom.sum())} messages", loc="left")
    axes.legend(loc="upper right", ncols=3, handlelength=1.2)
    return figure
