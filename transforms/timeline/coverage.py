"""Which source is authoritative for each reporting municipality, unit and day.

Coverage is decided per unit (the kommunenummer valid on the day for a part of
the territory): the configured EPJ system that holds the unit, is active and has
history for the day; else that year's yearly extract of the unit; else a gap.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

from transforms.core import duck
from transforms.core.config import load_kommuner
from transforms.core.settings import Settings
from transforms.reference.municipalities import municipality_codes, unit_owners
from transforms.tables import FILE_COUNTS
from transforms.tables.model import source_slug

OPEN_END = dt.date(9999, 12, 31)


def as_of_date(settings: Settings) -> dt.date:
    """The last day reconstructed: the configured as-of date, else yesterday."""
    return settings.as_of_date or (dt.date.today() - dt.timedelta(days=1))


def epj_system_frame(settings: Settings, kommuner: set[str] | None = None) -> pl.DataFrame:
    """One row per configured EPJ system and municipality (a shared export once per municipality that
    configures it), with its validity (open ends as 9999-12-31)."""
    rows = [
        {"kommune": m.nr, "system": s.system, "format": s.format, "active_from": s.active_from,
         "active_to": s.active_to or OPEN_END, "history_from": s.history_from,
         "units": list(s.kommuner) if s.kommuner is not None else None}
        for m in load_kommuner(settings.root.kommuner_toml) for s in m.systems()
        if kommuner is None or m.nr in kommuner
    ]
    return pl.DataFrame(rows, schema={
        "kommune": pl.Utf8, "system": pl.Utf8, "format": pl.Utf8, "active_from": pl.Date,
        "active_to": pl.Date, "history_from": pl.Date, "units": pl.List(pl.Utf8)})


def unit_years(settings: Settings, last_year: int, kommuner: set[str] | None = None,
               received: pl.DataFrame | None = None) -> pl.DataFrame:
    """(kommune, unit, year) for every configured municipality and year from the cut-off.

    A split unit counts for the successors that `received` records of it (kommune, unit): its days are
    theirs too; a successor that received none of its records has no days (and no gap) for it.
    """
    configured = [m.nr for m in load_kommuner(settings.root.kommuner_toml)
                  if kommuner is None or m.nr in kommuner]
    codes = municipality_codes().filter(pl.col("reporting_kommune").is_in(configured))
    codes = codes.select("code", "reporting_kommune", "valid_from", "valid_to")
    if received is not None and received.height:
        parts = unit_owners().join(received.rename({"unit": "code"}), on=["code", "kommune"]).filter(
            pl.col("kommune").is_in(configured))
        codes = pl.concat([codes, parts.select("code", pl.col("kommune").alias("reporting_kommune"),
                                               "valid_from", "valid_to")])
    years = pl.DataFrame({"year": list(range(settings.cutoff_date.year, last_year + 1))}, schema={"year": pl.Int32})
    return (
        codes.join(years, how="cross")
        .filter((pl.col("valid_from").is_null() | (pl.col("valid_from") <= pl.col("year")))
                & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= pl.col("year"))))
        .select(pl.col("reporting_kommune").alias("kommune"), pl.col("code").alias("unit"), "year")
        .sort("kommune", "unit", "year")
    )


def staged_extracts(settings: Settings) -> pl.DataFrame:
    """(year, unit) of every yearly extract that was read (a file quarantined whole does not count)."""
    pattern = FILE_COUNTS.location(settings.data_root, source=source_slug("raw/iplos/") + "*")
    files = sorted(pattern.parent.glob(pattern.name))
    if not files:
        return pl.DataFrame(schema={"year": pl.Int32, "unit": pl.Utf8})
    # one multi-file read: a national tree holds thousands of these small files
    counts = pl.read_parquet(files, columns=["source_file", "record_kind"])
    rejected = counts.filter(pl.col("record_kind") == "file")["source_file"]
    read = counts.filter(~pl.col("source_file").is_in(rejected.implode()))
    parts = read["source_file"].unique().str.extract_groups(r"^raw/iplos/(\d{4})/(\d{4})\.xml$")
    return (
        parts.struct.unnest().drop_nulls()
        .select(pl.col("1").cast(pl.Int32).alias("year"), pl.col("2").alias("unit"))
        .unique().sort("year", "unit")
    )


COVERAGE_SQL = """
WITH days AS (
    SELECT CAST(d AS DATE) AS day FROM generate_series($first_day::DATE, $last_day::DATE, INTERVAL 1 DAY) t(d)
), unit_days AS (
    SELECT u.kommune, u.unit, d.day FROM unit_years u JOIN days d ON year(d.day) = u.year
), epj_days AS (
    SELECT ud.kommune, ud.unit, ud.day, arg_max(s.system, s.active_from) AS system
    FROM unit_days ud JOIN epj_systems s
      ON s.kommune = ud.kommune
     AND (s.units IS NULL OR list_contains(s.units, ud.unit))
     AND ud.day BETWEEN s.active_from AND s.active_to
     AND ud.day >= s.history_from
    GROUP BY ALL
)
SELECT ud.kommune, ud.unit, ud.day,
       CASE WHEN e.system IS NOT NULL THEN 'epj:' || e.system
            WHEN x.unit IS NOT NULL THEN 'iplos:' || year(ud.day)
            ELSE 'gap' END AS source
