"""Reconstruction measured against the generator's ground truth (demo and small scales)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import polars as pl
import pytest

from tests.truth_compare import compare_with_truth
from transforms.core.settings import load_settings
from transforms.privacy.identity import Pseudonymizer
from transforms.privacy.keys import load_keys
from transforms.timeline.build import build_timeline, plan_batches

AS_OF = dt.date(2025, 12, 31)


def _build(root):
    settings = dataclasses.replace(load_settings(root), as_of_date=AS_OF)
    return settings, build_timeline(settings)


@pytest.fixture(scope="module")
def demo(demo_root):
    return _build(demo_root)


@pytest.fixture(scope="module")
def small(small_timeline):
    return small_timeline


# the small world's day-by-day comparison takes some 45 s: `make test-slow` runs it beside the national one
@pytest.mark.parametrize("scale", ["demo", pytest.param("small", marks=pytest.mark.slow)])
def test_active_services_equal_the_truth_on_every_covered_day(scale, request):
    settings, _ = request.getfixturevalue(scale)
    agreement = compare_with_truth(settings.data_root)
    assert agreement.compared_days > 3000
    assert (agreement.n_missing, agreement.n_extra) == (0, 0), (agreement.missing, agreement.extra)


def _truth_with_keys(root):
    pseudonym = Pseudonymizer(load_keys().pseudonym_key)
    return pl.read_parquet(root / "truth" / "episodes.parquet").with_columns(
        person_key=pl.col("fid").map_elements(pseudonym, return_dtype=pl.Utf8),
        service_code=pl.col("service_code").cast(pl.Utf8))


def test_services_across_an_epj_switch_are_one_episode_with_original_start_and_id(demo):
    settings, result = demo
    truth = _truth_with_keys(settings.data_root)
    switched = truth.filter(pl.col("epj_ids").list.len() >= 2)
    assert switched.filter(pl.col("migrated_with_link")).height > 0
    assert switched.filter(~pl.col("migrated_with_link")).height > 0
    episodes = result.episodes
    for row in switched.iter_rows(named=True):
        first_id = row["epj_ids"][0].split(":", 1)[1]
        match = episodes.filter((pl.col("kommune") == row["reporting_kommune"])
                                & (pl.col("person_key") == row["person_key"])
                                & (pl.col("service_code") == row["service_code"])
                                & (pl.col("start_date") == row["start_date"]))
        assert match.height == 1, row
        got = match.row(0, named=True)
        assert got["reporting_id"] == first_id and got["stitched"], (row, got)
        assert got["end_date"] == row["end_date"] or got["end_imputed"]


def test_the_missing_year_is_a_gap_with_exact_dates_bridged_and_imputed(demo):
    settings, result = demo
    truth_gaps = pl.read_parquet(settings.data_root / "truth" / "gaps.parquet")
    assert truth_gaps.height >= 1
    got = set(result.gaps.select("kommune", "unit", "first_day", "last_day").iter_rows())
    for g in truth_gaps.iter_rows(named=True):
        assert (g["reporting_kommune"], g["unit"], g["first_day"], g["last_day"]) in got
    gap_kommuner = truth_gaps["reporting_kommune"].unique().to_list()
    in_gap = result.episodes.filter(pl.col("kommune").is_in(gap_kommuner))
    assert in_gap["bridged_gap"].sum() > 0
    assert in_gap["end_imputed"].sum() > 0


def test_rebuilding_gives_identical_parquet(demo):
    settings, _ = demo

    def digest():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted((settings.data_root / "timeline").glob("*.parquet"))}

    first = digest()
    build_timeline(settings)
    assert digest() == first and len(first) == 9


@pytest.mark.parametrize("workers", [1, 2])
def test_one_municipality_per_batch_gives_the_same_timeline(small, tmp_path, workers):
    """Batches are built `workers` at a time and each batch's large tables are appended to their files;
    with one municipality per batch every batch boundary and the ordering across threads count, and the
    tables must equal those of the default batching."""
    import shutil

    settings, whole = small
    assert len(plan_batches(settings, rows_per_batch=1)) == whole.episodes["kommune"].n_unique() > 3
    root = tmp_path / "data"
    shutil.copytree(settings.data_root, root, ignore=shutil.ignore_patterns("timeline", "ledger", "submissions"))
    summary = build_timeline(dataclasses.replace(settings, data_root=root), rows_per_batch=1, workers=workers)
    for name in ("episodes", "stops", "provider_changes", "conflicts", "coverage", "gaps"):
        ours = pl.read_parquet(root / "timeline" / f"{name}.parquet")
        theirs = pl.read_parquet(settings.data_root / "timeline" / f"{name}.parquet")
        assert ours.equals(theirs), name
    episodes = pl.read_parquet(root / "timeline" / "episodes.parquet")
    assert summary.rows["episodes"] == episodes.height
    assert summary.episode_flags["total"] == episodes.height
    assert summary.episode_flags["stitched"] == episodes["stitched"].sum()
    assert not list((root / "timeline").glob(".*.tmp")), "no temporary file is left behind"


@pytest.mark.parametrize("scale", ["demo", "small"])
def test_services_only_extracts_of_epj_covered_years_list_are_no_episode(scale, request):
    """The truth's `extract_only` services (annulled in the EPJ since, or gone from its export) are listed by
    the extracts of years an EPJ covers: the day-level comparison above counts any day rebuilt from them as
    extra; here they are named."""
    settings, result = request.getfixturevalue(scale)
    planted = pl.read_parquet(settings.data_root / "truth" / "extract_only.parquet")
    assert set(planted["kind"]) == {"annulled_in_epj", "missing_from_epj"}
    records = result.episodes.select("kommune", pl.col("records").list.join(" ").alias("records"))
    for row in planted.unique("service_id").iter_rows(named=True):
        hits = records.filter((pl.col("kommune") == row["reporting_kommune"])
                              & pl.col("records").str.contains(f":{row['service_id']}", literal=True))
        assert hits.height == 0, row
