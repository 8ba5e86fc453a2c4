"""What a synthetic world holds (transforms.synthetic): each municipality's number history and sources,
the features the pipeline must handle, and the ground truth. The files' formats are `test_synthetic_files`.
Larger scales are marked slow.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from tests.synthetic_world import (
    NS,
    RULES,
    corrupted_files,
    parse_xml,
    read_csv,
    read_jsonl,
    truth,
    xml_files,
)
from transforms.reference.municipalities import municipality_codes
from transforms.synthetic import SCALES, generate
from transforms.synthetic.municipalities import load_municipalities


@pytest.fixture
def root(synthetic_demo: Path) -> Path:
    return synthetic_demo


def test_yearly_file_names_follow_the_municipality_history(root: Path) -> None:
    names = {p.relative_to(root / "raw" / "iplos").as_posix() for p in xml_files(root)}
    for year in (2017, 2018, 2019):
        assert {f"{year}/0602.xml", f"{year}/0625.xml", f"{year}/0711.xml"} <= names
    assert {"2017/1601.xml", "2017/1662.xml", "2018/5001.xml", "2018/5030.xml", "2019/5030.xml"} <= names
    assert not any(n.startswith(("2020/5030", "2018/1601", "2019/1662")) for n in names)
    assert {"2021/3005.xml", "2023/3005.xml", "2024/3301.xml", "2025/3301.xml", "2020/5001.xml"} <= names
    assert "2020/3005.xml" not in names  # the missing extract


# -- the features the pipeline must handle ---------------------------------------------------


def test_epj_configuration_covers_switch_history_and_mergers(root: Path) -> None:
    import tomllib

    config = tomllib.loads((root / "config" / "kommuner.toml").read_text("utf-8"))
    kommuner = {k["nr"]: k for k in config["kommune"]}
    assert set(kommuner) == {"3301", "5001", "1515"}
    drammen = {e["system"]: e for e in kommuner["3301"]["epj"]}
    a, b = drammen["epj3301a"], drammen["epj3301b"]
    assert a["format"] == "epj-a-csv" and b["format"] == "epj-b-jsonl"
    assert a["history_from"] > a["active_from"] and a["active_to"] == "2021-03-14"
    assert b["active_from"] == "2021-03-15" and "active_to" not in b
    for k in kommuner.values():
        for e in k["epj"]:
            assert e["path"] == f"raw/epj/{k['nr']}-{e['system']}" and (root / e["path"]).is_dir()
            assert k["kontaktpersoner"][0]["epost"].endswith(".example.org")


def test_switch_migrates_services_with_and_without_link(root: Path) -> None:
    events = read_jsonl(root / "raw" / "epj" / "3301-epj3301b")
    old_ids = {r["tjenesteid"] for r in read_csv(root / "raw" / "epj" / "3301-epj3301a" / "tjenester.csv")}
    migrated = [e for e in events if e["kind"] == "service" and "migratedFrom" in e]
    assert migrated
    for e in migrated:
        assert e["service"]["from"] == "2021-03-15"
        assert e["migratedFrom"]["system"] == "epj3301a" and e["migratedFrom"]["serviceId"] in old_ids
    episodes = truth(root, "episodes").filter(pl.col("epj_ids").list.join(",").str.contains("epj3301b:"))
    assert episodes.filter(pl.col("migrated_with_link") == True).height > 0  # noqa: E712
    assert episodes.filter(pl.col("migrated_with_link") == False).height > 0  # noqa: E712
    unlinked_new = [
        e
        for e in events
        if e["kind"] == "service"
        and "migratedFrom" not in e
        and e["service"]["from"] == "2021-03-15"
        and e["recordedAt"].startswith("2021-03-15")
    ]
    assert unlinked_new
    # Klæbu's records moved into Trondheim's system at the 2020 merger
    trd = read_jsonl(root / "raw" / "epj" / "5001-epj5001b")
    assert any(e.get("migratedFrom", {}).get("system") == "epj5001a" for e in trd)


def test_gap_has_services_bridging_it_and_ending_in_it(root: Path) -> None:
    gaps = truth(root, "gaps")
    assert gaps.rows() == [("3301", "3005", dt.date(2020, 1, 1), dt.date(2020, 6, 30), 182)]
    sources = truth(root, "sources")
    assert sources.filter((pl.col("unit") == "3005") & (pl.col("year") == 2020))["status"].to_list() == [
        "missing"
    ]
    eps = truth(root, "episodes").filter(pl.col("reporting_kommune") == "3301")
    open_before = eps.filter(pl.col("start_date") < dt.date(2020, 1, 1))
    bridged = open_before.filter(
        (pl.col("end_date").is_null() | (pl.col("end_date") > dt.date(2020, 6, 30)))
        & pl.col("epj_ids").list.join(",").str.contains("epj3301a:")
    )
    ended_inside = open_before.filter(
        pl.col("end_date").is_between(dt.date(2020, 1, 1), dt.date(2020, 6, 30))
    )
    assert bridged.height > 10 and ended_inside.height > 5
    # what ended inside the gap is lost from the export (it ended before history_from)
    assert ended_inside.filter(pl.col("epj_ids").list.len() > 0).height == 0


def test_d_number_replaced_in_both_export_formats(root: Path) -> None:
    def replaced(rows: list[tuple[str, str]]) -> bool:
        types: dict[str, list[str]] = {}
        for user, id_type in rows:
            types.setdefault(user, []).append(id_type)
        return any(t[0] == "DNR" and "FNR" in t[1:] for t in types.values())

    csv_rows = [
        (f"{p.parent.name}:{r['brukernr']}", r["id_type"])
        for p in sorted((root / "raw" / "epj").rglob("brukere.csv"))
        for r in read_csv(p)
    ]
    json_rows = [
        (f"{f.name}:{e['clientId']}", e["client"]["idType"])
        for f in sorted({p.parent for p in (root / "raw" / "epj").rglob("*.jsonl")})
        for e in read_jsonl(f)
        if e["kind"] == "client"
    ]
    assert replaced(csv_rows) and replaced(json_rows)


def test_annulled_stops_provider_changes_and_housing_codes(root: Path) -> None:
    annulled = truth(root, "annulled")
    assert annulled.height >= 3
    rows = [r for p in sorted((root / "raw" / "epj").rglob("tjenester.csv")) for r in read_csv(p)]
    events = [
        e for f in sorted({p.parent for p in (root / "raw" / "epj").rglob("*.jsonl")}) for e in read_jsonl(f)
    ]
    cancelled = {
        e["service"]["id"] for e in events if e["kind"] == "service" and e["service"]["status"] == "CANCELLED"
    }
    annulled_csv = {r["tjenesteid"] for r in rows if r["endringstype"] == "ANNULLERT"}
    assert cancelled and annulled_csv
    # and the planted services the extracts list although the EPJ annulled them (`extract_only`)
    # a snapshot series (omsorgsjournal) shows an annulled service only if a dump fell before its annulment
    audit = truth(root, "sources").filter(pl.col("format").is_in(["epj-a-csv", "epj-b-jsonl"]))["system"]
    phantoms = truth(root, "extract_only").filter((pl.col("kind") == "annulled_in_epj")
                                                  & pl.col("system").is_in(audit.implode()))
    in_audit = annulled.filter(pl.col("system").is_in(audit.implode()))["service_id"]
    assert cancelled | annulled_csv == set(in_audit) | set(phantoms["service_id"])
    truth_ids = {i.split(":")[1] for ids in truth(root, "episodes")["epj_ids"].to_list() for i in ids}
    assert not (cancelled | annulled_csv) & truth_ids
    # stops in both exports and in 3.7 extracts, some still open on 31 December
    assert any(p.stat().st_size > 200 for p in (root / "raw" / "epj").rglob("stopp.csv"))
    assert any(e["kind"] == "pause" for e in events)
    text37 = (root / "raw" / "iplos" / "2021" / "1515.xml").read_text("iso-8859-1")
    assert "<MidlertidigStopp" in text37
    assert any('tilDato=""' in p.read_bytes().decode("latin-1") for p in xml_files(root))
    assert truth(root, "stops").height > 100
    # a provider change is an ENDRET version with a new organisation number
    by_id: dict[str, list[str]] = {}
    for r in rows:
        by_id.setdefault(r["tjenesteid"], []).append(r["utforer_orgnr"])
    assert any(len(set(orgs)) > 1 for orgs in by_id.values())
    assert truth(root, "provider_changes").height > 50
    # municipal housing: 12/13 in the 3.6 years, 29 from 2019, and truth keeps both
    text36 = "".join(p.read_text("iso-8859-1") for p in xml_files(root) if p.parent.name in ("2017", "2018"))
    assert "<Kode>12</Kode>" in text36 and "<Kode>13</Kode>" in text36 and "<Kode>29</Kode>" not in text36
    housing = truth(root, "episodes").filter(pl.col("service_code") == 29)
    assert set(housing["original_code"]) >= {12, 13, 29}


# -- the truth ------------------------------------------------------------------------------


def test_truth_episodes_are_consistent(root: Path) -> None:
    eps = truth(root, "episodes")
    persons = truth(root, "persons")
    assert eps["truth_episode_id"].n_unique() == eps.height
    assert eps.filter(pl.col("end_date") < pl.col("start_date")).height == 0
    assert eps.filter(pl.col("end_date").is_null() != (pl.col("end_reason") == "open")).height == 0
    assert eps["start_date"].min() < dt.date(2010, 1, 1)  # some services started years before 2017
    assert eps.filter(pl.col("end_date") < dt.date(2017, 1, 1)).height == 0
    assert set(eps["fid"]) == set(persons["fid"])
    dead = eps.join(persons.select("fid", "death_date"), on="fid").filter(pl.col("death_date").is_not_null())
    assert dead.filter(pl.col("end_date").is_null() | (pl.col("end_date") > pl.col("death_date"))).height == 0
    assert dead.filter(pl.col("end_reason") == "death").height > 100
    assert (
        dead.filter(pl.col("end_reason") == "death")["end_date"]
        == dead.filter(pl.col("end_reason") == "death")["death_date"]
    ).all()
    counts = Counter(eps["service_code"].to_list())
    assert counts.most_common(1)[0][0] == 15
    assert [c for c, _ in counts.most_common(3)] == [15, 1, 6]
    long_stays = eps.filter(
        (pl.col("service_code") == 21)
        & (pl.col("end_reason") == "death")
        & (pl.col("start_date") > dt.date(2005, 1, 1))
    )
    mean_years = (long_stays["end_date"] - long_stays["start_date"]).dt.total_days().mean() / 365.25
    assert 1.0 < mean_years < 3.0
    for day in (dt.date(2018, 3, 1), dt.date(2021, 9, 1), dt.date(2024, 5, 1)):
        active = eps.filter(
            (pl.col("start_date") <= day) & (pl.col("end_date").is_null() | (pl.col("end_date") >= day))
        )
        assert 1.5 <= active.height / active["fid"].n_unique() <= 2.5
    assert eps.filter(~pl.col("observable")).height < eps.height * 0.02


def test_truth_ids_are_found_in_the_sources(root: Path) -> None:
    eps = truth(root, "episodes")
    exported: set[str] = set()
    for path in sorted((root / "raw" / "epj").rglob("tjenester.csv")):
        exported |= {f"{path.parent.name.split('-')[1]}:{r['tjenesteid']}" for r in read_csv(path)}
    for folder in sorted({p.parent for p in (root / "raw" / "epj").rglob("*.jsonl")}):
        exported |= {
            f"{folder.name.split('-')[1]}:{e['service']['id']}"
            for e in read_jsonl(folder)
            if e["kind"] == "service"
        }
    wanted = {i for ids in eps["epj_ids"].to_list() for i in ids}
    for path in sorted((root / "raw" / "epj").rglob("uttrekk_*.xml")):  # the snapshot dumps
        system = path.parent.name.split("-")[1]
        exported |= {f"{system}:{t.get('id')}" for t in parse_xml(path).getroot().iter("Tjeneste")}
    assert wanted and wanted <= exported
    ids37 = {i for ids in eps["iplos37_ids"].to_list() for i in ids}
    in_files = set()
    for path in xml_files(root):
        if path.parent.name >= "2019" and path.relative_to(root).as_posix() not in corrupted_files(root):
            in_files |= {t.get("tjenesteID") for t in parse_xml(path).getroot().iter(f"{NS}Tjeneste")}
    assert ids37 and ids37 <= in_files
    stops = truth(root, "stops")
    assert stops.filter(pl.col("to_date") < pl.col("from_date")).height == 0
    changes = truth(root, "provider_changes").join(eps, on="truth_episode_id")
    assert (
        changes.filter(
            (pl.col("change_date") <= pl.col("start_date")) | (pl.col("change_date") > pl.col("end_date"))
        ).height
        == 0
    )


def test_extract_rows_mirror_the_truth(root: Path) -> None:
    """A 3.7 extract shows a service once, open on 31 December even when it ended later."""
    eps = truth(root, "episodes").explode("iplos37_ids", empty_as_null=True).drop_nulls("iplos37_ids")
    by_id = {(r["iplos37_ids"]): r for r in eps.iter_rows(named=True)}
    doc = parse_xml(root / "raw" / "iplos" / "2021" / "1515.xml").getroot()
    checked = 0
    for t in doc.iter(f"{NS}Tjeneste"):
        row = by_id.get(t.get("tjenesteID"))
        if row is None:
            continue  # a planted bad record
        end = row["end_date"]
        assert t.get("sluttDato") == ("" if end is None or end > dt.date(2021, 12, 31) else end.isoformat())
        assert t.get("startDato") == row["start_date"].isoformat()
        assert t.get("tjenesteType") == str(row["service_code"])
        checked += 1
    assert checked > 100


@pytest.mark.slow
@pytest.mark.parametrize("scale", ["small", "oslo"])
def test_larger_scales_hold_every_feature(scale: str, tmp_path: Path) -> None:
    summary = generate(tmp_path, scale, seed=3)
    assert summary.persons > (9000 if scale == "small" else 45_000)
    c = truth(tmp_path, "corruptions")
    assert set(c["rule_id"]) == RULES
    assert truth(tmp_path, "gaps").height >= 1
    eps = truth(tmp_path, "episodes")
    assert Counter(eps["service_code"].to_list()).most_common(1)[0][0] == 15


# -- municipalities that were split -----------------------------------------------------------


def test_every_yearly_file_is_named_by_the_code_valid_in_its_year(tmp_path: Path) -> None:
    """No 2017/5059.xml (Orkland exists from 2020) and no 2023/1580.xml (Haram again from 2024)."""
    generate(tmp_path, "small", seed=5)
    codes = municipality_codes()
    valid = {(code, year) for code, first, last in codes.select("code", "valid_from", "valid_to").iter_rows()
             for year in range(2017, 2026) if (first is None or first <= year) and (last is None or last >= year)}
    names = [(p.stem, int(p.parent.name)) for p in (tmp_path / "raw" / "iplos").rglob("*.xml")]
    assert names and [n for n in names if n not in valid] == []
    assert {("1850", 2019), ("1507", 2021), ("1534", 2019), ("1580", 2024)} <= set(names)
    assert ("1580", 2023) not in set(names)
    # a split unit's file holds the persons of every successor that took a piece of it
    truth = pl.read_parquet(tmp_path / "truth" / "split_assignments.parquet")
    pieces = set(truth.filter(pl.col("divided_unit") == "1507")["piece_of"])
    assert pieces == {"1508", "1580"} and set(truth.filter(pl.col("divided_unit") == "1850")["piece_of"]) == {
        "1806", "1875"}
    assert {"continuation", "default", "configuration"} <= {r for rules in truth["rules"].to_list() for r in rules}
    config = (tmp_path / "config" / "kommuner.toml").read_text(encoding="utf-8")
    assert '[[kommune.shared_epj]]\nsystem = "epj1508a"\nkommuner = ["1507"]' in config


def test_the_national_world_holds_the_six_successors_with_their_pieces() -> None:
    import numpy as np

    from transforms.synthetic.municipalities import national_sizes
    from transforms.synthetic.sources import plan_municipalities
    from transforms.synthetic.world import PERSONS_PER_ACTIVE

    municipalities = load_municipalities()
    rng = np.random.default_rng(42)
    sizes = national_sizes(rng, municipalities, SCALES["national"].national_active_per_day, PERSONS_PER_ACTIVE)
    plans = {p.muni.nr: p for p in plan_municipalities(sizes, municipalities, rng)}
    assert {"5055", "5056", "5059", "1806", "1875", "1580"} <= set(plans)
    assert plans["5056"].muni.parts == ("1613", "1617") and plans["1580"].muni.parts == ("1534",)
    assert [plans["1580"].muni.unit(0, y) for y in (2019, 2020, 2023, 2024)] == ["1534", "1507", "1507", "1580"]
    snillfjord = {t.system for nr in ("5055", "5056", "5059") for t in plans[nr].takeovers if t.part == "1613"
                  and t.day < 18262}  # before 2020-01-01: one EPJ for the whole of Snillfjord
    assert len(snillfjord) == 1
