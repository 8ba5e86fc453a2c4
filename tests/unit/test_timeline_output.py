"""The batch outputs come out in their sort order, whatever order a query plan left them in."""

import duckdb
import pytest

from transforms.tables import EPISODES
from transforms.timeline.build import _sorted_output


@pytest.mark.parametrize("ids", [["0301:B", "0301:A", "0301:C"], ["0301:A", "0301:B", "0301:C"], ["0301:A"], []])
def test_episodes_are_returned_in_episode_id_order(ids):
    con = duckdb.connect()
    columns = ", ".join(f"NULL AS {c}" for c in EPISODES.column_names if c != "episode_id")
    rows = " UNION ALL ".join(f"SELECT {i} AS n, '{x}' AS episode_id" for i, x in enumerate(ids)) or \
        "SELECT 0 AS n, 'x' AS episode_id WHERE false"
    con.execute(f"CREATE VIEW episodes_out AS SELECT episode_id, {columns} FROM ({rows}) ORDER BY n")
    table = _sorted_output(con, EPISODES)
    assert table.column_names == list(EPISODES.column_names)
    assert table.column("episode_id").to_pylist() == sorted(ids)
