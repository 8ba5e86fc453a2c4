"""The pieces of a partial timeline rebuild: which municipalities to rebuild, and the kept rows handed out in
file order around the rebuilt ones."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from transforms.submit.events import _municipality_ranges
from transforms.tables import EPISODE_STOPS, EPISODES
from transforms.timeline.partial import (
    BASE,
    MUNICIPALITIES,
    OUTPUTS,
    KeptRows,
    changed_municipalities,
    downstream_rebuild,
    rows_digest,
    timeline_stamp_of,
)


def test_only_a_whole_record_of_the_same_base_allows_a_partial_rebuild():
    digests = {"0301": "a", "3301": "b2", "5001": "c"}
    recorded = {BASE: "base", MUNICIPALITIES: {"0301": "a", "3301": "b", "5001": "c"}}
    assert changed_municipalities(recorded, "base", digests) == {"3301"}
    assert changed_municipalities(recorded, "base", {**digests, "3301": "b"}) == set()
    assert changed_municipalities(recorded, "other code or settings", digests) is None
    assert changed_municipalities(None, "base", digests) is None
    assert changed_municipalities({BASE: "base"}, "base", digests) is None  # a build of an older version
    assert changed_municipalities(recorded, "base", {**digests, "1508": "d"}) is None  # a new municipality


def _timeline_record(root, inputs: dict[str, str], episodes: dict[str, str], stops: dict[str, str]) -> None:
    """A timeline stamp as a build records it (its outputs: files that do not exist)."""
    timeline_stamp_of(root).record("inputs", {BASE: "timeline base", MUNICIPALITIES: inputs,
                                              OUTPUTS: {EPISODES.name: episodes, EPISODE_STOPS.name: stops}})


def test_a_downstream_stage_derives_again_the_municipalities_whose_rows_it_reads_changed(tmp_path):
    inputs, episodes, stops = {"0301": "i1", "3301": "i2"}, {"0301": "e1", "3301": "e2"}, {"0301": "s1"}
    _timeline_record(tmp_path, inputs, episodes, stops)
    tables = (EPISODES, EPISODE_STOPS)
    rebuild, recorded = downstream_rebuild(tmp_path, None, "stage base", tables)
    assert rebuild is None and recorded[BASE] == "stage base"  # nothing recorded yet: everything

    def again(**changed) -> tuple:
        """What each kind of stage derives again after the timeline's record changed as `changed` says."""
        found = []
        for with_inputs, extra in ((False, None), (True, None), (False, changed.get("extra"))):
            _timeline_record(tmp_path, inputs, episodes, stops)
            _, before = downstream_rebuild(tmp_path, None, "stage base", tables, with_inputs)
            _timeline_record(tmp_path, changed.get("inputs", inputs), changed.get("episodes", episodes),
                             changed.get("stops", stops))
            found.append(downstream_rebuild(tmp_path, before, "stage base", tables, with_inputs, extra)[0])
        return tuple(found)

    # (rows only, rows and staged inputs, rows and the stage's extra digest)
    assert again() == (set(), set(), set())
    assert again(episodes={**episodes, "3301": "e2 changed"}) == ({"3301"}, {"3301"}, {"3301"})
    assert again(stops={"0301": "s1", "3301": "s2"}) == ({"3301"}, {"3301"}, {"3301"})  # its first stop
    assert again(inputs={**inputs, "0301": "i1 touched"}) == (set(), {"0301"}, set())
    assert again(extra={"0301": "coverage changed"}) == (set(), set(), {"0301"})

    _, recorded = downstream_rebuild(tmp_path, None, "stage base", tables)
    assert downstream_rebuild(tmp_path, recorded, "other code or settings", tables)[0] is None
    timeline_stamp_of(tmp_path).record("inputs", {BASE: "older build", MUNICIPALITIES: inputs})
    assert downstream_rebuild(tmp_path, recorded, "stage base", tables) == (None, {})  # no rows' digests


def test_the_rows_digest_of_a_stage_reading_every_municipality_follows_the_rows_not_the_files(tmp_path):
    episodes, stops = {"0301": "e1", "3301": "e2"}, {"0301": "s1"}
    _timeline_record(tmp_path, {"0301": "i1", "3301": "i2"}, episodes, stops)
    digest = rows_digest(tmp_path, (EPISODES, EPISODE_STOPS))
    assert digest is not None
    # the same rows written again (another partial build's row groups, a later as-of date), inputs touched
    EPISODES.location(tmp_path).write_bytes(b"other row groups")
    _timeline_record(tmp_path, {"0301": "i1 touched", "3301": "i2"}, episodes, stops)
    assert rows_digest(tmp_path, (EPISODES, EPISODE_STOPS)) == digest
    _timeline_record(tmp_path, {"0301": "i1", "3301": "i2"}, episodes, {**stops, "3301": "s2"})
    assert rows_digest(tmp_path, (EPISODES, EPISODE_STOPS)) not in (digest, None)
    EPISODES.location(tmp_path).write_bytes(b"touched after the build")  # the record no longer holds
    assert rows_digest(tmp_path, (EPISODES, EPISODE_STOPS)) is None


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
