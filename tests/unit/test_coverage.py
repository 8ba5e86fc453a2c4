"""Coverage on the spec's worked example: gaps where no source holds the days."""

import dataclasses
import datetime as dt

import polars as pl

from transforms.core.settings import load_settings
from transforms.timeline.coverage import build_coverage, missing_extracts


def _settings(root):
    return dataclasses.replace(load_settings(root), as_of_date=dt.date(2026, 11, 25))


def test_example_coverage_segments(example_root):
    settings = _settings(example_root)
    coverage, segments = build_coverage(settings)
    got = [(r["unit"], r["source"], r["first_day"].isoformat(), r["last_day"].isoformat())
           for r in segments.iter_rows(named=True)]
    assert got == [
        ("0602", "gap", "2017-01-01", "2017-12-31"),
        ("0602", "iplos:2018", "2018-01-01", "2018-12-31"),
        ("0602", "iplos:2019", "2019-01-01", "2019-12-31"),
        ("0625", "gap", "2017-01-01", "2019-12-31"),
        ("0711", "gap", "2017-01-01", "2019-12-31"),
        ("3005", "gap", "2020-01-01", "2020-06-30"),
        ("3005", "epj:epj_a", "2020-07-01", "2021-03-14"),
        ("3005", "epj:epj_b", "2021-03-15", "2023-12-31"),
        ("3301", "epj:epj_b", "2024-01-01", "2026-11-25"),
    ]
    # one row per unit and day, every day from the cut-off to the as-of date
    per_day = coverage.group_by("day").agg(pl.len())
    assert per_day["day"].min() == dt.date(2017, 1, 1) and per_day["day"].max() == dt.date(2026, 11, 25)


def test_missing_predecessor_extracts_are_listed(example_root):
    settings = _settings(example_root)
    coverage, _ = build_coverage(settings)
    missing = missing_extracts(settings, coverage)
    assert ("0625", 2019) in set(missing.select("unit", "year").iter_rows())
    assert ("0602", 2019) not in set(missing.select("unit", "year").iter_rows())
    row = missing.filter((pl.col("unit") == "3005") & (pl.col("year") == 2020)).row(0, named=True)
    assert row["days_covered_by_epj"] == 184 and row["gap_days"] == 182
