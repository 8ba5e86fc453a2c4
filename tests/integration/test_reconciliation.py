"""Reconciliation with the yearly extracts finds exactly the discrepancies the generator planted."""

from __future__ import annotations

import dataclasses
import datetime as dt

import polars as pl
import pytest

from tests.phantoms import copy_ingested, extract_only
from transforms.core.settings import load_settings
from transforms.report.charts import reconciliation_chart
from transforms.tables import RECONCILIATION
from transforms.timeline.build import build_timeline
from transforms.timeline.reconciliation import below_threshold, reconcile, reconcile_or_keep

AS_OF = dt.date(2025, 12, 31)


@pytest.fixture(scope="module", params=["demo", "small"])
def reconciled(request, tmp_path_factory):
    root = copy_ingested(request.getfixturevalue(f"{request.param}_root"),
                         tmp_path_factory.mktemp(f"reconcile-{request.param}") / "data")
    settings = dataclasses.replace(load_settings(root), as_of_date=AS_OF)
    build_timeline(settings)
    return settings, reconcile(settings)


def test_only_the_planted_services_are_discrepancies(reconciled):
    settings, result = reconciled
    planted = extract_only(settings.data_root)
    assert planted.height >= 8
    found = result.services.select("kommune", "unit", "year", "discrepancy", "service_id")
    expected = planted.select(pl.col("reporting_kommune").alias("kommune"), "unit", "year",
                              pl.lit("only_in_extract").alias("discrepancy"), "service_id")
    assert found.sort(found.columns).equals(expected.sort(expected.columns))
    # on 31 December the extract shows the planted services still running, the timeline does not
    persons = result.persons.filter(pl.col("difference") != 0)
    open_on_31dec = planted.filter(pl.col("end_date").dt.year() > pl.col("year"))
    assert persons["difference"].to_list() == [-1] * open_on_31dec.height
    assert sorted(persons.select("unit", "year", "service_code").rows()) == sorted(
        open_on_31dec.select("unit", "year", "service_code").rows())


def test_every_extract_an_epj_made_redundant_is_reconciled(reconciled):
    settings, result = reconciled
    summary = result.summary
    assert summary.height >= 18
    assert (summary["extract_services"] == summary["matched"] + summary["only_in_extract"]).all()
    assert (summary["timeline_services"] == summary["matched"] + summary["only_in_timeline"]).all()
    assert summary["authoritative"].str.starts_with("epj:").all()
    # the extracts that were the timeline's evidence are not reconciled (Herøy before its EPJ, 2017-2022)
    assert summary.filter((pl.col("unit") == "1515") & (pl.col("year") < 2023)).height == 0
    written = pl.read_parquet(RECONCILIATION.location(settings.data_root))
    assert written.equals(summary)
    assert "person_key" not in summary.columns and "fid" not in result.services.columns


def test_the_agreement_threshold_is_a_setting_and_warns_below_it(reconciled, tmp_path):
    settings, result = reconciled
    assert settings.reconciliation.agreement_threshold == 0.95
    assert below_threshold(result.summary, 0.95).height == 0
    planted = extract_only(settings.data_root)
    strict = below_threshold(result.summary, 0.9999)
    assert set(strict.select("kommune", "year").rows()) == set(
        planted.select("reporting_kommune", "year").unique().rows())
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "settings.toml").write_text("[reconciliation]\nagreement_threshold = 0.99\n")
    assert load_settings(tmp_path).reconciliation.agreement_threshold == 0.99
    (tmp_path / "config" / "settings.toml").write_text("[reconciliation]\nagreement_threshold = 99\n")
    with pytest.raises(ValueError, match="agreement_threshold"):
        load_settings(tmp_path)


def test_the_agreement_chart_is_deterministic(reconciled, tmp_path):
    settings, _ = reconciled
    first = reconciliation_chart(settings.data_root, 0.95, out_dir=tmp_path / "a")
    second = reconciliation_chart(settings.data_root, 0.95, out_dir=tmp_path / "b")
    assert first.png == second.png and first.path.read_bytes() == second.path.read_bytes()
    assert first.png.startswith(b"\x89PNG")


def test_batched_by_municipality_it_equals_one_pass_and_is_kept_while_its_inputs_stay(reconciled):
    settings, result = reconciled
    one_municipality_per_batch = reconcile(settings, rows_per_batch=1)
    for frame, expected in zip(dataclasses.astuple(one_municipality_per_batch), dataclasses.astuple(result),
                               strict=True):
        assert frame.equals(expected)
    built = reconcile_or_keep(settings)
    assert built[1] and reconcile_or_keep(settings)[1] is False  # nothing changed: the outputs are kept
    assert all(a.equals(b) for a, b in zip(dataclasses.astuple(reconcile_or_keep(settings)[0]),
                                           dataclasses.astuple(result), strict=True))
    # an episode file rewritten: reconciled again
    episodes = settings.data_root / "timeline" / "episodes.parquet"
    episodes.write_bytes(episodes.read_bytes())
    assert reconcile_or_keep(settings)[1]
