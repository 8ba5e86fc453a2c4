"""Pictures of the pipeline's outputs for people: PNG charts for Dagster metadata and report files.

Every chart shows aggregates only (counts per day, rule, service code or source),
never a person. Each builder returns a `Chart`: a modest PNG for embedding in the
asset catalog and the path of a full-size PNG written under `<data root>/reports/`
(or another folder), so the same picture can be opened outside Dagster.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from transforms.core.atomic import write_text
from transforms.core.layout import DataRoot
from transforms.core.stamps import code_digest
from transforms.tables import COVERAGE_SEGMENTS, DAILY_ALLOCATION, QUARANTINE, RECONCILIATION

if TYPE_CHECKING:
    import duckdb
    import polars as pl

# matplotlib is imported by the builders when a chart is drawn, not when the code location loads (~1 s)

__all__ = ["Chart", "active_users_chart", "coverage_chart", "deliveries_chart", "notifications_chart",
           "quarantine_chart", "reconciliation_chart", "reports_dir"]


@dataclass(frozen=True)
class Chart:
    name: str
    alt: str
    png: bytes                 # for embedding (DPI_METADATA, capped rows)
    path: Path                 # the full-size PNG file
    note: str = ""

    def markdown(self) -> str:
        """Markdown that shows the picture inline (a data: URI), as Dagster's asset catalog renders it."""
        alt = self.alt.replace("[", "(").replace("]", ")")
        image = f"![{alt}](data:image/png;base64,{base64.b64encode(self.png).decode('ascii')})"
        return f"{image}\n\n{self.note}" if self.note else image


def reports_dir(data_root: Path) -> Path:
    return DataRoot(Path(data_root)).reports


def _both(figure_of, name: str, out_dir: Path, *drawn: object) -> tuple[bytes, Path]:
    """Render one figure at the metadata and the file resolution; write the file.

    `drawn`: everything the figure is drawn from (frames and values). When they and the code are those of the
    file already written, its pictures are taken again instead of drawn: matplotlib takes one to two seconds a
    chart, and a daily run draws charts of tables it kept (the reconciliation, the quarantine).
    """
    from transforms.report.charts.render import chart_style, png_pair, write_png

    path = out_dir / f"{name}.png"
    memo = out_dir / f".{name}.png.json"  # the drawn data's digest, the metadata picture, the file's digest
    digest = _drawn_digest(name, drawn)
    try:
        recorded = json.loads(memo.read_text())
        if recorded["drawn"] == digest and recorded["file"] == hashlib.sha256(path.read_bytes()).hexdigest():
            return base64.b64decode(recorded["small"]), path
    except (OSError, ValueError, KeyError, TypeError):  # no memo, or not one of ours: drawn again
        pass
    with chart_style():
        small, large = png_pair(figure_of())
    write_png(large, path)
    write_text(memo, json.dumps({"drawn": digest, "file": hashlib.sha256(large).hexdigest(),
                                 "small": base64.b64encode(small).decode("ascii")}))
    return small, path


def _drawn_digest(name: str, drawn: tuple[object, ...]) -> str:
    """The digest of the chart's code and of what it is drawn from (a frame by its schema and rows)."""
    import polars as pl

    digest = hashlib.sha256(f"{code_digest()}\0{name}".encode())
    for part in drawn:
        if isinstance(part, pl.DataFrame):
            # as text, in a fixed order: counts come from group-bys in any order, and the same strings may lie
            # in Arrow buffers laid out differently (so equal frames gave different IPC bytes)
            text = part.sort(part.columns, nulls_last=True).write_csv(include_header=True)
            digest.update(f"\0frame\0{part.schema}\0{text}".encode())
        else:
            digest.update(f"\0{part!r}".encode())
    return digest.hexdigest()


