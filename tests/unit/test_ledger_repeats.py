"""A key sent new again after it was withdrawn is a revival, not a repeat; sent twice without a withdrawal
it is (the ledger's integrity check and the repeated-start check)."""

from __future__ import annotations

import duckdb
import pytest

from transforms.submit.ledger import SCHEMA_SQL, integrity_problems
from transforms.submit.replay import repeated_starts

NIL = "00000000-0000-0000-0000-000000000000"


def _ledger(statuses: list[str]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(SCHEMA_SQL)
    previous = NIL
    for seq, status in enumerate(statuses, start=1):
        guid = f"00000000-0000-0000-0000-{seq:012d}"
        con.execute("INSERT INTO notifications VALUES ('1515', ?, ?, ?, DATE '2025-07-01', ?, ?, "
                    "'1515|E-1|TjenesteStart', 'h1', ?, 'TjenesteStart', 'E-1', '1', DATE '2024-01-01', "
                    "TIMESTAMPTZ '2025-07-01 00:00:00+00', NULL, NULL, 'p1')",
                    [seq, guid, previous, status, None if status == "N" else previous, guid])
        previous = guid
    return con


@pytest.mark.parametrize(("statuses", "repeated"), [
    (["N", "C", "N"], False),
    (["N", "C", "N", "C", "N"], False),
    (["N", "M", "C", "N"], False),
    (["N", "N"], True),
    (["N", "C", "N", "N"], True),
    (["N", "M", "N"], True),
])
def test_a_revived_key_is_no_repeat(statuses, repeated):
    with _ledger(statuses) as con:
        problems = integrity_problems(con)
        assert (problems.filter(problems["problem"] == "repeated").height > 0) == repeated
        assert (repeated_starts(con).height > 0) == repeated
