"""The review report: one self-contained HTML page per municipality, for the people who decide whether its
history may go to the registry.

A page shows coverage and gaps (with the services bridged across them), conflicts with their candidate
records and any analyst override, imputed ends, quarantine by rule, reconciliation with the yearly
extracts, and what the ledger holds or, before the first run, what a backfill would send (notifications
by type and year, first and last message). It is rendered by Jinja2 from `templates/review.html.j2`
with the project's chart code; the charts are PNG data URIs, so a page is one file that opens anywhere,
offline. Pages go to `<data root>/reports/review/<kommune>.html`, with an index beside them.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import jinja2
import polars as pl

from transforms.core.atomic import write_text
from transforms.core.config import load_kommuner
from transforms.core.settings import Settings
from transforms.report.charts.render import DPI_FILE, chart_style, png_bytes
from transforms.report.review_data import ReviewData, review_data
from transforms.tables import EVENTS, RECONCILIATION
from transforms.timeline.coverage import as_of_date

FOLDER = "review"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("transforms.report", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _charts(data: ReviewData, threshold: float) -> dict[str, str]:
    """The page's pictures, drawn by the same figure code as the asset charts."""
    from transforms.report.charts import coverage, notifications, reconciliation
    from transforms.timeline.reconciliation import agreement_by_year

    charts = {"coverage": _data_uri(coverage.coverage_png(data.segments, dpi=DPI_FILE))}
    with chart_style():
        if data.reconciliation.height:
            by_year = agreement_by_year(data.reconciliation.with_columns(pl.lit(data.kommune).alias("kommune")))
            charts["agreement"] = _data_uri(png_bytes(reconciliation.agreement_figure(
                by_year, threshold, f"{data.kommune} {data.name}"), DPI_FILE))
        what = "sent" if data.source == "ledger" else "a backfill would send"
        charts["notifications"] = _data_uri(png_bytes(notifications.notifications_figure(
            data.notification_days, f"{data.kommune} {data.name}, {what}"), DPI_FILE))
    return charts


def _cell(value: object) -> dict:
    """A value for the template: its display text, and whether it is a number (aligned right)."""
    if value is None:
        return {"text": "", "num": False}
    if isinstance(value, float):
        return {"text": f"{100 * value:.1f} %" if 0 <= value <= 1 else f"{value:,.1f}", "num": True}
    if isinstance(value, int) and not isinstance(value, bool):
        return {"text": f"{value:,}".replace(",", " ") if abs(value) >= 10_000 else str(value), "num": True}
    return {"text": str(value), "num": False}


def _rows(frame: pl.DataFrame) -> dict:
    """A frame for the template: its column names and rows of display cells."""
    return {"columns": frame.columns, "rows": [[_cell(v) for v in row] for row in frame.iter_rows()]}


def render_page(settings: Settings, data: ReviewData) -> str:
    threshold = settings.reconciliation.agreement_threshold
    tables = {name: _rows(getattr(data, name)) for name in (
        "gaps", "bridged", "conflicts", "conflicts_by_kind", "imputed", "quarantine", "reconciliation",
        "discrepancies", "notifications")}
    return _environment().get_template("review.html.j2").render(
        data=data, tables=tables, charts=_charts(data, threshold), threshold=threshold,
        as_of=as_of_date(settings).isoformat(), generated=dt.date.today().isoformat())


def review_folder(settings: Settings) -> Path:
    return settings.root.reports / FOLDER


def write_review(settings: Settings, kommuner: list[str] | None = None) -> list[Path]:
    """Write the pages of `kommuner` (default: every configured municipality) and the index; return the pages.

    Without a ledger entry for a municipality the page shows what a backfill from the cut-off to the as-of
    date would send (planned read-only, as `ktt backfill --dry-run` does, but not saved).
    """
    configured = [m.nr for m in load_kommuner(settings.root.kommuner_toml)]
    targets = sorted(kommuner or configured)
    unknown = [k for k in targets if k not in configured]
    if unknown:
        raise ValueError(f"municipalities not in config/kommuner.toml: {', '.join(unknown)}")
    plan = _plan(settings, targets)
    folder = review_folder(settings)
    pages = []
    summaries = []
    for kommune in targets:
        data = review_data(settings, kommune, plan)
        page = folder / f"{kommune}.html"
        write_text(page, render_page(settings, data))
        pages.append(page)
        summaries.append({"kommune": kommune, "name": data.name, "file": page.name, **data.counts})
    index = _environment().get_template("review_index.html.j2").render(
        pages=summaries, as_of=as_of_date(settings).isoformat(),
        reconciled=RECONCILIATION.location(settings.data_root).exists())
    write_text(folder / "index.html", index)
    return pages


def _plan(settings: Settings, kommuner: list[str]) -> pl.DataFrame | None:
    """What a backfill would send, for pages of municipalities the ledger holds nothing for yet."""
    from transforms.submit.dry_run import plan_backfill

    if not EVENTS.location(settings.data_root).exists():
        return None
    unwritten = _unwritten(settings, kommuner)
    if not unwritten:
        return None
    return plan_backfill(settings, settings.cutoff_date, as_of_date(settings), unwritten)


def _unwritten(settings: Settings, kommuner: list[str]) -> list[str]:
    from transforms.submit.ledger import last_written_days, open_ledger

    with open_ledger(settings.data_root, read_only=True) as con:
        written = last_written_days(con)
    return [k for k in kommuner if k not in written]
