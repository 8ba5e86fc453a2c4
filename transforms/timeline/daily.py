"""Day-level allocation: the on-demand expansion view and the per-day aggregates.

Aggregates are computed from change events and running totals (one +1/-1 per
start, end, stop start and stop end) rather than by expanding every episode to
every day: the result is identical, at a fraction of the time and memory.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb

from transforms.core import duck
from transforms.core.duck import register_views, sql_literal
from transforms.core.stamps import Stamp
from transforms.tables import DAILY_ALLOCATION, EPISODE_STOPS, EPISODES
from transforms.timeline.partial import rows_digest

EVENTS_BODY_SQL = """
-- stops clipped to their episode, so a stop never counts outside the allocation
WITH clipped_stops AS (
    SELECT s.episode_id, e.kommune, e.service_code,
           greatest(s.from_date, e.start_date) AS from_date,
           least(coalesce(s.to_date, DATE '9999-12-30'), coalesce(e.end_date, DATE '9999-12-30')) AS to_date
    FROM stops s JOIN episodes e USING (episode_id)
    WHERE s.from_date <= coalesce(e.end_date, DATE '9999-12-30')
      AND coalesce(s.to_date, DATE '9999-12-30') >= e.start_date
), changes AS (
    -- allocated = active + stopped; stopped moves between the two
    SELECT kommune, service_code, start_date AS day, 1 AS d_alloc, 0 AS d_stopped, 1 AS started, 0 AS ended
    FROM episodes
    UNION ALL
    SELECT kommune, service_code, end_date + 1, -1, 0, 0, 0 FROM episodes WHERE end_date IS NOT NULL
    UNION ALL
    SELECT kommune, service_code, end_date, 0, 0, 0, 1 FROM episodes WHERE end_date IS NOT NULL
    UNION ALL
    SELECT kommune, service_code, from_date, 0, 1, 0, 0 FROM clipped_stops
    UNION ALL
    SELECT kommune, service_code, to_date + 1, 0, -1, 0, 0 FROM clipped_stops WHERE to_date < DATE '9999-12-30'
), windowed AS (
    -- everything before the first day collapses onto it; starts/ends only count on their own day
    SELECT kommune, service_code, greatest(day, $first_day::DATE) AS day,
           d_alloc, d_stopped,
           CASE WHEN day >= $first_day::DATE THEN started ELSE 0 END AS started,
           CASE WHEN day >= $first_day::DATE THEN ended ELSE 0 END AS ended
    FROM changes WHERE day <= $last_day::DATE
), per_day AS (
    -- a NULL municipality or code never matched the day grid of the original formulation: no rows
    SELECT kommune, service_code, day, sum(d_alloc) AS d_alloc, sum(d_stopped) AS d_stopped,
           sum(started) AS started, sum(ended) AS ended
    FROM windowed WHERE kommune IS NOT NULL AND service_code IS NOT NULL GROUP BY ALL
), running AS (
    -- totals change only on change days: each change day's totals hold until the next change day
    SELECT kommune, service_code, day, started, ended,
           sum(d_alloc) OVER w AS allocated, sum(d_stopped) OVER w AS stopped,
           coalesce(lead(day) OVER w, $last_day::DATE + 1) - 1 AS until
    FROM per_day
    WINDOW w AS (PARTITION BY kommune, service_code ORDER BY day)
), spans AS (
    -- a change day that leaves nothing allocated is only a row of its own (for its starts and ends)
    SELECT *, CASE WHEN allocated <> 0 OR stopped <> 0 THEN until ELSE day END AS span_end FROM running
), expanded AS (
    SELECT s.kommune, s.service_code, s.day AS change_day, s.allocated, s.stopped, s.started, s.ended,
           s.day + CAST(g.k AS INTEGER) AS day
    FROM spans s, LATERAL (SELECT unnest(generate_series(0, s.span_end - s.day)) AS k) g
)
SELECT day, kommune, service_code,
       CAST(allocated - stopped AS BIGINT) AS active, CAST(stopped AS BIGINT) AS stopped,
       CAST(CASE WHEN day = change_day THEN started ELSE 0 END AS BIGINT) AS started,
       CAST(CASE WHEN day = change_day THEN ended ELSE 0 END AS BIGINT) AS ended
