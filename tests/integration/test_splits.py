"""Municipalities that were split (issue 15): the records of a split unit assigned to its successors.

At `small` scale: Tysfjord 1850 (2020, to Narvik and Hamarøy; the western piece in an export only
Narvik configures) and Ålesund 1507 (2024, to Ålesund 1508 and Haram 1580; Haram shares Ålesund's
export). Snillfjord's three successors are in the national world (`test_national_scale.py`, slow).
"""

from __future__ import annotations

import dataclasses

import duckdb
import polars as pl
import pytest

from transforms.core.config import ConfigError
from transforms.core.settings import SplitOverride, SplitSettings
from transforms.reference.municipalities import municipality_codes
from transforms.report.warehouse import build_warehouse
from transforms.submit.events import build_events
from transforms.tables import SPLIT_ASSIGNMENTS
from transforms.timeline.splits import RULES, assign_splits, split_units
from transforms.timeline.staged import shared_file_owners, staged_file_index

SPLIT_CODES = set(municipality_codes().filter(pl.col("split"))["code"].to_list())


@pytest.fixture(scope="module")
def built(small_timeline):
    settings, summary = small_timeline
    return settings, summary, summary.split_assignments


def _truth(settings, name: str) -> pl.DataFrame:
    return pl.read_parquet(settings.data_root / "truth" / f"{name}.parquet")


def _with_keys(frame: pl.DataFrame) -> pl.DataFrame:
    from transforms.privacy.identity import Pseudonymizer
    from transforms.privacy.keys import load_keys

    pseudonym = Pseudonymizer(load_keys().pseudonym_key)
    return frame.with_columns(person_key=pl.col("fid").map_elements(pseudonym, return_dtype=pl.Utf8),
                              service_code=pl.col("service_code").cast(pl.Utf8))


def test_no_record_of_a_split_unit_is_lost_per_source_file_and_rule(built):
    """Staged rows of split units = rows assigned to successors + rows listed as unassigned, per file."""
    settings, _, assigned = built
    root = settings.data_root
    iplos = duckdb.sql(f"SELECT source_file, unit FROM read_parquet("
                       f"'{root}/staging/iplos/**/iplos_services-*.parquet', hive_partitioning = false)").pl()
    staged_iplos = iplos.filter(pl.col("unit").is_in(sorted(SPLIT_CODES))).group_by("source_file").len()
    versions = duckdb.sql(
        f"SELECT system, service_id, unit, registered_at, source_file, line FROM read_parquet("
        f"'{root}/staging/epj/**/epj_service_versions-*.parquet', hive_partitioning = false, union_by_name = true)"
    ).pl()
    current = versions.sort("registered_at", "source_file", "line").group_by("system", "service_id").agg(
        pl.col("unit").last())
    split_records = current.filter(pl.col("unit").is_in(sorted(SPLIT_CODES))).select("system", "service_id")
    staged_epj = versions.join(split_records, on=["system", "service_id"]).group_by("source_file").len()
    staged = pl.concat([staged_iplos, staged_epj]).rename({"len": "staged"})
    listed = assigned.group_by("source_file").agg(
        pl.col("rows").filter(pl.col("kommune").is_not_null()).sum().alias("assigned"),
        pl.col("rows").filter(pl.col("kommune").is_null()).sum().alias("not_assigned"),
        *[pl.col("rows").filter(pl.col("rule") == rule).sum().alias(rule) for rule in RULES])
    both = staged.join(listed, on="source_file", how="full", coalesce=True).fill_null(0)
    assert both.height >= 8 and staged_iplos.height >= 7 and staged_epj.height >= 2
    assert both.filter(pl.col("staged") != pl.col("assigned") + pl.col("not_assigned")).height == 0, both
    assert both.filter(pl.col("staged") != pl.sum_horizontal(*RULES)).height == 0, both
    assert set(assigned["rule"]) <= set(RULES)


