"""Reference tables written for analysts: municipality numbers over time."""

from __future__ import annotations

import polars as pl

from transforms.tables.model import Column, Table

MUNICIPALITY_CODES = Table(
    "municipality_codes",
    "Every kommunenummer valid in some year 2017-2025, with the municipality that reports its records today.",
    (
        Column("code", pl.Utf8, "kommunenummer"),
        Column("name", pl.Utf8, "name of the municipality under this number"),
        Column("valid_from", pl.Int32, "first year the number was valid (null: before 1994)"),
        Column("valid_to", pl.Int32, "last year the number was valid (null: still valid)"),
        Column("reporting_kommune", pl.Utf8, "today's municipality that reports the records filed under it "
                                             "(null: split between several, see split_assignments)"),
        Column("reporting_name", pl.Utf8, "name of the reporting municipality"),
        Column("split", pl.Boolean, "the number's territory was divided between several of today's "
                                    "municipalities (Snillfjord, Tysfjord, Ålesund 1507): its records are "
                                    "assigned to them one by one"),
    ),
    path="reference/municipality_codes.parquet",
    asset="municipality_numbers",
    sort=("code", "valid_from"),
)
