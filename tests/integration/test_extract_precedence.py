"""On days an EPJ covers, a yearly extract's record is no evidence of a service (timeline.md, "Coverage").

The generator plants services the extracts list while the current EPJ export annuls them or no longer
holds them (`truth/extract_only.parquet`). They must give no episode day; and once such a service was
sent (while the EPJ still held it), the run after the EPJ annulled or dropped it withdraws every
notification sent about it, exactly once each.
"""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from pipelines.run import Runner
from tests.phantoms import NEXT_DAY, copy_ingested, extract_only, remove_lines, restore_exports
from transforms.core.settings import load_settings
from transforms.ingest.staging import ingest_epj
from transforms.privacy.keys import load_keys
from transforms.submit.ledger import integrity_problems, open_ledger


def test_services_only_the_extracts_list_give_no_episode_day(demo_root, tmp_path):
    root = copy_ingested(demo_root, tmp_path / "data")
    planted = extract_only(root)
    assert set(planted["kind"]) == {"annulled_in_epj", "missing_from_epj"}
    Runner(root).timeline()
    episodes = pl.read_parquet(root / "timeline" / "episodes.parquet")
    records = episodes.select("kommune", "reporting_id", pl.col("records").list.join(","))
    for row in planted.unique("service_id").iter_rows(named=True):
        mine = records.filter((pl.col("kommune") == row["reporting_kommune"])
                              & (pl.col("reporting_id").str.starts_with(row["service_id"])
                                 | pl.col("records").str.contains(f":{row['service_id']}:", literal=True)))
        assert mine.height == 0, (row, mine)


@pytest.mark.parametrize("later_export", ["annuls_it", "omits_it"])
def test_a_service_the_epj_annuls_or_drops_after_it_was_sent_is_withdrawn_once_per_notification(
        sent_root, tmp_path, key_file, demo_root, later_export):
    root = tmp_path / "data"
    shutil.copytree(sent_root, root)
    annulled = extract_only(root).filter(pl.col("kind") == "annulled_in_epj").unique("service_id")
    kommuner = sorted(set(annulled["reporting_kommune"]))
    with open_ledger(root, read_only=True) as con:
        sent = con.execute("SELECT kommune, reporting_id, guid, event_type FROM notifications").pl()
    about = sent.join(annulled.select(pl.col("reporting_kommune").alias("kommune"),
                                      pl.col("service_id").alias("reporting_id")), on=["kommune", "reporting_id"])
    # the service was reported with every kind of event while the EPJ held it
    assert set(about["event_type"]) == {"TjenesteStart", "TjenesteSlutt", "TjenesteutforerEndret",
                                        "MidlertidigStoppFra", "MidlertidigStoppTil"}
    # the later export: the generated one (with the annulment), or one without the service at all
    restore_exports(demo_root, root)
    if later_export == "omits_it":
        for service_id in annulled["service_id"]:
            assert remove_lines(root, service_id) >= 5
    runner = Runner(root, key_file)
    ingest_epj(load_settings(root), load_keys(key_file))
    runner.timeline()
    runner.events()
    runner.submissions(NEXT_DAY, NEXT_DAY, kommuner)

    with open_ledger(root, read_only=True) as con:
        assert integrity_problems(con).height == 0
        new = con.execute("SELECT kommune, reporting_id, status, ref_guid FROM notifications WHERE day = ?",
                          [NEXT_DAY]).pl()
    mine = new.join(annulled.select(pl.col("reporting_kommune").alias("kommune"),
                                    pl.col("service_id").alias("reporting_id")), on=["kommune", "reporting_id"])
    assert set(mine["status"]) == {"C"}
    assert sorted(mine["ref_guid"]) == sorted(about["guid"])  # one C per notification sent about it
    episodes = pl.read_parquet(root / "timeline" / "episodes.parquet")
    assert episodes.join(mine.select("kommune", "reporting_id").unique(), on=["kommune", "reporting_id"]).height == 0