def test_every_assigned_record_is_in_an_episode_of_its_successor(built):
    """Every assigned record is in an episode of its successor, but an annulled EPJ service (removed
    entirely) and one whose person's identifier was quarantined (listed in conflicts)."""
    settings, summary, assigned = built
    removed = duckdb.sql(
        f"SELECT DISTINCT 'epj:' || system || ':' || service_id AS record_id FROM read_parquet("
        f"'{settings.data_root}/staging/epj/**/epj_service_versions-*.parquet', hive_partitioning = false, "
        "union_by_name = true) WHERE change_type = 'ANNULLERT'").pl()
    assigned = assigned.join(removed, on="record_id", how="anti").filter(pl.col("person_key").is_not_null())
    # a yearly extract's record is evidence only in unit-years its extract is a source of the successor on some
    # day (or where no EPJ of the successor knows the person); elsewhere it serves reconciliation only
    # (timeline.md): extract records are required in an episode where their file is such a source
    evidence = duckdb.sql(
        f"SELECT DISTINCT kommune, 'raw/iplos/' || year(day) || '/' || unit || '.xml' AS source_file "
        f"FROM read_parquet('{settings.data_root}/timeline/coverage.parquet') WHERE source LIKE 'iplos:%'").pl()
    assigned = pl.concat([assigned.filter(pl.col("record_id").str.starts_with("epj:")),
                          assigned.join(evidence, on=["kommune", "source_file"], how="semi")])
    records = summary.episodes.select("kommune", "records").explode("records", empty_as_null=True)
    # the timeline names a yearly extract's record by its municipality; the listing by the divided unit
    expected = assigned.filter(pl.col("kommune").is_not_null()).select(
        "kommune", pl.when(pl.col("record_id").str.starts_with("epj:")).then(pl.col("record_id"))
        .otherwise(pl.col("record_id").str.replace(r"^(i3[67]):\d{4}:", "${1}:")).alias("key")).unique()
    got = records.with_columns(key=pl.when(pl.col("records").str.starts_with("epj:")).then(pl.col("records"))
                               .otherwise(pl.col("records").str.replace(r"^(i3[67]):\d{4}:", "${1}:")))
    missing = expected.join(got, on=["kommune", "key"], how="anti")
    assert expected.height > 500 and missing.height == 0, missing


def test_each_rule_places_records_and_agrees_with_the_truth(built):
    settings, _, assigned = built
    assert {"configuration", "continuation", "default"} <= set(assigned["rule"])
    configured = assigned.filter(pl.col("rule") == "configuration")
    assert set(configured["record_id"].str.extract(r"^epj:([^:]+):")) == {"epj1806t"}
    assert set(configured["kommune"]) == {"1806"}
    truth = _with_keys(_truth(settings, "split_assignments"))
    matched = assigned.join(truth.select("person_key", "service_code", "divided_unit", pl.col("start_date").alias("t0"),
                                         pl.col("end_date").alias("t1"), pl.col("kommune").alias("truth_kommune"),
                                         "rules"),
                            left_on=["person_key", "service_code", "divided_unit"],
                            right_on=["person_key", "service_code", "divided_unit"])
    matched = matched.filter((pl.col("start_date") >= pl.col("t0"))
                             & (pl.col("t1").is_null() | (pl.col("start_date") <= pl.col("t1"))))
    assert matched.select("record_id").n_unique() > 0.9 * assigned.select("record_id").n_unique()
    wrong = matched.filter((pl.col("kommune") != pl.col("truth_kommune")) | ~pl.col("rules").list.contains(
        pl.col("rule")))
    assert wrong.height == 0, wrong


def test_haram_person_is_one_episode_of_1580_with_one_start_and_an_ended_one_goes_to_the_default(built):
    """Served in Haram 2019 (1534), in Ålesund's EPJ 2020-2023 (1507) and in Haram's new EPJ from 2024:
    one episode reported by 1580 with one TjenesteStart. A service of Haram's piece that ended in 2022
    goes to the default, Ålesund 1508, and is listed for review."""
    settings, summary, assigned = built
    truth = _with_keys(_truth(settings, "episodes"))
    through = truth.filter(
        (pl.col("reporting_kommune") == "1580") & (pl.col("start_date") < pl.date(2019, 6, 1))
        & (pl.col("end_date").is_null() | (pl.col("end_date") >= pl.date(2024, 6, 1)))
        & pl.col("epj_ids").list.eval(pl.element().str.starts_with("epj1508a:")).list.any()
        & pl.col("epj_ids").list.eval(pl.element().str.starts_with("epj1580a:")).list.any())
    assert through.height > 0
    person = through.row(0, named=True)
    episodes = summary.episodes.filter((pl.col("person_key") == person["person_key"])
                                       & (pl.col("service_code") == person["service_code"]))
    assert episodes.height == 1
    episode = episodes.row(0, named=True)
    assert (episode["kommune"], episode["start_date"], episode["stitched"]) == ("1580", person["start_date"], True)
    assert any(r.startswith("epj:epj1508a:") for r in episode["records"])
    events = build_events(settings.data_root, settings.cutoff_date).filter(
        pl.col("episode_id") == episode["episode_id"])
    assert events.filter(pl.col("event_type") == "TjenesteStart").height == 1

    split = _with_keys(_truth(settings, "split_assignments"))
    ended = split.filter((pl.col("piece_of") == "1580") & (pl.col("end_date").dt.year() == 2022)
                         & (pl.col("start_date") >= pl.date(2020, 1, 1)))
    assert ended.height > 0
    row = ended.row(0, named=True)
    listed = assigned.filter((pl.col("person_key") == row["person_key"])
                             & (pl.col("service_code") == row["service_code"])
                             & (pl.col("start_date") >= row["start_date"]))
    assert listed.height > 0 and set(listed["rule"]) == {"default"} and set(listed["kommune"]) == {"1508"}
    path, views = build_warehouse(settings)
    assert "split_defaults" in views
    with duckdb.connect(str(path), read_only=True) as con:
        shown = con.execute("SELECT count(*) FROM split_defaults WHERE person_key = ? AND kommune = '1508'",
                            [row["person_key"]]).fetchone()[0]
    assert shown == listed.height


