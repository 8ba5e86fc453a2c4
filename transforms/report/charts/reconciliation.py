"""Agreement of the reconstruction with the yearly extracts, per municipality and year.

One row per municipality, one column per year, each cell coloured by the share of services on which
the timeline and that year's extract agree (the extract was no evidence: an EPJ covered every day), and
labelled with it; a year without a reconciled extract stays blank. A national chart shows the
municipalities with the lowest agreement first, at most MAX_ROWS of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.colors import LinearSegmentedColormap

from transforms.report.charts.render import message_figure, new_figure

TITLE = "Agreement of the timeline with the yearly extracts"
MAX_ROWS = 60
ROW_IN = 0.28
HEADER_IN = 1.4
# red below 90 %, through yellow, to green at 100 %
COLOURS = LinearSegmentedColormap.from_list("agreement", ["#d62728", "#f2c744", "#2f8a3b"])
FLOOR = 0.9


def read_agreement(path: Path) -> pl.DataFrame:
    """Agreement per municipality and year from `timeline/reconciliation.parquet` (empty before a run)."""
    from transforms.timeline.reconciliation import agreement_by_year

    if not path.exists():
        return pl.DataFrame(schema={"kommune": pl.Utf8, "year": pl.Int32, "agreement": pl.Float64})
    return agreement_by_year(pl.read_parquet(path))


def agreement_figure(by_year: pl.DataFrame, threshold: float, scope: str = "all municipalities"):
    """The heat map; `by_year` is `agreement_by_year` of the reconciliation summary."""
    data = by_year.filter(pl.col("agreement").is_not_null())
    if data.height == 0:
        return message_figure(TITLE, "Nothing reconciled: no yearly extract was made redundant by an EPJ.")
    worst = data.group_by("kommune").agg(pl.col("agreement").min()).sort(["agreement", "kommune"])
    shown = sorted(worst["kommune"].head(MAX_ROWS).to_list())
    years = list(range(int(data["year"].min()), int(data["year"].max()) + 1))
    grid = np.full((len(shown), len(years)), np.nan)
    for kommune, year, agreement in data.filter(pl.col("kommune").is_in(shown)).select(
            "kommune", "year", "agreement").iter_rows():
        grid[shown.index(kommune), years.index(year)] = agreement
    figure = new_figure(HEADER_IN + ROW_IN * len(shown))
    axes = figure.add_subplot()
    scaled = np.clip((grid - FLOOR) / (1 - FLOOR), 0, 1)
    image = axes.imshow(np.ma.masked_invalid(scaled), cmap=COLOURS, vmin=0, vmax=1, aspect="auto")
    for (row, column), value in np.ndenumerate(grid):
        if not np.isnan(value):
            below = value < threshold
            axes.text(column, row, f"{100 * value:.1f}%", ha="center", va="center", fontsize=7,
                      color="white" if below else "black", fontweight="bold" if below else "normal")
    axes.set_xticks(range(len(years)), [str(y) for y in years])
    axes.set_yticks(range(len(shown)), shown)
    axes.tick_params(length=0)
    for side in ("left", "bottom"):
        axes.spines[side].set_visible(False)
    colourbar = figure.colorbar(image, ax=axes, fraction=0.03, pad=0.01)
    colourbar.set_ticks([0, 0.5, 1], labels=[f"≤{100 * FLOOR:.0f}%", f"{100 * (FLOOR + 1) / 2:.0f}%", "100%"])
    note = (f"; the {len(shown)} lowest of {worst.height}" if worst.height > len(shown) else "")
    axes.set_title(f"{TITLE}, {scope}{note} (bold: below the {100 * threshold:.0f}% threshold)", loc="left")
    return figure