def coverage_chart(data_root: Path, segments: pl.DataFrame | None = None, out_dir: Path | None = None) -> Chart:
    """Source of each day per municipality; `segments` defaults to timeline/coverage_segments.parquet."""
    from transforms.report.charts import coverage
    from transforms.report.charts.render import write_png

    if segments is None:
        segments = coverage.read_segments(COVERAGE_SEGMENTS.location(Path(data_root)))
    charts = coverage.coverage_charts(segments)
    path = write_png(charts.file_png, (out_dir or reports_dir(data_root)) / "coverage.png")
    alt = f"Source of each day for {charts.shown} of {charts.municipalities} municipalities; gaps in red"
    return Chart("coverage", alt, charts.metadata_png, path, charts.note)


def active_users_chart(data_root: Path, out_dir: Path | None = None, kommuner: list[str] | None = None) -> Chart:
    """Active users per service code over time, from timeline/daily/."""
    from transforms.report.charts import allocation

    frame, unit = allocation.active_per_period(DAILY_ALLOCATION.files(Path(data_root)), kommuner)
    scope = "municipalities " + ", ".join(kommuner) if kommuner else "all municipalities"
    png, path = _both(lambda: allocation.active_users_figure(frame, unit, scope), "active_users",
                      out_dir or reports_dir(data_root), frame, unit, scope)
    return Chart("active_users", f"Active users per service code per {unit}, {scope}", png, path)


def quarantine_chart(data_root: Path, source: str = "", out_dir: Path | None = None) -> Chart:
    """Quarantined records by rule; `source` 'iplos' or 'epj' keeps that input's files (split by year/format)."""
    from transforms.report.charts import quarantine

    by = "year" if source == "iplos" else "format"
    prefix = f"raw/{source}/" if source else ""
    counts = quarantine.quarantine_counts(QUARANTINE.files(Path(data_root)), prefix, by)
    scope = {"iplos": "yearly IPLOS extracts", "epj": "EPJ histories"}.get(source, "")
    name = f"quarantine_{source}" if source else "quarantine"
    png, path = _both(lambda: quarantine.quarantine_figure(counts, scope, by), name,
                      out_dir or reports_dir(data_root), counts, scope, by)
    return Chart(name, f"Quarantined records by rule{f', {scope}' if scope else ''}", png, path)


def notifications_chart(data_root: Path, con: duckdb.DuckDBPyConnection | None = None,
                        out_dir: Path | None = None) -> Chart:
    """Notifications per day by status (N/M/C) from the ledger (an open connection, else opened read-only)."""
    from transforms.report.charts import notifications

    counts = notifications.notification_counts(con) if con is not None else notifications.ledger_counts(
        DataRoot(Path(data_root)).ledger_db)
    png, path = _both(lambda: notifications.notifications_figure(counts), "notifications",
                      out_dir or reports_dir(data_root), counts)
    return Chart("notifications", "Notifications per day by status N, M, C", png, path)


def deliveries_chart(data_root: Path, con: duckdb.DuckDBPyConnection, out_dir: Path | None = None) -> Chart:
    """Messages per day by delivery state (accepted, waiting, rejected) from an open ledger connection."""
    from transforms.report.charts import deliveries

    counts = deliveries.delivery_counts(con)
    png, path = _both(lambda: deliveries.deliveries_figure(counts), "deliveries", out_dir or reports_dir(data_root),
                      counts)
    return Chart("deliveries", "Messages per day by delivery state: accepted, pending or in flight, rejected",
                 png, path)


def reconciliation_chart(data_root: Path, threshold: float, out_dir: Path | None = None,
                         kommuner: list[str] | None = None, name: str = "reconciliation") -> Chart:
    """Agreement of the timeline with the yearly extracts per municipality and year (timeline/reconciliation)."""
    from transforms.report.charts import reconciliation

    by_year = reconciliation.read_agreement(RECONCILIATION.location(Path(data_root)))
    if kommuner:
        by_year = by_year.filter(by_year["kommune"].is_in(kommuner))
    scope = "municipalities " + ", ".join(kommuner) if kommuner else "all municipalities"
    png, path = _both(lambda: reconciliation.agreement_figure(by_year, threshold, scope), name,
                      out_dir or reports_dir(data_root), by_year, threshold, scope)
    return Chart(name, f"Agreement of the timeline with the yearly extracts per year, {scope}", png, path)
