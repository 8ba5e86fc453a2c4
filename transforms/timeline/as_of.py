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

Two of its statements join a staged date with the coverage of that day: an IPLOS stop counts where that
year's extract covers its first day, and an IPLOS provider change where it covers the first day of the year;
a stop dated after the as-of date has no coverage yet, and gains it when the as-of date reaches it.

A municipality is therefore reconstructed again when, for one of its units, the source on the new date or the
first day of the run holding it differ from the old date's, or either is a gap; or when a date its
reconstruction joins with the coverage (`COVERAGE_DATES`), or the start of a service, lies between the two
dates. Municipalities with analysts' overrides are always reconstructed: their gap decisions compare the
covered days directly. End dates, registration times and the like do not count: a service planned to end on
the new day (common in EPJ exports) ends on it whatever the as-of date.

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

# per staged table, the dates the reconstruction joins with the coverage of that day (the IPLOS stops' first
# days; the IPLOS provider changes fall on the first day of a data year, and a new year rebuilds everything),
# and, as a margin, the days services and stops begin
COVERAGE_DATES = {
    "iplos_stops": ("from_date",), "epj_stops": ("from_date",),
    "iplos_services": ("start_date",), "epj_service_versions": ("start_date",),
}


def _date_columns(table: str) -> list[str]:
    """The table's `COVERAGE_DATES`, each a declared date column."""
    columns = {c.name: c.dtype for c in STAGED_TABLES[table].columns}
    names = list(COVERAGE_DATES.get(table, ()))
    assert all(columns.get(name) == pl.Date for name in names), f"{table}: {names} must be date columns"
    return names


def latest_dates(files: dict[str, list[Path]], day: dt.date) -> dict[Path, dt.date | None]:
    """Per staged file of `files` (by table), the latest of its `COVERAGE_DATES` on or before `day` (None:
    none, or the table has no such date). Two days a and b see the same latest date exactly when no such date
    of the file lies in (a, b]: what `as_of_digests` needs, in one scan of those columns."""
    latest: dict[Path, dt.date | None] = {}
    with duck.connect() as con:
        for table, paths in files.items():
            columns = _date_columns(table)
            if not paths or not columns:
                latest.update(dict.fromkeys(paths))
                continue
            each = ", ".join(f'max("{name}") FILTER (WHERE "{name}" <= $day)' for name in columns)
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
