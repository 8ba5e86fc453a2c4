"""Active users per service code over time, from the daily aggregates (timeline/daily/day=.../).

Small multiples: one panel and one line per service code, each with its own y axis
starting at zero, because the codes differ by three orders of magnitude (home nursing
against emergency beds) and a shared axis would flatten all but the largest. The
daily totals over every municipality are averaged per week or month in DuckDB.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import matplotlib.dates as mdates
import polars as pl

from transforms.core import duck
from transforms.reference.codes import service_names
from transforms.report.charts.render import DPI_METADATA, chart_style, message_figure, new_figure, png_bytes, thousands

TITLE = "Active users per service code"
COLUMNS = 4
PANEL_IN = 1.35
HEADER_IN = 0.9
LINE_COLOUR = "#4c78a8"

PERIOD_SQL = """
WITH per_day AS (
    SELECT CAST(day AS DATE) AS day, service_code, sum(active) AS active
    FROM read_parquet($files, hive_partitioning = true)
    {where}
    GROUP BY ALL
), periods AS (
    -- the days with data in each period: a code without a row on such a day had no active user
    SELECT date_trunc($unit, day) AS period, count(DISTINCT day) AS days FROM per_day GROUP BY ALL
), sums AS (
    SELECT date_trunc($unit, day) AS period, service_code, sum(active) AS active FROM per_day GROUP BY ALL
)
SELECT CAST(p.period AS DATE) AS period, c.service_code,
       CAST(coalesce(s.active, 0) AS DOUBLE) / p.days AS active
FROM periods p CROSS JOIN (SELECT DISTINCT service_code FROM per_day) c
LEFT JOIN sums s ON s.period = p.period AND s.service_code = c.service_code
ORDER BY period, service_code
"""


def period_unit(first: dt.date, last: dt.date) -> str:
    """Days for up to two months, weeks for up to two years, else months."""
    span = (last - first).days
    return "day" if span <= 62 else "week" if span <= 731 else "month"


def active_per_period(daily_files: list[Path], kommuner: list[str] | None = None) -> tuple[pl.DataFrame, str]:
    """(period, service_code, active): the mean over the period's days of the users active that day, from the
    daily aggregates' files (`timeline/daily/day=YYYY-MM-DD/*.parquet`)."""
    files = sorted(str(p) for p in daily_files)
    empty = pl.DataFrame(schema={"period": pl.Date, "service_code": pl.Utf8, "active": pl.Float64})
    if not files:
        return empty, "month"
    where = "WHERE kommune IN (SELECT unnest($kommuner))" if kommuner else ""
    params: dict = {"files": files}
    if kommuner:
        params["kommuner"] = kommuner
    first = dt.date.fromisoformat(Path(files[0]).parent.name.removeprefix("day="))
    last = dt.date.fromisoformat(Path(files[-1]).parent.name.removeprefix("day="))
    unit = period_unit(first, last)
    with duck.connect() as con:
        frame = con.execute(PERIOD_SQL.format(where=where), {**params, "unit": unit}).pl()
    return (frame if frame.height else empty), unit


def _code_order(codes: list[str]) -> list[str]:
    return sorted(codes, key=lambda c: (int(c) if c.isdigit() else 10**6, c))


def active_users_figure(frame: pl.DataFrame, unit: str, scope: str = "all municipalities"):
    if frame.height == 0:
        return message_figure(TITLE, "No daily aggregates yet: materialise daily_allocation for a range of days.")
    names = service_names()
    codes = _code_order(frame["service_code"].unique().to_list())
    rows = math.ceil(len(codes) / COLUMNS)
    figure = new_figure(HEADER_IN + rows * PANEL_IN)
    first, last = frame["period"].min(), frame["period"].max()
    per = {"day": "daily", "week": "weekly mean of daily counts", "month": "monthly mean of daily counts"}[unit]
    figure.suptitle(f"{TITLE}, {scope} ({per}), {first:%Y-%m} to {last:%Y-%m}", x=0.01, ha="left",
                    fontsize=11, fontweight="bold")
    grid = figure.subplots(rows, COLUMNS, sharex=True, squeeze=False)
    for axes, code in zip(grid.flat, codes, strict=False):
        series = frame.filter(pl.col("service_code") == code).sort("period")
        axes.plot(series["period"].to_list(), series["active"].to_numpy(), color=LINE_COLOUR, linewidth=1.2,
                  drawstyle="steps-post" if unit == "day" else "default")
        axes.set_ylim(bottom=0, top=max(1.0, float(series["active"].max()) * 1.12))
        name = names.get(code, "")
        short = name if len(name) <= 34 else name[:33] + "…"
        latest = series["active"][-1]
        axes.set_title(f"{code} {short}".strip(), loc="left", fontsize=7.5, fontweight="normal")
        label = thousands(latest) if latest >= 10 else f"{latest:.1f}"
        axes.text(1.0, 1.0, label, transform=axes.transAxes, ha="right", va="top", fontsize=7,
                  color="#333333")
        axes.tick_params(labelsize=7)
        locator = mdates.AutoDateLocator(minticks=2, maxticks=4)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        axes.grid(axis="y", color="#e5e5e5", linewidth=0.6)
    for index, axes in enumerate(grid.flat):
        if index >= len(codes):
            axes.set_axis_off()
        elif index + COLUMNS >= len(codes):
            axes.xaxis.set_tick_params(labelbottom=True)   # the panel below is empty: show its dates here
    figure.supxlabel("Each panel has its own scale from zero; the number at the top right is the last "
                     f"{unit}'s value. Active = allocated and not temporarily stopped.", x=0.01, ha="left",
                     fontsize=7.5, color="#444444")
    return figure


def active_users_png(frame: pl.DataFrame, unit: str, scope: str = "all municipalities",
                     dpi: int = DPI_METADATA) -> bytes:
    with chart_style():
        return png_bytes(active_users_figure(frame, unit, scope), dpi)
