import csv

import polars as pl
import pytest

from tests.conftest import REPO, SSB_GROUPING
from transforms.reference.municipalities import (
    municipality_codes,
    predecessor_codes,
    reporting_kommune_of,
    unit_for,
    unit_succession,
)
from transforms.reference.successions import split_of


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


def test_split_codes_have_no_one_reporting_municipality():
    codes = municipality_codes()
    for code in ("1613", "5012", "1850", "1507"):
        row = codes.filter(pl.col("code") == code).row(0, named=True)
        assert row["split"] is True and row["reporting_kommune"] is None, code
        assert reporting_kommune_of(code) is None


@pytest.mark.parametrize(("code", "kommune"), [
    ("1612", "5055"), ("5011", "5055"), ("1571", "5055"),              # Hemne, Halsa -> Heim
    ("1617", "5056"), ("5013", "5056"),                                # Hitra -> Hitra
    ("1622", "5059"), ("5016", "5059"), ("5023", "5059"), ("5024", "5059"),  # Agdenes, Meldal, Orkdal -> Orkland
    ("1805", "1806"), ("1854", "1806"), ("1849", "1875"),              # Narvik, Ballangen; Hamarøy
    ("1534", "1580"), ("1504", "1508"),                                # Haram 1534 -> 1580; old Ålesund -> 1508
])
def test_whole_successions_from_the_curated_table(code, kommune):
    assert reporting_kommune_of(code) == kommune


@pytest.mark.parametrize(("code", "valid_from", "valid_to"), [
    ("1580", 2024, None),   # Haram re-established on 1 January 2024
    ("1508", 2024, None),
    ("1507", 2020, 2023),
    ("5055", 2020, None), ("5056", 2020, None), ("5059", 2020, None), ("1806", 2020, None), ("1875", 2020, None),
    ("1103", None, None),   # Stavanger kept its number through the 2020 merger
    ("1578", 2020, None),   # Fjord: new in 2020 (the grouping's inference)
])
def test_validity_from_the_table_and_the_grouping(code, valid_from, valid_to):
    row = municipality_codes().filter(pl.col("code") == code).row(0, named=True)
    assert (row["valid_from"], row["valid_to"]) == (valid_from, valid_to)


@pytest.mark.parametrize(("kommune", "year", "units"), [
    ("1580", 2019, ["1534"]), ("1580", 2021, ["1507"]), ("1580", 2024, ["1580"]),
    ("5056", 2017, ["1613", "1617"]), ("5056", 2019, ["5012", "5013"]), ("5056", 2020, ["5056"]),
    ("5055", 2018, ["1571", "5011", "5012"]), ("1875", 2019, ["1849", "1850"]),
    ("1103", 2019, ["1103", "1141", "1142"]),
])
def test_a_successor_follows_its_part_of_a_split_unit_back(kommune, year, units):
    assert unit_for(kommune, year) == units


def test_unit_succession_of_the_split_parts():
    chain = unit_succession().filter(pl.col("unit") == "1534").sort("year")
    assert chain["unit_in_year"].to_list() == ["1534"] * 3 + ["1507"] * 4 + ["1580"] * 2
    hitra = unit_succession().filter((pl.col("unit") == "1613") & (pl.col("reporting_kommune") == "5056"))
    assert hitra.sort("year")["unit_in_year"].to_list() == ["1613", "5012", "5012"] + ["5056"] * 6


def test_split_table_names_its_successors_and_default():
    split = split_of("1613")
    assert (split.unit, split.date.isoformat(), split.successors, split.default) == (
        "5012", "2020-01-01", ("5055", "5056", "5059"), "5059")
    assert split_of("1507").successors == ("1508", "1580") and split_of("1507").default == "1508"
    assert split_of("1850").successors == ("1806", "1875")
    assert split_of("1534") is None and split_of("0301") is None


def test_predecessors_and_reporting_number():
    assert predecessor_codes("3301") == ["0602", "0625", "0711", "3005", "3301"]
    assert reporting_kommune_of("1662") == "5001"


def test_packaged_copy_matches_the_official_reference():
    packaged = REPO / "transforms" / "reference" / "data" / SSB_GROUPING.name
    assert packaged.read_bytes() == SSB_GROUPING.read_bytes()
    with SSB_GROUPING.open(encoding="utf-8") as handle:
        codes_valid_since_2017 = {
            row["code"] for row in csv.DictReader(handle)
            if not any(f"-{y})" in row["name_with_validity"] for y in range(1900, 2017))
        }
    table_codes = set(municipality_codes()["code"].to_list())
    assert codes_valid_since_2017 - {"Rest"} <= table_codes | {c for c in codes_valid_since_2017 if not c.isdigit()}


def test_each_reference_file_has_exactly_one_loader_in_transforms_reference():
    transforms = REPO / "transforms"
    sources = {p: p.read_text(encoding="utf-8") for p in transforms.rglob("*.py")}
    for data in sorted((transforms / "reference" / "data").glob("*.csv")):
        readers = [p.relative_to(transforms).as_posix() for p, text in sources.items() if data.name in text]
        assert len(readers) == 1 and readers[0].startswith("reference/"), (data.name, readers)


def test_code_lists_load_from_the_packaged_files():
    from transforms.reference.codes import function_variables, person_id_types, service_codes, service_names

    assert {"12", "13", "15", "29"} <= service_codes() and service_names()["21"] == "Langtidsopphold i institusjon"
    assert person_id_types()[1] == "Norsk fødselsnummer" and 11 not in person_id_types()
    assert len(function_variables()) == 17 and function_variables()[1] == "sosialDeltakelse"