def test_a_successor_covers_a_split_unit_only_if_it_received_records_of_it(built):
    _, summary, assigned = built
    covered = set(summary.coverage.filter(pl.col("unit").is_in(sorted(SPLIT_CODES))).select("kommune", "unit")
                  .unique().iter_rows())
    received = set(assigned.filter(pl.col("kommune").is_not_null()).select("kommune", "unit").unique().iter_rows())
    assert covered == received and {("1580", "1507"), ("1508", "1507"), ("1806", "1850"), ("1875", "1850")} <= covered
    haram = summary.coverage.filter((pl.col("kommune") == "1580") & (pl.col("unit") == "1507"))
    assert set(haram["source"]) == {"epj:epj1508a"}  # the shared export covers Haram's part 2020-2023
    assert summary.gaps.filter(pl.col("unit").is_in(sorted(SPLIT_CODES))).height == 0


def test_an_override_moves_a_person_and_a_default_can_be_configured(small_timeline):
    settings, summary = small_timeline
    assigned = summary.split_assignments
    moved = assigned.filter((pl.col("rule") == "default") & (pl.col("divided_unit") == "1507")).row(0, named=True)
    files, shared = staged_file_index(settings), shared_file_owners(settings)
    override = SplitSettings(default={"1850": "1875"},
                             override=(SplitOverride("1507", moved["person_key"], "1580"),))
    again = assign_splits(dataclasses.replace(settings, splits=override), files, shared).listing
    person = again.filter((pl.col("person_key") == moved["person_key"]) & (pl.col("divided_unit") == "1507"))
    assert set(person["rule"]) == {"override"} and set(person["kommune"]) == {"1580"}
    tysfjord = again.filter((pl.col("divided_unit") == "1850") & (pl.col("rule") == "default"))
    assert tysfjord.height > 0 and set(tysfjord["kommune"]) == {"1875"}
    assert again.height == assigned.height
    with pytest.raises(ConfigError, match="1850 is not a split unit with successor 1508"):
        split_units(dataclasses.replace(settings, splits=SplitSettings(default={"1850": "1508"})))


def test_records_are_unassigned_when_the_default_successor_is_not_configured(small_timeline, tmp_path):
    """A data root of Haram alone (it has Ålesund 1507's extracts): the records that continue in Haram are
    Haram's, those whose default (Ålesund) is not configured are listed as unassigned, none is lost."""
    settings, summary = small_timeline
    assert summary.split_assignments.columns == list(SPLIT_ASSIGNMENTS.column_names)
    text = settings.root.kommuner_toml.read_text(encoding="utf-8")
    haram = next("[[kommune]]" + b for b in text.split("[[kommune]]")[1:] if 'nr = "1580"' in b)
    root = tmp_path / "haram"
    (root / "config").mkdir(parents=True)
    (root / "config" / "kommuner.toml").write_text(haram.split("[[kommune.shared_epj]]")[0], encoding="utf-8")
    (root / "staging").symlink_to(settings.data_root / "staging")
    alone = dataclasses.replace(settings, data_root=root)
    listing = assign_splits(alone, staged_file_index(alone), shared_file_owners(alone)).listing
    iplos = listing.filter(pl.col("record_id").str.starts_with("i3"))
    assert set(iplos["rule"]) == {"continuation", "unassigned"}
    assert set(iplos.filter(pl.col("rule") == "unassigned")["kommune"].to_list()) == {None}
    both = summary.split_assignments.filter(pl.col("divided_unit") == "1507")
    assert iplos["rows"].sum() == both.filter(pl.col("record_id").str.starts_with("i3"))["rows"].sum()
