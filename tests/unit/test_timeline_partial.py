"""The pieces of a partial timeline rebuild: which municipalities to rebuild, and the kept rows handed out in
file order around the rebuilt ones."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from transforms.submit.events import _municipality_ranges
from transforms.timeline.partial import BASE, MUNICIPALITIES, KeptRows, changed_municipalities


def test_only_a_whole_record_of_the_same_base_allows_a_partial_rebuild():
    digests = {"0301": "a", "3301": "b2", "5001": "c"}
    recorded = {BASE: "base", MUNICIPALITIES: {"0301": "a", "3301": "b", "5001": "c"}}
    assert changed_municipalities(recorded, "base", digests) == {"3301"}
    assert changed_municipalities(recorded, "base", {**digests, "3301": "b"}) == set()
    assert changed_municipalities(recorded, "other code or settings", digests) is None
    assert changed_municipalities(None, "base", digests) is None
    assert changed_municipalities({BASE: "base"}, "base", digests) is None  # a build of an older version
    assert changed_municipalities(recorded, "base", {**digests, "1508": "d"}) is None  # a new municipality


def test_kept_rows_come_in_file_order_up_to_each_rebuilt_municipality(tmp_path):
    ids = ["0301:1", "0301:2", "1508:1", "3301:1", "3301:2", "4601:1", "5001:1", "5001:2"]
    path = tmp_path / "stops.parquet"
    pq.write_table(pa.table({"episode_id": ids, "n": list(range(len(ids)))}), path, row_group_size=3)
    rows = KeptRows(path, {"0301", "3301", "5001"})  # 1508 and 4601 are rebuilt

    def taken(first):
        return [i for piece in rows.before(first) for i in piece.column("episode_id").to_pylist()]

    assert taken("1508") == ["0301:1", "0301:2"]
    assert taken("4601") == ["3301:1", "3301:2"]
    assert taken("4601") == []
    assert taken(None) == ["5001:1", "5001:2"]
    assert taken(None) == []


def test_event_runs_of_a_partial_rebuild_hold_rebuilt_municipalities_only():
    con = duckdb.connect()
    con.execute("CREATE TABLE episodes AS SELECT * FROM (VALUES ('0301', 1), ('1508', 2), ('1580', 3), "
                "('3301', 4), ('4601', 5)) t(kommune, n), range(10)")
    assert _municipality_ranges(con, 100) == [("0301", "4601")]
    # a kept municipality (3301) ends a run: the rebuilt rows must fit between the kept ones
    assert _municipality_ranges(con, 100, {"1508", "1580", "4601"}) == [("1508", "1580"), ("4601", "4601")]
    assert _municipality_ranges(con, 10, {"1508", "1580"}) == [("1508", "1508"), ("1580", "1580")]
