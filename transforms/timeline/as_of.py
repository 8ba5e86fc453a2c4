"""Which municipalities' reconstruction a later (or earlier) as-of date can change.

Why: the daily schedule moves the as-of date forward a day every morning. Every unit's coverage gains that
day, and rebuilding every timeline of the country for it took 42 s, while nearly every municipality's rows
come out the same. A municipality's reconstruction reads the as-of date in three places only:

- the coverage, day by day up to the as-of date. A day's source depends on that day alone (`COVERAGE_SQL`),
  so a later date only extends each unit's last run of days (its trailing segment), and adds a new run
  where the source changes (an EPJ system's configured end, a new year). Everything the episodes read of
  the coverage (`chain_segments`, the transitions between sources, the days a record's source covers, the
  gaps) is unchanged while each unit's trailing segment keeps its source and its first day, and is not a
  gap: a trailing gap's length decides what an episode with a later end bridges;
- `episodes_dated`'s imputed ends (`last_covered < as_of` with later coverage): a record whose source's
  coverage ends on the as-of date has no later coverage on either date, and one whose coverage ended
  earlier compares the same against both;
- the data year (the units and their successors of each year; the extracts expected): in the base.

A municipality is therefore reconstructed again when, for one of its units, the source on the new date or the
first day of the run holding it differ from the old date's, or either is a gap; and, to keep the argument
clear of any record the timeline reads relative to its days (a stop or a change dated on the day, a record
registered after the as-of date), when one of its staged dates lies between the two dates. Municipalities
with analysts' overrides are always reconstructed: their gap decisions compare the covered days directly.

`as_of_digests` turns that into a digest per municipality that is equal for two dates exactly when none of
it happens between them; `build_or_keep_timeline` rebuilds the municipalities whose digest changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl

from transforms.core import duck
from transforms.tables import STAGED_TABLES


def _date_columns(table: str) -> list[tuple[str, bool]]:
    """The declared date (False) and timestamp (True) columns of a staged table."""
    return [(c.name, c.dtype != pl.Date) for c in STAGED_TABLES[table].columns
            if c.dtype == pl.Date or isinstance(c.dtype, pl.Datetime) or c.dtype == pl.Datetime]


def latest_dates(files: dict[str, list[Path]], day: dt.date) -> dict[Path, dt.date | None]:
    """Per staged file of `files` (by table), the latest of its dates and times (as UTC days) on or before
    `day` (None: none). Two days a and b see the same latest date exactly when no date of the file lies
    in (a, b]: what `as_of_digests` needs, in one scan of the date columns."""
    latest: dict[Path, dt.date | None] = {}
    with duck.connect() as con:
        for table, paths in files.items():
            columns = _date_columns(table)
            if not paths or not columns:
                latest.update(dict.fromkeys(paths))
                continue
            days = [f"CAST(timezone('UTC', \"{name}\") AS DATE)" if timed else f'"{name}"' for name, timed in columns]
            each = ", ".join(f"max({d}) FILTER (WHERE {d} <= $day)" for d in days)
            rows = con.execute(
                f"SELECT filename, greatest({each}) FROM read_parquet({duck.sql_list(paths)}, filename = true, "
                "union_by_name = true) GROUP BY filename", {"day": day}).fetchall()
            found = {Path(name): value for name, value in rows}
            latest.update({path: found.get(path) for path in paths})  # an empty file has no rows
    return latest


def trailing_coverage(segments: pl.DataFrame, day: dt.date) -> dict[str, str]:
    """Per municipality, its units' runs of coverage that hold `day` (the trailing segments of a coverage up to
    `day`): unit, source and first day; a gap names `day` itself, so that no two dates compare equal."""
    trailing = segments.filter(pl.col("last_day") == day).sort("kommune", "unit", "first_day")
    marks = trailing.select(
        "kommune",
        pl.when(pl.col("source") == "gap").then(pl.format("{} gap on {}", "unit", pl.lit(day.isoformat())))
        .otherwise(pl.format("{} {} from {}", "unit", "source", pl.col("first_day").cast(pl.Utf8))).alias("mark"))
    return {nr: "; ".join(group) for nr, group in
            marks.group_by("kommune", maintain_order=True).agg("mark").iter_rows()}


def as_of_digests(day: dt.date, families: dict[str, list[str]], files: dict[str, list[Path]],
                  latest: dict[Path, dt.date | None], trailing: dict[str, str],
                  with_overrides: set[str]) -> dict[str, str]:
    """Per municipality, a digest of what the as-of date `day` changes in its reconstruction (module doc):
    its units' trailing coverage (`trailing_coverage`), the latest date on or before `day` of every staged file
    it reads (its family's, `files` by owner), and `day` itself when it has overrides."""
    digests = {}
    for nr, members in families.items():
        digest = hashlib.sha256(f"coverage {trailing.get(nr, 'none')}\n".encode())
        for member in members:
            for path in files.get(member, []):
                digest.update(f"{path} {latest.get(path)}\n".encode())
        if nr in with_overrides:
            digest.update(f"overrides on {day.isoformat()}\n".encode())
        digests[nr] = digest.hexdigest()
    return digests
