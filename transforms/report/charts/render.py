"""Figures to PNG bytes, deterministically, and PNG bytes to Markdown or files.

No pyplot: figures are plain `matplotlib.figure.Figure` objects rendered by the Agg
canvas, so nothing depends on a global backend or on a display, and rendering in a
Dagster worker thread is safe. The style is matplotlib's default whatever the user's
matplotlibrc says, and PNG metadata carries no software version or date, so the same
data always gives the same bytes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# width of every chart in inches; metadata charts at DPI_METADATA stay well under 300 KB
WIDTH_IN = 11.0
DPI_METADATA = 80
DPI_FILE = 110

# no tEXt chunks: no "Software: matplotlib x.y" and never a creation time
PNG_METADATA = {"Software": None}

GAP_COLOUR = "#d62728"          # red: a day no source covers
EMPTY_COLOUR = "#f2f2f2"        # a day outside every unit's existence

_RC = {
    "font.size": 9,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
    "path.simplify": True,
}


@contextmanager
def chart_style() -> Iterator[None]:
    """matplotlib's defaults plus our few settings, ignoring the user's matplotlibrc."""
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        matplotlib.rcParams.update(_RC)
        yield


def new_figure(height_in: float, width_in: float = WIDTH_IN) -> Figure:
    figure = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure, dpi: int) -> bytes:
    """The figure as PNG at `dpi`; identical figures give identical bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata=PNG_METADATA)
    return buffer.getvalue()


def png_pair(figure: Figure) -> tuple[bytes, bytes]:
    """The figure as PNG at DPI_METADATA and at DPI_FILE, drawn once: the small picture is the large one scaled
    down. Drawing (mostly laying out text) is most of a chart's cost whatever the resolution, and a daily run
    drew each chart twice: 2.5 s of its active users chart."""
    from PIL import Image

    large = png_bytes(figure, DPI_FILE)
    width_in, height_in = figure.get_size_inches()
    size = (int(width_in * DPI_METADATA), int(height_in * DPI_METADATA))  # as Agg sizes its canvas
    with Image.open(io.BytesIO(large)) as picture:
        small = picture.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        # a palette of 256 colours (flat fills and their smoothed edges): scaled down, the picture had more
        # shades than drawn at its size, and twice the bytes
        small.quantize(256, dither=Image.Dither.NONE).save(buffer, format="png")
    return buffer.getvalue(), large


def message_figure(title: str, message: str, height_in: float = 1.6) -> Figure:
    """A small picture that says there is nothing to show yet, and why."""
    figure = new_figure(height_in)
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_title(title, loc="left")
    axes.text(0.5, 0.45, message, ha="center", va="center", fontsize=11, color="#555555",
              transform=axes.transAxes)
    return figure


def write_png(png: bytes, path: Path) -> Path:
    """Write atomically (readers never see half a file); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(png)
    os.replace(tmp, path)
    return path


def thousands(value: float) -> str:
    return f"{value:,.0f}".replace(",", " ")


def date_axes(axes, ylabel: str) -> None:
    """A time axis with concise dates, whole counts on a light grid, and the y label: the daily charts' look."""
    import matplotlib.dates as mdates
    from matplotlib.ticker import MaxNLocator

    locator = mdates.AutoDateLocator(minticks=4, maxticks=12)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(axis="y", color="#e5e5e5", linewidth=0.6)
    axes.set_axisbelow(True)
    axes.set_ylabel(ylabel)
