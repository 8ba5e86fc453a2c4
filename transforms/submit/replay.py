"""Replaying the ledger: apply N, M and C in order and compare with the current events.

If the notifications sent so far, replayed, describe exactly the current events up to
the last written day, the registry holds what the episodes say: nothing missing,
nothing extra, nothing stale.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from transforms.core.atomic import write_text
from transforms.core.duck import sql_literal
from transforms.core.layout import DataRoot
from transforms.submit.quiet import events_state
from transforms.tables import EVENTS

REPLAY_BATCH_NOTIFICATIONS = 1_000_000

# the end of both replays: the keys whose replayed state (`sent`) is not what the events say (`expected`), and how
COMPARED_SQL = """
SELECT coalesce(s.kommune, x.kommune) AS kommune, coalesce(s.event_key, x.event_key) AS event_key,
       CASE WHEN s.event_key IS NULL THEN 'not sent'
            WHEN x.event_key IS NULL THEN 'sent but no longer an event'
            ELSE 'sent with other content' END AS problem
FROM sent s FULL JOIN expected x ON x.kommune = s.kommune AND x.event_key = s.event_key
WHERE s.event_key IS NULL OR x.event_key IS NULL OR s.content_hash <> x.content_hash
ORDER BY 1, 2
"""


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
""" + COMPARED_SQL

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
                                batch_notifications: int = REPLAY_BATCH_NOTIFICATIONS,
                                only: list[str] | None = None) -> pl.DataFrame:
    """`replay_differences` of every municipality in the ledger against the `EVENTS` file `events`, a batch of
    municipalities (about `batch_notifications` notifications) at a time.

    Why batched: replayed at once, a national ledger (7.5 M notifications) and its events (8 M rows) made
    hash tables of several GB; a batch's are bounded by the batch. DuckDB reads the batch's events from the
    file itself (sorted by municipality, so the other municipalities' row groups are skipped by their
    statistics) and the batch's notifications (inserted municipality by municipality, likewise).
    `only`: these municipalities (default: every one).
    """
    if not events.exists():
        raise FileNotFoundError(f"{events} not found: materialize service_events (or run `ktt backfill`) first")
    sizes = ledger.execute("""
        SELECT kommune, sum(n) FROM (SELECT kommune, count(*) AS n FROM notifications GROUP BY kommune
                                     UNION ALL SELECT DISTINCT kommune, 0 FROM written_days)
        GROUP BY kommune ORDER BY kommune""").fetchall()
    if only is not None:
        wanted = set(only)
        sizes = [(k, n) for k, n in sizes if k in wanted]
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


# The municipalities replayed since the last check (`replay_marks`: kommune, after_seq, after_day, last_day), from
# the notifications numbered after the recorded head and the events dated after the recorded day (up to the last
# written day) alone. A key named by neither replays as it did when the check passed. A key named by them is now
# in the state of its last notification; it is expected as its event of the new days, or else as the check found
# it (its state at the head then: the events file is the same, so what was expected of it then still is).
# `{first_day}` and `{last_day}`: the earliest recorded day and the latest written one, constants that let DuckDB
# skip the ledger's older row groups and read only the new days' events.
REPLAY_SINCE_SQL = """
WITH new_events AS MATERIALIZED (
    SELECT e.kommune, e.event_key, e.content_hash
    FROM (SELECT kommune, event_key, content_hash, day FROM read_parquet({events})
          WHERE day > DATE '{first_day}' AND day <= DATE '{last_day}') e
    JOIN replay_marks m ON m.kommune = e.kommune
    WHERE e.day > m.after_day AND e.day <= m.last_day
), touched AS MATERIALIZED (
    SELECT n.kommune, n.event_key
    FROM (SELECT kommune, event_key, seq FROM notifications WHERE day > DATE '{first_day}') n
    JOIN replay_marks m ON m.kommune = n.kommune
    WHERE n.seq > m.after_seq
    UNION
    SELECT kommune, event_key FROM new_events
), history AS (
    SELECT n.kommune, n.event_key,
           arg_max(n.status, n.seq) AS last_status, arg_max(n.content_hash, n.seq) AS content_hash,
           arg_max(n.status, n.seq) FILTER (WHERE n.seq <= m.after_seq) AS then_status,
           arg_max(n.content_hash, n.seq) FILTER (WHERE n.seq <= m.after_seq) AS then_hash
    FROM (SELECT kommune, event_key, seq, status, content_hash FROM notifications
          WHERE event_key IN (SELECT event_key FROM touched)) n
    JOIN replay_marks m ON m.kommune = n.kommune
    SEMI JOIN touched t ON t.kommune = n.kommune AND t.event_key = n.event_key
    GROUP BY n.kommune, n.event_key
), sent AS (
    SELECT kommune, event_key, content_hash FROM history WHERE last_status <> 'C'
), expected AS (
    SELECT kommune, event_key, content_hash FROM new_events
    UNION ALL
    SELECT h.kommune, h.event_key, h.then_hash FROM history h ANTI JOIN new_events x USING (kommune, event_key)
    WHERE h.then_status <> 'C'
)
""" + COMPARED_SQL

