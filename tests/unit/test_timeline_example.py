"""The spec's worked example (spec/examples/README.md) reconstructed exactly."""

import dataclasses
import datetime as dt

import polars as pl
import pytest

from transforms.core.settings import load_settings
from transforms.timeline.build import build_timeline

D = dt.date


@pytest.fixture(scope="module")
def timeline(example_root):
    settings = dataclasses.replace(load_settings(example_root), as_of_date=D(2026, 11, 25))
    return build_timeline(settings)


def _episode(timeline, reporting_id):
    rows = timeline.episodes.filter(pl.col("reporting_id") == reporting_id)
    assert rows.height == 1
    return rows.row(0, named=True)


def test_home_nursing_is_one_episode_across_the_switch_and_the_gap(timeline):
    e = _episode(timeline, "A-00001")
    assert (e["service_code"], e["start_date"], e["end_date"]) == ("15", D(2016, 5, 2), D(2024, 5, 2))
    assert e["bridged_gap"] and not e["end_imputed"] and e["stitched"]
    stops = timeline.stops.filter(pl.col("episode_id") == e["episode_id"])
    assert stops.select("from_date", "to_date").rows() == [
        (D(2019, 8, 1), D(2019, 8, 20)), (D(2020, 12, 1), D(2020, 12, 20)), (D(2022, 4, 1), D(2022, 4, 18))]
    changes = timeline.provider_changes.filter(pl.col("episode_id") == e["episode_id"])
    assert changes.select("change_date", "provider_org").rows() == [(D(2023, 1, 10), "986528098")]


def test_housing_12_becomes_29_and_is_stitched_without_migrated_from(timeline):
    e = _episode(timeline, "A-00002")
    assert (e["service_code"], e["start_date"], e["end_date"]) == ("29", D(2016, 11, 1), None)
    assert e["stitched"] and any("3301-b/events.jsonl" in x for x in e["lineage"])


def test_service_known_only_from_the_36_extract_has_a_derived_id(timeline):
    e = timeline.episodes.filter(pl.col("service_code") == "1").row(0, named=True)
    assert e["reporting_id_derived"] and (e["start_date"], e["end_date"]) == (D(2018, 3, 12), D(2018, 9, 30))


def test_exactly_three_episodes_and_no_conflicts(timeline):
    assert timeline.episodes.height == 3
    assert timeline.conflicts.height == 0


def test_gap_segments(timeline):
    assert timeline.gaps.select("unit", "first_day", "last_day").rows() == [
        ("0602", D(2017, 1, 1), D(2017, 12, 31)), ("0625", D(2017, 1, 1), D(2019, 12, 31)),
        ("0711", D(2017, 1, 1), D(2019, 12, 31)), ("3005", D(2020, 1, 1), D(2020, 6, 30))]
