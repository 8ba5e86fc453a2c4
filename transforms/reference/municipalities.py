"""Municipality numbers over time, from SSB's grouping of every code 1994-2024 and the curated
succession table (`successions`).

The grouping maps each historical code to its 2024 municipality and carries the
validity years in the name (`Halden (2020-2023)`, `Drammen (-2019)`). It does
not say since when today's codes are valid. The succession table says it where a
code is a successor (Heim 5055 from 2020, Haram 1580 from 2024) or was kept through
a merger (Stavanger 1103); otherwise it is inferred: a current code takes over from
the latest ended code of the same name (Drammen 3301 after 3005 ended in 2023;
Trondheim 5001 after 1601 ended in 2017), otherwise from the latest ended code of
its group. The codes the grouping files under `Rest` get their successor from the
table; a code whose territory was divided (Snillfjord, Tysfjord, Ålesund 1507) is
*split*: it has no one reporting municipality, its records are assigned to its
successors one by one (`timeline/splits.py`), and `unit_owners` lists it once per
successor.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import polars as pl

from transforms.core.atomic import write_parquet
from transforms.reference.files import reference_rows
from transforms.reference.successions import first_year_as_successor, kept_codes, split_of, whole_successor
from transforms.tables import MUNICIPALITY_CODES

FIRST_YEAR = 2017
LAST_YEAR = 2025
REST_GROUP = "Rest"
GROUPING_FILE = "ssb-kommune-grouping-1994-2024.csv"
GROUPING_SCHEMA = {
    "group_code": pl.Utf8, "group_name": pl.Utf8, "code": pl.Utf8, "name": pl.Utf8,
    "valid_from": pl.Int32, "valid_to": pl.Int32, "current": pl.Boolean,
}

_VALIDITY = re.compile(r"^(?P<name>.*?)\s*\((?P<from>\d{4})?-(?P<to>\d{4})?\)$")


def _base_name(name: str) -> str:
    """First word of a name: `Trondheim - Tråante` and `Trondheim` are the same place."""
    return re.split(r"[\s\-(]", name.strip(), maxsplit=1)[0].lower()


def _parse_row(group: str, group_name: str, code: str, name_with_validity: str) -> dict:
    match = _VALIDITY.match(name_with_validity)
    if match:
        name = match.group("name")
        valid_from = int(match.group("from")) if match.group("from") else None
        valid_to = int(match.group("to")) if match.group("to") else None
        current = False
    else:
        name, valid_from, valid_to, current = name_with_validity, None, None, True
    return {
        "group_code": group, "group_name": group_name, "code": code, "name": name,
        "valid_from": valid_from, "valid_to": valid_to, "current": current,
    }


def _infer_current_from(rows: list[dict]) -> None:
    """Fill `valid_from` of the group's current code(s): from the succession table where it names the code,
    else from the codes that ended before them."""
    ended = [r for r in rows if not r["current"] and r["valid_to"] is not None]
    kept, first_year = kept_codes(), first_year_as_successor()
    for row in rows:
        if not row["current"]:
            continue
        if row["code"] in kept or row["code"] in first_year:
            row["valid_from"] = None if row["code"] in kept else first_year[row["code"]]
            continue
        same_name = [r for r in ended if _base_name(r["name"]) == _base_name(row["name"])]
        candidates = same_name or ended
        row["valid_from"] = max(r["valid_to"] for r in candidates) + 1 if candidates else None


def _reporting_code(code: str, group: str) -> str | None:
    """Today's municipality of a code: the end of its whole successions, else its group (None: a split code,
    or one the grouping files under `Rest` that the succession table does not name, e.g. 9999 unknown)."""
    if split_of(code) is not None:
        return None
    successor, seen = whole_successor(), set()
    if code not in successor:
        return None if group == REST_GROUP else group
    while code in successor and code not in seen:
        seen.add(code)
        code = successor[code]
    return code


@cache
def ssb_grouping() -> pl.DataFrame:
    """SSB's grouping as published, one row per (2024 group, code), in the file's order.

    Columns: group_code, group_name, code, name (without the validity), valid_from and valid_to
    (the years in the name; null when not given), current (no validity in the name).
    """
    rows = [_parse_row(r["group_code_2024"], r["group_name_2024"], r["code"], r["name_with_validity"])
            for r in reference_rows(GROUPING_FILE)]
    return pl.DataFrame(rows, schema=GROUPING_SCHEMA, orient="row") if rows else pl.DataFrame(schema=GROUPING_SCHEMA)


@cache
def municipality_codes() -> pl.DataFrame:
    """Every code valid in some year 2017-2025, with today's reporting municipality.

    Columns: code, name, valid_from, valid_to (null = still valid; years inclusive),
    reporting_kommune (2024 code; null for a split code), reporting_name, split
    (the code's territory was divided between several of today's municipalities).
    """
    groups: dict[str, list[dict]] = {}
    for row in ssb_grouping().iter_rows(named=True):
        groups.setdefault(row["group_code"], []).append(dict(row))
    rows: list[dict] = []
    for group, members in groups.items():
        if group != REST_GROUP:
            _infer_current_from(members)
        rows.extend(members)
    frame = pl.DataFrame(rows, schema=GROUPING_SCHEMA)
    names = dict(frame.select("group_code", "group_name").unique().iter_rows())
    reporting = {code: _reporting_code(code, group) for code, group in frame.select("code", "group_code").iter_rows()}
    divided = {code: True for code in reporting if split_of(code) is not None}
    in_range = (pl.col("valid_to").is_null() | (pl.col("valid_to") >= FIRST_YEAR)) & (
        pl.col("valid_from").is_null() | (pl.col("valid_from") <= LAST_YEAR))
    reporting_kommune = pl.col("code").replace_strict(reporting, return_dtype=pl.Utf8)
    return (
        frame.filter(in_range & pl.col("code").str.contains(r"^\d{4}$"))
        .with_columns(reporting_kommune.alias("reporting_kommune"))
        .select(
            "code", "name", "valid_from", "valid_to", "reporting_kommune",
            pl.col("reporting_kommune").replace_strict(names, default=None, return_dtype=pl.Utf8)
            .alias("reporting_name"),
            pl.col("code").replace_strict(divided, default=False, return_dtype=pl.Boolean).alias("split"),
        )
        .sort("code", "valid_from", nulls_last=False)
    )


@cache
def unit_owners() -> pl.DataFrame:
    """(code, name, valid_from, valid_to, kommune, split): the municipalities each code's records may belong to.

    One row per code and reporting municipality; a split code once per successor, so that each
    successor follows the split unit's territory back (`unit_succession`) and covers its days when it
    received records of it.
    """
    codes = municipality_codes()
    whole = codes.filter(~pl.col("split") & pl.col("reporting_kommune").is_not_null()).rename(
        {"reporting_kommune": "kommune"})
    parts = [{"code": code, "kommune": kommune}
             for code in codes.filter(pl.col("split"))["code"].to_list()
             for kommune in split_of(code).successors]  # type: ignore[union-attr]
    divided = codes.filter(pl.col("split")).drop("reporting_kommune").join(
        pl.DataFrame(parts, schema={"code": pl.Utf8, "kommune": pl.Utf8}), on="code")
    columns = ["code", "name", "valid_from", "valid_to", "kommune", "split"]
    return pl.concat([whole.select(columns), divided.select(columns)]).sort("code", "kommune")


def codes_valid_in(year: int) -> pl.DataFrame:
    """`unit_owners` rows of the codes valid in `year`."""
    frame = unit_owners()
    return frame.filter(
        (pl.col("valid_from").is_null() | (pl.col("valid_from") <= year))
        & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= year))
    )


def predecessor_codes(reporting_kommune: str) -> list[str]:
    """All codes whose records belong to `reporting_kommune` today (itself included)."""
    frame = municipality_codes().filter(pl.col("reporting_kommune") == reporting_kommune)
    return sorted(frame["code"].unique().to_list())


def reporting_kommune_of(code: str) -> str | None:
    frame = municipality_codes().filter(pl.col("code") == code)
    return frame["reporting_kommune"][0] if frame.height else None


def unit_for(reporting_kommune: str, year: int) -> list[str]:
    """The codes under which `reporting_kommune`'s territory filed its data in `year` (split units included)."""
    frame = codes_valid_in(year).filter(pl.col("kommune") == reporting_kommune)
    return sorted(frame["code"].to_list())