# per municipality replayed since the last check: how many notifications numbered after the recorded head lie on
# the days after the recorded day (all of them, when the count is the numbers' difference: numbers are unique)
NEW_NOTIFICATIONS_SQL = """
SELECT m.kommune, count(n.seq) AS found
FROM replay_marks m LEFT JOIN (SELECT kommune, seq FROM notifications WHERE day > DATE '{first_day}') n
    ON n.kommune = m.kommune AND n.seq > m.after_seq
GROUP BY m.kommune
"""

# per municipality of the ledger: its last written day, its last notification's number and GUID (0 and no GUID
# for a municipality that sent nothing yet); the number from the notifications themselves, not `written_days`
HEADS_SQL = """
WITH last AS (SELECT kommune, max(seq) AS last_seq FROM notifications GROUP BY kommune),
     days AS (SELECT kommune, max(day) AS last_day FROM written_days GROUP BY kommune)
SELECT d.kommune, d.last_day, coalesce(l.last_seq, 0) AS last_seq, n.guid
FROM days d LEFT JOIN last l USING (kommune) LEFT JOIN notifications n ON n.kommune = l.kommune AND n.seq = l.last_seq
ORDER BY 1
"""


@dataclass(frozen=True)
class ReplaySince:
    """A replay that starts from the last passed one: its differences and how each municipality was replayed."""

    differences: pl.DataFrame
    whole: int          # replayed whole: new, or the events or its earlier notifications are not as recorded
    since_last: int     # only the keys named by notifications or events that came after the last check
    unchanged: int      # nothing new since the last check


class ReplayRecord:
    """Per municipality, where its last passed replay stood (`ledger/replayed.json`): the events file (its name,
    size and time) and the ledger's last written day, last notification number and GUID.

    Why: the daily check replayed all 7.5 million notifications of a national ledger to verify the few hundred
    a day adds (5 s of the schedule's run). The ledger only grows, and a key's replayed state changes only with
    a notification of it; an event's expected state changes only with the events file or the last written day.
    So with the events file unchanged and the notification numbered at the recorded head still the one with
    the recorded GUID (the chain check verifies each run's numbering and chain where it joins the ledger), the
    keys that no later notification and no event dated after the recorded day name still replay as they did
    when the check passed. Any other municipality is replayed whole; a missing or unreadable record, whole.
    """

    def __init__(self, data_root: Path):
        self.path = DataRoot(data_root).ledger / "replayed.json"
        try:
            recorded = json.loads(self.path.read_text())
            self.events, self.heads = recorded["events"], recorded["heads"]
        except (OSError, ValueError, KeyError, TypeError):
            self.events, self.heads = None, {}

    def write(self, events: str, heads: dict[str, list]) -> None:
        write_text(self.path, json.dumps({"events": events, "heads": heads}, sort_keys=True))


