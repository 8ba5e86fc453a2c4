"""What delivery has achieved, per municipality and per day, from the `delivery_state` view."""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

# per municipality: last accepted day and sequence number, counts by state, and the first message that
# is not accepted (the one its stream waits on) with the registry's code and text
STATUS_SQL = """
WITH s AS (SELECT * FROM delivery_state WHERE kind = 'stream'),
first_open AS (
    SELECT kommune, arg_min(day, first_seq) AS waiting_day, arg_min(state, first_seq) AS waiting_state,
           arg_min(code, first_seq) AS code, arg_min(text, first_seq) AS text
    FROM s WHERE state <> 'accepted' GROUP BY kommune
)
SELECT s.kommune,
       max(s.day) FILTER (WHERE s.state = 'accepted') AS last_accepted_day,
       max(s.last_seq) FILTER (WHERE s.state = 'accepted') AS last_accepted_seq,
       count(*) FILTER (WHERE s.state = 'accepted') AS accepted,
       count(*) FILTER (WHERE s.state = 'pending') AS pending,
       count(*) FILTER (WHERE s.state = 'in_flight') AS in_flight,
       count(*) FILTER (WHERE s.state = 'rejected') AS rejected,
       any_value(f.waiting_day) AS waiting_day, any_value(f.waiting_state) AS waiting_state,
       any_value(f.code) AS code, any_value(f.text) AS text
FROM s LEFT JOIN first_open f USING (kommune)
GROUP BY s.kommune ORDER BY s.kommune
"""


def delivery_status(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return con.execute(STATUS_SQL).pl()


def range_problems(con: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date,
                   kommuner: list[str] | None = None) -> pl.DataFrame:
    """Messages of the days `first`..`last` that are not accepted, with their state, code and text."""
    where = "kind = 'stream' AND state <> 'accepted' AND day BETWEEN ? AND ?"
    params: list = [first, last]
    if kommuner:
        where += " AND list_contains(?, kommune)"
        params.append(kommuner)
    return con.execute(f"SELECT kommune, day, first_seq, state, attempts, http_status, code, text "
                       f"FROM delivery_state WHERE {where} ORDER BY kommune, first_seq", params).pl()


def rejected_messages(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return con.execute("SELECT kommune, day, file, first_seq, ref_id, code, text FROM delivery_state "
                       "WHERE state = 'rejected' ORDER BY kommune, first_seq").pl()


def pending_range(con: duckdb.DuckDBPyConnection) -> tuple[dt.date, dt.date, list[str], int] | None:
    """(first day, last day, municipalities, messages) of what waits to be retried, or None: the pending and
    in-flight messages of municipalities whose stream is not held by a rejected message."""
    row = con.execute("""
        WITH s AS (SELECT * FROM delivery_state WHERE kind = 'stream' AND state <> 'accepted'),
        open AS (SELECT kommune FROM s GROUP BY kommune HAVING arg_min(state, first_seq) <> 'rejected')
        SELECT min(day), max(day), list(DISTINCT kommune ORDER BY kommune), count(*)
        FROM s JOIN open USING (kommune)""").fetchone()
    return None if row is None or row[3] == 0 else (row[0], row[1], list(row[2]), row[3])
