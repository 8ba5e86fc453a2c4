"""Formatting and file-assembly helpers shared by the renderers.

Every renderer builds a frame with one row per output line (or block of lines), string
fields already formatted, and sort keys; corruptions are extra rows of the same frame
marked with a rule id. `assemble` sorts the rows, joins them into the file text, and
reports the 1-based physical line of every marked row, so a corruption's line number is
computed from the very text that is written rather than predicted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

MARK_COLUMNS = {"rule_id": pl.Utf8, "record_kind": pl.Utf8, "description": pl.Utf8}


@dataclass(frozen=True)
class Corruption:
    """One bad input the generator planted; `line` is None for a whole-file corruption."""

    source_file: str
    line: int | None
    record_kind: str
    rule_id: str
    description: str


def date_no(col: str | pl.Expr) -> pl.Expr:
    """dd.mm.yyyy, empty when null (epj-a-csv and layout 3.6)."""
    expr = pl.col(col) if isinstance(col, str) else col
    return expr.cast(pl.Date).dt.strftime("%d.%m.%Y").fill_null("")


def date_iso(col: str | pl.Expr) -> pl.Expr:
    """YYYY-MM-DD, empty when null (layout 3.7)."""
    expr = pl.col(col) if isinstance(col, str) else col
    return expr.cast(pl.Date).dt.strftime("%Y-%m-%d").fill_null("")


def timestamp_no(col: str) -> pl.Expr:
    """Wall-clock seconds as 'dd.mm.yyyy HH:MM:SS' (epj-a-csv)."""
    return pl.from_epoch(pl.col(col), time_unit="s").dt.strftime("%d.%m.%Y %H:%M:%S")


def hours_text(col: str, comma: bool) -> pl.Expr:
    """Hours with one decimal ('4.5', or '4,5' where the format uses a decimal comma); empty when null."""
    text = pl.col(col).round(1).cast(pl.Utf8)
    return (text.str.replace(".", ",", literal=True) if comma else text).fill_null("")


def unmarked(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the (null) corruption mark columns to rows that are not corruptions."""
    return frame.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in MARK_COLUMNS.items()])


def assemble(
    frame: pl.DataFrame, sort_keys: list[str], first_line: int, source_file: str, sep: str = "\n"
) -> tuple[str, list[Corruption]]:
    """Sort rows, join their `text`, and locate the marked rows (the text may hold several lines)."""
    frame = frame.sort(sort_keys, maintain_order=True)
    lines = frame["text"].str.count_matches("\n") + 1
    starts = first_line + lines.cum_sum() - lines
    marks = []
    flagged = frame.with_columns(starts.alias("_line")).filter(pl.col("rule_id").is_not_null())
    for row in flagged.select("_line", "record_kind", "rule_id", "description").iter_rows():
        marks.append(Corruption(source_file, int(row[0]), row[1], row[2], row[3]))
    if frame.height == 0:
        return "", marks
    return frame.select(pl.col("text").str.join(sep)).item() + sep, marks


def write_bytes(root: Path, relative: str, data: bytes) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
