"""The curated succession table: the changes 2017-2025 that SSB's grouping cannot express.

`municipality-successions.csv` (its header cites the public sources) says which old code went wholly
to which successor (Hemne 1612 -> 5011 -> Heim 5055), which were split between several (Snillfjord,
Tysfjord in 2020, Ålesund 1507 in 2024) with the successor that takes the records no rule places,
and which code was kept through a merger (Stavanger 1103). `municipalities` combines it with the
grouping; the timeline assigns a split unit's records (`timeline/splits.py`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache

import polars as pl

from transforms.reference.files import reference_rows

SUCCESSIONS_FILE = "municipality-successions.csv"
KINDS = ("whole", "split", "kept")


class SuccessionTableError(ValueError):
    """The packaged succession table contradicts itself; the message names the row."""


@dataclass(frozen=True)
class Split:
    """A unit whose territory was divided on `date` between `successors` (today's reporting municipalities)."""

    unit: str
    name: str
    date: dt.date
    successors: tuple[str, ...]
    default: str


@cache
def successions() -> pl.DataFrame:
    """The table as shipped: code, name, successor, successor_name, from (date), kind, default (bool)."""
    rows = []
    for number, row in enumerate(reference_rows(SUCCESSIONS_FILE), start=2):
        where = f"{SUCCESSIONS_FILE} row {number} ({row['code']} -> {row['successor']})"
        if row["kind"] not in KINDS:
            raise SuccessionTableError(f"{where}: kind {row['kind']!r} is not one of {KINDS}")
        if row["default"] not in ("", "default") or (row["default"] and row["kind"] != "split"):
            raise SuccessionTableError(f"{where}: only a split row may be marked default")
        rows.append({**row, "from": dt.date.fromisoformat(row["from"]), "default": row["default"] == "default"})
    frame = pl.DataFrame(rows, schema={"code": pl.Utf8, "name": pl.Utf8, "successor": pl.Utf8,
                                       "successor_name": pl.Utf8, "from": pl.Date, "kind": pl.Utf8,
                                       "default": pl.Boolean}, orient="row")
    for (code,), group in frame.filter(pl.col("kind") == "split").group_by(["code"]):
        if group["default"].sum() != 1 or group.height < 2 or group["from"].n_unique() != 1:
            raise SuccessionTableError(f"{SUCCESSIONS_FILE}: split of {code} needs two or more successors on one "
                                       "date and exactly one marked default")
    whole = frame.filter(pl.col("kind") == "whole")
    if whole["code"].n_unique() != whole.height:
        raise SuccessionTableError(f"{SUCCESSIONS_FILE}: a code went wholly to two successors")
    return frame


@cache
def whole_successor() -> dict[str, str]:
    """Old code -> the code its whole territory was filed under next (cached, like the lookups below: the
    grouping asks them once per code, 3,300 table filters and 1 s per process uncached; do not modify)."""
    whole = successions().filter(pl.col("kind") == "whole")
    return dict(zip(whole["code"].to_list(), whole["successor"].to_list(), strict=True))


@cache
def kept_codes() -> frozenset[str]:
    """Codes that stayed valid through a change (valid before it, whatever the grouping suggests)."""
    return frozenset(successions().filter(pl.col("kind") == "kept")["code"].to_list())


@cache
def first_year_as_successor() -> dict[str, int]:
    """A successor code -> the first year territory was filed under it (its first valid year)."""
    rows = successions().filter(pl.col("kind") != "kept").group_by("successor").agg(pl.col("from").min())
    return {code: first.year for code, first in rows.iter_rows()}


@cache
def divided_units() -> dict[str, Split]:
    """The units whose territory was divided, keyed by the divided code (5012, 1850, 1507)."""
    split_rows = successions().filter(pl.col("kind") == "split")
    result = {}
    for (code,), group in split_rows.group_by(["code"], maintain_order=True):
        result[code] = Split(
            unit=code, name=group["name"][0], date=group["from"][0],
            successors=tuple(sorted(group["successor"].to_list())),
            default=group.filter(pl.col("default"))["successor"][0])
    return result


def split_of(code: str) -> Split | None:
    """The split a code's records take part in: its own, or that of the code it went wholly into (1613 -> 5012)."""
    successor = whole_successor()
    seen = set()
    while code not in divided_units() and code in successor and code not in seen:
        seen.add(code)
        code = successor[code]
    return divided_units().get(code)
