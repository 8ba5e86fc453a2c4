"""Daily aggregates equal the full expansion; the warehouse opens read-only with every view."""

import dataclasses
import datetime as dt

import duckdb
import pytest

from tests.conftest import REPO
from transforms.core.duck import register_views
from transforms.core.settings import load_settings
from transforms.report.warehouse import build_warehouse
from transforms.tables import DAILY_ALLOCATION, EPISODE_STOPS, EPISODES
from transforms.timeline.build import build_timeline
from transforms.timeline.daily import ALLOCATION_VIEW_SQL, daily_aggregates, write_daily_partitions

D = dt.date


@pytest.fixture(scope="module")
def built(example_root):
    settings = dataclasses.replace(load_settings(example_root), as_of_date=D(2026, 11, 25))
    build_timeline(settings)
    with _con(settings) as con:
        write_daily_partitions(con, settings.data_root, D(2017, 1, 1), D(2026, 11, 25))
    return settings


def _con(settings):
    con = duckdb.connect()
    register_views(con, settings.data_root, (EPISODES, EPISODE_STOPS))
    return con


def test_running_totals_equal_full_expansion(built):
    con = _con(built)
    con.execute(ALLOCATION_VIEW_SQL.format(first_day="2017-01-01", last_day="2026-11-25"))
    expanded = con.execute("""
        SELECT day, kommune, service_code, count(*) FILTER (WHERE state = 'active') AS active,
               count(*) FILTER (WHERE state = 'stopped') AS stopped
        FROM allocation GROUP BY ALL ORDER BY ALL""").fetchall()
    totals = daily_aggregates(con, D(2017, 1, 1), D(2026, 11, 25))
    from_totals = [(r[0], r[1], r[2], r[3], r[4]) for r in
                   totals.filter((totals["active"] > 0) | (totals["stopped"] > 0))
                   .select("day", "kommune", "service_code", "active", "stopped").iter_rows()]
    assert from_totals == expanded
    # the home nursing episode is stopped 2019-08-01..20 and ended 2024-05-02
    row = totals.filter((totals["day"] == D(2019, 8, 5)) & (totals["service_code"] == "15")).row(0, named=True)
    assert (row["active"], row["stopped"]) == (0, 1)
    ended = totals.filter((totals["day"] == D(2024, 5, 2)) & (totals["service_code"] == "15")).row(0, named=True)
    assert ended["ended"] == 1 and ended["active"] == 1


def test_one_day_partition_matches_the_full_range(built, tmp_path):
    con = _con(built)
    full = daily_aggregates(con, D(2017, 1, 1), D(2026, 11, 25))
    one = daily_aggregates(con, D(2021, 3, 15), D(2021, 3, 15))
    assert one.rows() == full.filter(full["day"] == D(2021, 3, 15)).rows()
    rows = write_daily_partitions(con, tmp_path, D(2021, 3, 15), D(2021, 3, 16))
    assert rows == 4 and sorted(p.name for p in DAILY_ALLOCATION.folder(tmp_path).iterdir()) == [
        "day=2021-03-15", "day=2021-03-16"]


def test_warehouse_has_every_view_and_opens_read_only(built):
    path, views = build_warehouse(built)
    assert {"episodes", "coverage", "gaps", "conflicts", "quarantine", "iplos_services", "allocation"} <= set(views)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM episodes").fetchone()[0] == 3
        users = con.execute("SELECT count(DISTINCT person_key) FROM allocation WHERE day = DATE '2019-08-05'"
                            ).fetchone()[0]
        assert users == 1
    # rebuilding while a reader holds the catalog open does not disturb the reader
    reader = duckdb.connect(str(path), read_only=True)
    build_warehouse(dataclasses.replace(built, as_of_date=D(2026, 11, 26)))
    assert reader.execute("SELECT count(*) FROM episodes").fetchone()[0] == 3
    reader.close()


def test_warehouse_is_kept_while_its_views_would_be_the_same(built, tmp_path):
    settings = dataclasses.replace(built, as_of_date=D(2026, 11, 27))
    path, views = build_warehouse(settings)
    written = path.stat().st_mtime_ns
    assert build_warehouse(settings) == (path, views) and path.stat().st_mtime_ns == written  # a new day: kept
    later = dataclasses.replace(settings, as_of_date=D(2026, 11, 28))  # the allocation view's last day moves
    assert build_warehouse(later) == (path, views) and path.stat().st_mtime_ns != written
    with duckdb.connect(str(path), read_only=True) as con:
        assert "2026-11-28" in con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'allocation'"
                                           ).fetchone()[0]
        assert sorted(r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal"
                                                ).fetchall()) == views
        assert con.execute("SELECT max(day) FROM allocation").fetchone()[0] == D(2026, 11, 28)
    written = path.stat().st_mtime_ns
    path.write_bytes(b"")  # a catalog touched by hand is built again
    assert build_warehouse(later)[1] == views and path.stat().st_size > 0


def test_readme_analyst_queries_run(built):

    readme = (REPO / "README.md").read_text()
    block = readme.split("### The analyst catalog")[1].split("```sql")[1].split("```")[0]
    queries = [q for q in block.split(";") if q.strip()]
    assert len(queries) == 5
    path, _ = build_warehouse(built)
    with duckdb.connect(str(path), read_only=True) as con:
        for query in queries:
            con.execute(query).fetchall()
        stitched = con.execute(queries[3]).fetchall()
        assert {row[1] for row in stitched} == {"A-00001", "A-00002"}