FROM expanded
WHERE allocated <> 0 OR stopped <> 0 OR (day = change_day AND (started <> 0 OR ended <> 0))
"""
EVENTS_SQL = EVENTS_BODY_SQL + "ORDER BY day, kommune, service_code\n"

# DuckDB's share of the daily stage: it spills beyond this (KTT_DUCKDB_MEMORY_LIMIT overrides it)
DAILY_MEMORY_LIMIT = "2GB"

ALLOCATION_VIEW_SQL = """
CREATE OR REPLACE VIEW allocation AS
WITH bounds AS (
    SELECT DATE '{first_day}' AS first_day, DATE '{last_day}' AS last_day
), expanded AS (
    SELECT e.episode_id, e.kommune, e.person_key, e.service_code, CAST(d.day AS DATE) AS day
    FROM episodes e, bounds b,
         LATERAL (SELECT unnest(generate_series(greatest(e.start_date, b.first_day),
                                                least(coalesce(e.end_date, b.last_day), b.last_day),
                                                INTERVAL 1 DAY)) AS day) d
)
SELECT x.day, x.kommune, x.person_key, x.service_code, x.episode_id,
       CASE WHEN EXISTS (SELECT 1 FROM stops s WHERE s.episode_id = x.episode_id
                         AND x.day BETWEEN s.from_date AND coalesce(s.to_date, DATE '9999-12-31'))
            THEN 'stopped' ELSE 'active' END AS state
FROM expanded x
"""


def daily_aggregates(con: duckdb.DuckDBPyConnection, first_day: dt.date, last_day: dt.date):
    """Per (day, kommune, service_code): active, stopped, started, ended. Needs `episodes` and `stops`."""
    return con.execute(EVENTS_SQL, {"first_day": first_day, "last_day": last_day}).pl()


def write_daily_partitions(con: duckdb.DuckDBPyConnection, root: Path, first_day: dt.date,
                           last_day: dt.date) -> int:
    """Replace the day partitions of [first_day, last_day] of `DAILY_ALLOCATION` under the data root `root`.

    The aggregates go from DuckDB straight to the Parquet partitions: a national range is
    tens of millions of rows, which never pass through Python. Needs views `episodes` and `stops`.
    """
    day = first_day
    while day <= last_day:
        shutil.rmtree(DAILY_ALLOCATION.partition_folder(root, day=day.isoformat()), ignore_errors=True)
        day += dt.timedelta(days=1)
    target = DAILY_ALLOCATION.folder(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    order = ", ".join(("day", *DAILY_ALLOCATION.sort))
    # COPY reports the rows it wrote; with none it creates no folder
    return con.execute(
        f"COPY (SELECT strftime(day, '%Y-%m-%d') AS day, {', '.join(DAILY_ALLOCATION.column_names)} "
        f"FROM ({EVENTS_BODY_SQL}) ORDER BY {order}) TO {sql_literal(target)} "
        "(FORMAT PARQUET, PARTITION_BY (day), OVERWRITE_OR_IGNORE, FILENAME_PATTERN 'part-{i}')",
        {"first_day": first_day, "last_day": last_day},
    ).fetchone()[0]


def write_daily_allocation(root: Path, first_day: dt.date, last_day: dt.date) -> int:
    """The daily aggregates of [first_day, last_day] from the written episodes and stops; rows written.

    When the episodes or stops changed since the day partitions already written were aggregated (a source
    changed, and the timeline was rebuilt), those partitions are rewritten too: a new day's run would
    otherwise leave the history's aggregates of the old timeline beside the new day's (`core.stamps`).
    """
    stamp = Stamp(root, DAILY_ALLOCATION.folder(root).with_name(".daily.stamp.json"), ())
    # the rows read, when the timeline's stamp records them; else the files
    rows = rows_digest(root, (EPISODES, EPISODE_STOPS))
    digest = stamp.inputs_digest(None, [] if rows else [EPISODES.location(root), EPISODE_STOPS.location(root)],
                                 rows or "files")
    written = aggregated_days(root)
    if written and stamp.kept(digest) is None:
        first_day, last_day = min(first_day, written[0]), max(last_day, written[-1])
    stamp.forget()
    with duck.connect(memory_limit=DAILY_MEMORY_LIMIT) as con:
        register_views(con, root, (EPISODES, EPISODE_STOPS))
        rows = write_daily_partitions(con, root, first_day, last_day)
    stamp.record(digest)
    return rows


def aggregated_days(root: Path) -> list[dt.date]:
    """The days whose aggregates are written, in order."""
    folder = DAILY_ALLOCATION.folder(root)
    if not folder.is_dir():
        return []
    return sorted(dt.date.fromisoformat(p.name.removeprefix("day=")) for p in folder.glob("day=*") if p.is_dir())
