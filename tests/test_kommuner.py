import csv
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import SSB_GROUPING
from transforms.reference.municipalities import municipality_codes, predecessor_codes, reporting_kommune_of, unit_for


@pytest.mark.parametrize(("kommune", "year", "units"), [
    ("3301", 2019, ["0602", "0625", "0711"]),   # Drammen before the 2020 merger
    ("3301", 2021, ["3005"]),                   # merged Drammen 2020-2023
    ("3301", 2024, ["3301"]),                   # 2024 renumbering
    ("5001", 2017, ["1601", "1662"]),           # before the Trøndelag renumbering
    ("5001", 2018, ["5001", "5030"]),           # Trondheim and Klæbu 2018-2019
    ("5001", 2020, ["5001"]),
    ("1508", 2021, ["1507"]),                   # Ålesund 2020-2023, split in 2024
    ("1508", 2024, ["1508"]),
    ("0301", 2017, ["0301"]),                   # Oslo never changed
])
def test_units_per_year(kommune, year, units):
    assert unit_for(kommune, year) == units


def test_every_year_every_group_has_a_unit():
    codes = municipality_codes()
    for kommune in codes["reporting_kommune"].drop_nulls().unique().to_list():
        for year in range(2017, 2026):
            assert unit_for(kommune, year), (kommune, year)


def test_split_municipalities_have_no_successor():
    codes = municipality_codes()
    hemne = codes.filter(pl.col("code") == "5011").row(0, named=True)
    assert hemne["has_successor"] is False and hemne["reporting_kommune"] is None
    assert reporting_kommune_of("5011") is None


def test_predecessors_and_reporting_number():
    assert predecessor_codes("3301") == ["0602", "0625", "0711", "3005", "3301"]
    assert reporting_kommune_of("1662") == "5001"


def test_packaged_copy_matches_the_official_reference():
    packaged = Path(__file__).resolve().parents[1] / "transforms" / "reference" / "data" / SSB_GROUPING.name
    assert packaged.read_bytes() == SSB_GROUPING.read_bytes()
    with SSB_GROUPING.open(encoding="utf-8") as handle:
        codes_valid_since_2017 = {
            row["code"] for row in csv.DictReader(handle)
            if not any(f"-{y})" in row["name_with_validity"] for y in range(1900, 2017))
        }
    table_codes = set(municipality_codes()["code"].to_list())
    assert codes_valid_since_2017 - {"Rest"} <= table_codes | {c for c in codes_valid_since_2017 if not c.isdigit()}
