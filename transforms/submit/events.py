"""Episodes -> the events a daily message reports, each with its key, day and content hash.

An event key names an event independent of its content (municipality, reporting
id, event type, stop id or change date); the content hash covers what a message
says about it. The ledger compares both: same key, other hash -> a correction (M);
a key gone -> a withdrawal (C); same key and hash -> never sent twice.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from transforms.core import duck
from transforms.core.atomic import write_parquet
from transforms.core.duck import register_views
from transforms.tables import EPISODE_STOPS, EPISODES, EVENTS, PROVIDER_CHANGES

EVENT_ORDER = {"TjenesteStart": 1, "MidlertidigStoppFra": 2, "MidlertidigStoppTil": 3,
               "TjenesteutforerEndret": 4, "TjenesteSlutt": 5}

EVENTS_SQL = """
WITH live AS (
    SELECT * FROM episodes WHERE end_date IS NULL OR end_date >= $cutoff::DATE
), clipped_stops AS (
    SELECT s.episode_id, s.stop_id, s.from_date,
           CASE WHEN e.end_date IS NOT NULL AND (s.to_date IS NULL OR s.to_date > e.end_date)
                THEN NULL ELSE s.to_date END AS to_date,
           s.registered_at, s.end_registered_at
    FROM stops s JOIN live e USING (episode_id)
    WHERE s.from_date <= coalesce(e.end_date, DATE '9999-12-31') AND s.from_date >= e.start_date
      AND (s.to_date IS NULL OR s.to_date >= $cutoff::DATE)
), raw AS (
    SELECT episode_id, 'TjenesteStart' AS event_type, start_date AS event_date, start_registered_at AS registered_at,
           NULL AS stop_id, NULL AS change_key, provider_org AS provider_org
    FROM live
    UNION ALL
    SELECT episode_id, 'TjenesteSlutt', end_date, end_registered_at, NULL, NULL, NULL
    FROM live WHERE end_date IS NOT NULL
    UNION ALL
    SELECT episode_id, 'MidlertidigStoppFra', from_date, registered_at, stop_id, NULL, NULL FROM clipped_stops
    UNION ALL
    SELECT episode_id, 'MidlertidigStoppTil', to_date, end_registered_at, stop_id, NULL, NULL
    FROM clipped_stops WHERE to_date IS NOT NULL
    UNION ALL
    SELECT p.episode_id, 'TjenesteutforerEndret', p.change_date, p.registered_at, NULL,
           strftime(p.change_date, '%Y-%m-%d'), p.provider_org
    FROM provider_changes p JOIN live e USING (episode_id)
    WHERE p.change_date >= $cutoff::DATE AND p.change_date > e.start_date
)
SELECT e.kommune,
       e.kommune || '|' || e.reporting_id || '|' || r.event_type
           || coalesce('|' || r.stop_id, '') || coalesce('|' || r.change_key, '') AS event_key,
       r.event_type, r.episode_id, e.reporting_id, e.person_key, e.user_no, e.service_code,
       r.event_date, greatest(r.event_date, $cutoff::DATE) AS day,
       -- a fact is never registered after the day it is reported on in a backfill
       coalesce(r.registered_at, CAST(greatest(r.event_date, $cutoff::DATE) AS TIMESTAMPTZ)) AS registered_at,
       r.provider_org, r.stop_id,
       md5(concat_ws('|', r.event_type, e.service_code, e.reporting_id, strftime(r.event_date, '%Y-%m-%d'),
                     coalesce(r.provider_org, ''), coalesce(r.stop_id, ''), e.person_key)) AS content_hash
FROM raw r JOIN live e USING (episode_id)
ORDER BY e.kommune, day, event_key
"""


def build_events(root: Path, cutoff: dt.date) -> pl.DataFrame:
    """The events of the episodes written under the data root `root` (`EVENTS`, in its order)."""
    with duck.connect() as con:
        register_views(con, root, (EPISODES, EPISODE_STOPS, PROVIDER_CHANGES))
        events = EVENTS.conform(con.execute(EVENTS_SQL, {"cutoff": cutoff}).pl())
    duplicated = events.filter(pl.col("event_key").is_duplicated())
    if duplicated.height:
        raise ValueError(f"{duplicated.height} events share a key, e.g. {duplicated['event_key'][0]!r}")
    return events


def write_events(root: Path, cutoff: dt.date) -> pl.DataFrame:
    """Build the events and write them (`timeline/events.parquet`); returns them."""
    events = build_events(root, cutoff)
    write_parquet(events, EVENTS.location(root))
    return events