@cache
def unit_succession(first_year: int = FIRST_YEAR, last_year: int = LAST_YEAR) -> pl.DataFrame:
    """(unit, year, unit_in_year, reporting_kommune): the code a unit's territory is filed under in a later
    year, per municipality it belongs to.

    Year by year within a reporting municipality: the unit itself while valid; else the code it was
    filed under the year before while that is valid; else the only code valid that year, the one of the
    same name (Klæbu 1662 -> 5030 in 2018, Trondheim 1601 -> 5001), or one new that year (Hof 0714 ->
    Holmestrand 0715 in 2018). A split code counts for each of its successors: Haram 1534 is filed under
    Ålesund 1507 in 2020-2023, then under 1580; the part of Snillfjord 1613 that Hitra took is 5012 in
    2018-2019, then 5056.
    """
    owners = unit_owners()
    rows = list(owners.select("code", "name", "valid_from", "valid_to", "kommune").iter_rows())

    def valid(row: tuple, year: int) -> bool:
        return (row[2] is None or row[2] <= year) and (row[3] is None or row[3] >= year)

    by_kommune: dict[str, list[tuple]] = {}
    for row in rows:
        by_kommune.setdefault(row[4], []).append(row)
    out = []
    for kommune, members in sorted(by_kommune.items()):
        names = {r[0]: _base_name(r[1]) for r in members}
        for code, _, valid_from, _, _ in sorted(members):
            previous = None
            for year in range(first_year, last_year + 1):
                if valid_from is not None and year < valid_from:
                    continue
                now = [r for r in members if valid(r, year)]
                codes = {r[0] for r in now}
                if code in codes:
                    pick = code
                elif previous in codes:
                    pick = previous
                else:
                    same_name = sorted(c for c in codes if names[c] in (names[code], names.get(previous or "")))
                    new = sorted(r[0] for r in now if r[2] == year)
                    pick = (sorted(codes) if len(codes) == 1 else same_name or new or [None])[0]
                if pick is None:
                    continue
                out.append((code, year, pick, kommune))
                previous = pick
    return pl.DataFrame(out, schema={"unit": pl.Utf8, "year": pl.Int32, "unit_in_year": pl.Utf8,
                                     "reporting_kommune": pl.Utf8}, orient="row").sort("unit", "reporting_kommune",
                                                                                        "year")


def write_municipality_codes(root: Path) -> tuple[pl.DataFrame, Path]:
    """Write `municipality_codes()` for analysts (`MUNICIPALITY_CODES`); returns it and its path."""
    frame = MUNICIPALITY_CODES.conform(municipality_codes())
    target = MUNICIPALITY_CODES.location(root)
    write_parquet(frame, target)
    return frame, target