FROM unit_days ud
LEFT JOIN epj_days e USING (kommune, unit, day)
LEFT JOIN extracts x ON x.unit = ud.unit AND x.year = year(ud.day)
ORDER BY ud.kommune, ud.unit, ud.day
"""

SEGMENTS_SQL = """
SELECT kommune, unit, source, min(day) AS first_day, max(day) AS last_day, count(*) AS days
FROM (
    SELECT *, day - CAST(row_number() OVER (PARTITION BY kommune, unit, source ORDER BY day) AS INTEGER) AS grp
    FROM coverage
)
GROUP BY kommune, unit, source, grp
ORDER BY kommune, unit, first_day
"""


def build_coverage(settings: Settings, con: duckdb.DuckDBPyConnection | None = None,
                   kommuner: set[str] | None = None, extracts: pl.DataFrame | None = None,
                   received: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Day-level coverage and its segments (gap segments are the segments with source 'gap').

    `extracts` is `staged_extracts(settings)` when the caller already read it (once per build,
    not once per batch: it reads every file count); `received` the split units' successors (`unit_years`).
    """
    last_day = as_of_date(settings)
    own = con is None
    con = con or duck.connect()
    try:
        con.register("unit_years", unit_years(settings, last_day.year, kommuner, received).to_arrow())
        con.register("epj_systems", epj_system_frame(settings, kommuner).to_arrow())
        con.register("extracts", (staged_extracts(settings) if extracts is None else extracts).to_arrow())
        coverage = con.execute(COVERAGE_SQL, {"first_day": settings.cutoff_date, "last_day": last_day}).pl()
        con.register("coverage", coverage.to_arrow())
        segments = con.execute(SEGMENTS_SQL).pl()
    finally:
        if own:
            con.close()
    return coverage, segments


def extract_evidence(coverage: pl.DataFrame) -> pl.DataFrame:
    """(kommune, unit, year) of the yearly extracts that are the authoritative source on at least one day of
    the unit under that reporting municipality (a split unit's extract can be one successor's source and
    not the other's).

    Only these extracts' rows are evidence for the timeline; where an EPJ covers every day of a unit's
    year, that year's extract is compared with the reconstruction (`reconciliation`) and nothing more.
    """
    return (
        coverage.filter(pl.col("source").str.starts_with("iplos:"))
        .select("kommune", "unit", pl.col("day").dt.year().cast(pl.Int32).alias("year"))
        .unique().sort("kommune", "unit", "year")
    )


def missing_extracts(settings: Settings, coverage: pl.DataFrame, kommuner: set[str] | None = None,
                     extracts: pl.DataFrame | None = None, received: pl.DataFrame | None = None) -> pl.DataFrame:
    """Yearly extracts of the data years that do not exist, with how many of their days EPJ covers."""
    last_year = min(as_of_date(settings).year, 2025)
    expected = unit_years(settings, last_year, kommuner, received)
    present = staged_extracts(settings) if extracts is None else extracts
    missing = expected.join(present, on=["year", "unit"], how="anti")
    covered = (
        coverage.with_columns(pl.col("day").dt.year().cast(pl.Int32).alias("year"))
        .group_by("kommune", "unit", "year")
        .agg(pl.col("source").str.starts_with("epj:").sum().alias("days_covered_by_epj"),
             (pl.col("source") == "gap").sum().alias("gap_days"))
    )
    return missing.join(covered, on=["kommune", "unit", "year"], how="left").sort("kommune", "unit", "year")
