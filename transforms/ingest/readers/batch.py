"""What a format reader hands over: one batch of records as text columns, not yet judged.

A batch holds, per record (a CSV row, a JSON line, an XML record element), its physical line, the
record kind it was read as, the raw text for the quarantine, the key that recognises an exact
duplicate, a structural rejection where the record could not even be split into fields, and one
text column per source field (`f:<field>`; JSON adds the value's JSON type, `j:<field>`). The rules
are applied afterwards, column by column (`transforms.ingest.records`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import polars as pl

BATCH_LINES = 100_000
UNKNOWN_KIND = "record"  # the sink's kind of a record whose kind cannot be told


def text_column(source: str) -> str:
    return f"f:{source}"


def type_column(source: str) -> str:
    return f"j:{source}"


@dataclass
class Batch:
    """`frame` columns: line (Int64), record (record map name or null), kind (the sink's record kind),
    raw (Utf8), dup (Utf8 or null: records with equal keys are exact duplicates), pre_rule/pre_message
    (rejected before the duplicate test: not a record at all), post_rule/post_message (rejected after
    it: the record's kind or required object), location (Utf8 or null) and the field columns."""

    frame: pl.DataFrame
    raw_of: Callable[[pl.DataFrame], pl.Series] | None = None  # raw text for rows whose raw is deferred


@dataclass
class FileState:
    """What one file's reading remembers across its batches: exact duplicates and records seen."""

    seen_rows: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema={"h1": pl.UInt64,
                                                                                  "h2": pl.UInt64}))
    seen_keys: dict[str, pl.DataFrame] = field(default_factory=dict)


def first_of_file(state: FileState, dup: pl.Series) -> pl.Series:
    """True for rows whose duplicate key was not seen earlier in the file (null keys are never
    duplicates). Keys are remembered as two 64-bit hashes, so memory grows by 16 bytes a row."""
    frame = pl.DataFrame({"k": dup}).with_row_index("i")
    keyed = frame.filter(pl.col("k").is_not_null()).with_columns(
        pl.col("k").hash(1).alias("h1"), pl.col("k").hash(2).alias("h2"))
    first_here = keyed.select("i", "h1", "h2", pl.struct("h1", "h2").is_first_distinct().alias("first"))
    earlier = first_here.join(state.seen_rows, on=["h1", "h2"], how="semi")["i"]
    new = first_here.filter(pl.col("first") & ~pl.col("i").is_in(earlier.implode()))
    state.seen_rows = pl.concat([state.seen_rows, new.select("h1", "h2")])
    dup_rows = keyed["i"].filter(~keyed["i"].is_in(new["i"].implode()))
    return ~frame["i"].is_in(dup_rows.implode())


def empty_lines(lines: pl.Series) -> pl.Series:
    """Lines that are no record: nothing but whitespace (Python's idea of it)."""
    return lines.str.contains(r"^[\s\x1c-\x1f]*$")


def iter_line_chunks(handle, hint: int = 8 << 20) -> Iterator[list[bytes]]:
    """Lists of whole lines (bytes, with terminators), about `hint` bytes each."""
    while True:
        lines = handle.readlines(hint)
        if not lines:
            return
        yield lines
