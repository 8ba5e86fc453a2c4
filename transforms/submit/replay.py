"""Replaying the ledger: apply N, M and C in order and compare with the current events.

If the notifications sent so far, replayed, describe exactly the current events up to
the last written day, the registry holds what the episodes say: nothing missing,
nothing extra, nothing stale.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl

from transforms.core.duck import sql_literal
from transforms.tables import EVENTS

REPLAY_BATCH_NOTIFICATIONS = 1_000_000

REPLAY_SQL = """
WITH replayed AS (
    SELECT kommune, event_key, arg_max(status, seq) AS last_status, arg_max(content_hash, seq) AS content_hash
    FROM notifications WHERE kommune IN ({kommuner}) GROUP BY kommune, event_key
), sent AS (
    SELECT kommune, event_key, content_hash FROM replayed WHERE last_status <> 'C'
), expected AS (
    SELECT e.kommune, e.event_key, e.content_hash
    FROM {events} e JOIN (SELECT kommune, max(day) AS last_day FROM written_days
                          WHERE kommune IN ({kommuner}) GROUP BY kommune) w
      ON w.kommune = e.kommune AND e.day <= w.last_day
)
SELECT coalesce(s.kommune, x.kommune) AS kommune, coalesce(s.event_key, x.event_key) AS event_key,
       CASE WHEN s.event_key IS NULL THEN 'not sent'
            WHEN x.event_key IS NULL THEN 'sent but no longer an event'
            ELSE 'sent with other content' END AS problem
FROM sent s FULL JOIN expected x ON x.kommune = s.kommune AND x.event_key = s.event_key
WHERE s.event_key IS NULL OR x.event_key IS NULL OR s.content_hash <> x.content_hash
ORDER BY 1, 2
"""

# a start sent new again after it was withdrawn (a revived service) is one start, not a second one
# (the services started anew (N) on days from $since on, a run's; all with $since NULL)
STARTS_SQL = """
SELECT kommune, reporting_id, count(*) AS starts
FROM (SELECT kommune, reporting_id, status, event_type,
             lag(status) OVER (PARTITION BY kommune, event_key ORDER BY seq) AS previous_status
      FROM notifications SEMI JOIN (
          SELECT DISTINCT kommune, reporting_id FROM notifications
          WHERE event_type = 'TjenesteStart' AND status = 'N'
            AND (CAST($since AS DATE) IS NULL OR day >= CAST($since AS DATE))) USING (kommune, reporting_id))
WHERE event_type = 'TjenesteStart' AND status = 'N' AND (previous_status IS NULL OR previous_status <> 'C')
GROUP BY ALL HAVING count(*) > 1 ORDER BY ALL
"""


def _replay(ledger: duckdb.DuckDBPyConnection, events: str, kommuner: list[str]) -> pl.DataFrame:
    members = ", ".join(sql_literal(k) for k in kommuner) or "NULL"
    return ledger.execute(REPLAY_SQL.format(events=events, kommuner=members)).pl()


def replay_differences(ledger: duckdb.DuckDBPyConnection, events: pl.DataFrame,
                       kommuner: list[str] | None = None) -> pl.DataFrame:
    """Per event key whose replayed state differs from `events` (`EVENTS`) up to the last written day: how.

    Only the municipalities `kommuner` (default: every one in the ledger) are replayed; `events` needs
    `kommune`, `event_key`, `content_hash` and `day`.
    """
    if kommuner is None:
        kommuner = [k for (k,) in ledger.execute("SELECT DISTINCT kommune FROM written_days").fetchall()]
    ledger.register(EVENTS.name, events.to_arrow())
    try:
        return _replay(ledger, EVENTS.name, kommuner)
    finally:
        ledger.unregister(EVENTS.name)


def replay_differences_streamed(ledger: duckdb.DuckDBPyConnection, events: Path,
                                batch_notifications: int = REPLAY_BATCH_NOTIFICATIONS) -> pl.DataFrame:
    """`replay_differences` of every municipality in the ledger against the `EVENTS` file `events`, a batch of
    municipalities (about `batch_notifications` notifications) at a time.

    Why batched: replayed at once, a national ledger (7.5 M notifications) and its events (8 M rows) made
    hash tables of several GB; a batch's are bounded by the batch. DuckDB reads the batch's events from the
    file itself (sorted by municipality, so the other municipalities' row groups are skipped by their
    statistics) and the batch's notifications (inserted municipality by municipality, likewise).
    """
    if not events.exists():
        raise FileNotFoundError(f"{events} not found: materialize service_events (or run `ktt backfill`) first")
    sizes = ledger.execute("""
        SELECT kommune, sum(n) FROM (SELECT kommune, count(*) AS n FROM notifications GROUP BY kommune
                                     UNION ALL SELECT DISTINCT kommune, 0 FROM written_days)
        GROUP BY kommune ORDER BY kommune""").fetchall()
    parts = []
    batch: list[str] = []
    filled = 0
    for i, (kommune, n) in enumerate(sizes):
        batch.append(kommune)
        filled += n
        if filled >= batch_notifications or i == len(sizes) - 1:
            members = ", ".join(sql_literal(k) for k in batch)
            source = (f"(SELECT kommune, event_key, content_hash, day FROM read_parquet({sql_literal(events)}) "
                      f"WHERE kommune IN ({members}))")
            parts.append(_replay(ledger, source, batch))
            batch, filled = [], 0
    return pl.concat(parts) if parts else replay_differences(ledger, EVENTS.empty(), [])


def repeated_starts(ledger: duckdb.DuckDBPyConnection, since: dt.date | None = None) -> pl.DataFrame:
    """A service reported as started more than once (e.g. restarted at an EPJ switch); with `since`, only the
    services started anew on days from `since` on (a run's: no other start can have become a repeat)."""
    return ledger.execute(STARTS_SQL, {"since": since}).pl()
