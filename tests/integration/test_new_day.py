"""One new day after a backfill (the daily schedule's `ktt backfill --from D --to D`): stages whose inputs did not
change keep their outputs, and what a day after a changed source leaves is what a full rebuild makes."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest

from pipelines.run import Runner
from tests.phantoms import copy_ingested, export_lines, remove_lines
from transforms.submit.ledger import open_ledger
from transforms.tables import DAILY_ALLOCATION, EPISODES, EVENTS, RECONCILIATION

CUTOFF = dt.date(2017, 1, 1)
LAST = dt.date(2018, 12, 31)  # two years of the demo: what is kept and rebuilt is the same for nine
DAY = LAST + dt.timedelta(days=1)
# every derived output but the ledger's and the messages' (a root sent day by day and one sent at once send the
# same facts in different notifications), and the dry run's and the analyst catalog's
COMPARED = ("staging", "timeline", "reference")


def derived_tables(root: Path) -> dict[str, pl.DataFrame]:
    """Every Parquet file by path, but the daily aggregates as one table: how DuckDB cuts a day's partition
    into files depends on how many days it wrote at once."""
    daily = DAILY_ALLOCATION.folder(root)
    tables = {p.relative_to(root).as_posix(): pl.read_parquet(p) for folder in COMPARED
              for p in sorted((root / folder).rglob("*.parquet")) if ".tmp" not in p.parts and daily not in p.parents}
    aggregates = pl.read_parquet(daily / "**" / "*.parquet", hive_partitioning=True)
    tables[DAILY_ALLOCATION.name] = aggregates.sort(aggregates.columns)
    return tables


def stamp_of(path: Path) -> int:
    return path.stat().st_mtime_ns


@pytest.fixture
def as_of(monkeypatch):
    monkeypatch.setenv("KTT_AS_OF_DATE", LAST.isoformat())


def test_a_new_day_keeps_what_did_not_change_and_equals_a_full_rebuild_after_a_source_changed(
        demo_root, tmp_path, key_file, as_of):
    daily = copy_ingested(demo_root, tmp_path / "daily")
    Runner(daily, key_file).backfill(CUTOFF, LAST)
    built = {t: stamp_of(t.location(daily)) for t in (EPISODES, RECONCILIATION, EVENTS)}

    # a new day with no source changed: the timeline, reconciliation and events are kept as they are
    Runner(daily, key_file).backfill(DAY, DAY)
    assert {t: stamp_of(t.location(daily)) for t in built} == built
    with open_ledger(daily, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM written_days WHERE day = ?", [DAY]).fetchone()[0] == 3

    # one municipality's EPJ export (a CSV one) changes: a service is gone from it
    episodes = pl.read_parquet(EPISODES.location(daily))
    service = next(s for s in episodes.filter(pl.col("kommune") == "3301")["reporting_id"].sort()
                   if export_lines(daily, s))
    assert remove_lines(daily, service) >= 1
    next_day = DAY + dt.timedelta(days=1)
    Runner(daily, key_file).backfill(next_day, next_day)
    assert all(stamp_of(t.location(daily)) != built[t] for t in built)
    assert not pl.read_parquet(EPISODES.location(daily)).equals(episodes)

    # the same sources from scratch, every stage built once
    full = tmp_path / "full"
    full.mkdir()
    for folder in ("config", "raw"):
        shutil.copytree(daily / folder, full / folder)
    Runner(full, key_file).backfill(CUTOFF, next_day)
    mine, theirs = derived_tables(daily), derived_tables(full)
    assert sorted(mine) == sorted(theirs)
    for name, frame in theirs.items():
        assert mine[name].equals(frame), name