def replay_since_recorded(ledger: duckdb.DuckDBPyConnection, events: Path, data_root: Path,
                          batch_notifications: int = REPLAY_BATCH_NOTIFICATIONS) -> ReplaySince:
    """`replay_differences_streamed` of the ledger of `data_root`, replaying only what came after the last passed
    replay (`ReplayRecord`); records where each municipality without differences now stands."""
    if not events.exists():
        raise FileNotFoundError(f"{events} not found: materialize service_events (or run `ktt backfill`) first")
    record, state = ReplayRecord(data_root), events_state(events)
    heads = {k: [day.isoformat(), seq, guid] for k, day, seq, guid in ledger.execute(HEADS_SQL).fetchall()}
    recorded = record.heads if record.events == state else {}
    unchanged = [k for k, head in heads.items() if recorded.get(k) == head]
    candidates = {k: recorded[k] for k in heads if k in recorded and k not in unchanged}
    still = _heads_still_there(ledger, candidates)
    since = sorted(k for k in candidates if k in still and candidates[k][0] <= heads[k][0])
    parts = []
    if since:
        since, differences = _replay_since(ledger, events, {k: (candidates[k], heads[k]) for k in since})
        parts.append(differences)
    whole = sorted(set(heads) - set(unchanged) - set(since))
    if whole:
        parts.append(replay_differences_streamed(ledger, events, batch_notifications, only=whole))
    differences = (pl.concat(parts).sort("kommune", "event_key") if parts
                   else replay_differences(ledger, EVENTS.empty(), []))
    failed = set(differences["kommune"].to_list())
    record.write(state, {k: head for k, head in heads.items() if k not in failed})
    return ReplaySince(differences, whole=len(whole), since_last=len(since), unchanged=len(unchanged))


def _replay_since(ledger: duckdb.DuckDBPyConnection, events: Path, heads: dict[str, tuple[list, list]]
                  ) -> tuple[list[str], pl.DataFrame]:
    """`REPLAY_SINCE_SQL` for the municipalities of `heads` (per municipality, the recorded head and the current
    one) whose notifications after the recorded head all lie on later days; those it replayed, and what differs."""
    marks = pl.DataFrame([(k, then[1], dt.date.fromisoformat(then[0]), dt.date.fromisoformat(now[0]))
                          for k, (then, now) in heads.items()], orient="row",
                         schema={"kommune": pl.Utf8, "after_seq": pl.Int64, "after_day": pl.Date, "last_day": pl.Date})
    days = {"first_day": marks["after_day"].min().isoformat(), "last_day": marks["last_day"].max().isoformat()}
    ledger.register("replay_marks", marks.to_arrow())
    try:
        found = dict(ledger.execute(NEW_NOTIFICATIONS_SQL.format(**days)).fetchall())
        complete = sorted(k for k, (then, now) in heads.items() if found.get(k) == now[1] - then[1])
        ledger.unregister("replay_marks")
        ledger.register("replay_marks", marks.filter(pl.col("kommune").is_in(complete)).to_arrow())
        differences = ledger.execute(REPLAY_SINCE_SQL.format(events=sql_literal(events), **days)).pl()
    finally:
        ledger.unregister("replay_marks")
    return complete, differences


def _heads_still_there(ledger: duckdb.DuckDBPyConnection, candidates: dict[str, list]) -> set[str]:
    """The municipalities whose notification numbered at the recorded head still has the recorded GUID."""
    if not candidates:
        return set()
    recorded = pl.DataFrame([(k, seq, guid) for k, (_, seq, guid) in candidates.items()], orient="row",
                            schema={"kommune": pl.Utf8, "seq": pl.Int64, "guid": pl.Utf8})
    ledger.register("recorded_heads", recorded.to_arrow())
    try:
        return {k for (k,) in ledger.execute("""
            SELECT r.kommune FROM recorded_heads r LEFT JOIN notifications n ON n.kommune = r.kommune AND n.seq = r.seq
            WHERE (r.seq = 0 AND r.guid IS NULL) OR n.guid = r.guid""").fetchall()}
    finally:
        ledger.unregister("recorded_heads")


def repeated_starts(ledger: duckdb.DuckDBPyConnection, since: dt.date | None = None) -> pl.DataFrame:
    """A service reported as started more than once (e.g. restarted at an EPJ switch); with `since`, only the
    services started anew on days from `since` on (a run's: no other start can have become a repeat)."""
    return ledger.execute(STARTS_SQL, {"since": since}).pl()
