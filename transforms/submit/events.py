"""Episodes -> the events a daily message reports, each with its key, day and content hash.

An event key names an event independent of its content (municipality, reporting
id, event type, stop id or change date); the content hash covers what a message
says about it. The ledger compares both: same key, other hash -> a correction (M);
a key gone -> a withdrawal (C); same key and hash -> never sent twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms.core import duck
from transforms.core.atomic import PARQUET_OPTIONS, replacing
from transforms.core.duck import register_views
from transforms.core.settings import Settings
from transforms.core.stamps import Stamp
from transforms.tables import EPISODE_STOPS, EPISODES, EVENTS, PROVIDER_CHANGES
from transforms.timeline.partial import (
    BASE,
    MUNICIPALITIES,
    KeptRows,
    downstream_rebuild,
    keep_downstream,
    municipality_column,
    without_as_of,
)

# DuckDB's memory for deriving the events (it spills beyond it; 1.5 GB ran out at national scale, 2026-12)
EVENTS_MEMORY_LIMIT = "2GB"
# episodes whose events are derived and sorted together (a national run is some 3 M episodes, 8 M events)
EPISODES_PER_BATCH = 400_000

EVENT_ORDER = {"TjenesteStart": 1, "MidlertidigStoppFra": 2, "MidlertidigStoppTil": 3,
               "TjenesteutforerEndret": 4, "TjenesteSlutt": 5}

EVENTS_SQL = """
WITH live AS (  -- only the columns used: a CTE read several times is materialised, every column it names with it
    SELECT episode_id, kommune, reporting_id, person_key, user_no, service_code, start_date, end_date,
           start_registered_at, end_registered_at, provider_org
    FROM episodes WHERE (end_date IS NULL OR end_date >= $cutoff::DATE) AND kommune BETWEEN $first AND $last
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
        first, last = con.execute("SELECT min(kommune), max(kommune) FROM episodes").fetchone()
        events = EVENTS.conform(con.execute(EVENTS_SQL, {"cutoff": cutoff, "first": first, "last": last}).pl())
    duplicated = events.filter(pl.col("event_key").is_duplicated())
    if duplicated.height:
        raise ValueError(f"{duplicated.height} events share a key, e.g. {duplicated['event_key'][0]!r}")
    return events


def _municipality_ranges(con, episodes_per_batch: int, only: set[str] | None = None) -> list[tuple[str, str]]:
    """(first, last) municipality of consecutive runs of about `episodes_per_batch` episodes, in ascending order;
    with `only`, of those municipalities alone, a municipality not among them ending a run."""
    ranges: list[tuple[str, str]] = []
    held = episodes_per_batch
    for kommune, n in con.execute("SELECT kommune, count(*) FROM episodes GROUP BY 1 ORDER BY 1").fetchall():
        if only is not None and kommune not in only:
            held = episodes_per_batch
        elif ranges and held + n <= episodes_per_batch:
            ranges[-1] = (ranges[-1][0], kommune)
            held += n
        else:
            ranges.append((kommune, kommune))
            held = n
    return ranges


def write_events(root: Path, cutoff: dt.date, episodes_per_batch: int = EPISODES_PER_BATCH,
                 rebuild: set[str] | None = None) -> dict:
    """Build the events and write them (`timeline/events.parquet`) in record batches; returns `event_figures`.

    Why a run of municipalities at a time: a national events table is some 8 M rows, gigabytes as one
    Polars frame and more than DuckDB's limit as one sorted temporary table (it ran out of 2 GB). An
    event key starts with its municipality, so keys are unique across the country when they are within
    each run; the runs are in ascending order and each is sorted, so the file is in `EVENTS.sort` order.
    Each run is handed over a record batch at a time, cast to the declared schema and appended as row
    groups: the stage holds one run's events, not the table. `rebuild` derives those municipalities' events
    only and copies the others' from the file being replaced, in file order (`timeline.partial`).
    """
    by_type: dict[str, int] = {}
    initial = 0
    with duck.connect(memory_limit=EVENTS_MEMORY_LIMIT) as con, replacing(EVENTS.location(root)) as tmp:
        register_views(con, root, (EPISODES, EPISODE_STOPS, PROVIDER_CHANGES))
        kept_rows = None
        if rebuild is not None:
            held = {k for (k,) in con.execute("SELECT DISTINCT kommune FROM episodes").fetchall()}
            kept_rows = KeptRows(EVENTS.location(root), held - rebuild, municipality_column)
        writer = None

        def write(frame: pa.Table) -> None:
            nonlocal writer, initial
            writer = writer or pq.ParquetWriter(tmp, frame.schema, compression="zstd")
            writer.write_table(frame)
            for event_type, n in pl.from_arrow(frame.column("event_type")).value_counts().iter_rows():
                by_type[event_type] = by_type.get(event_type, 0) + n
            initial += pc.sum(pc.equal(frame.column("day"), pa.scalar(cutoff, pa.date32()))).as_py() or 0

        try:
            for first, last in _municipality_ranges(con, episodes_per_batch, rebuild):
                for piece in kept_rows.before(first) if kept_rows else ():
                    write(piece)
                con.execute(f"CREATE OR REPLACE TEMP TABLE derived AS {EVENTS_SQL}",
                            {"cutoff": cutoff, "first": first, "last": last})
                _refuse_duplicates(con)
                result = con.execute("SELECT * FROM derived")  # in its order (insertion order)
                # `to_arrow_reader` from DuckDB 1.4, `fetch_record_batch` before it
                reader = (getattr(result, "to_arrow_reader", None) or result.fetch_record_batch)(STREAM_BATCH_ROWS)
                for batch in reader:
                    write(EVENTS.conform(pl.from_arrow(batch)).to_arrow())
                con.execute("DROP TABLE derived")
            for piece in kept_rows.before(None) if kept_rows else ():
                write(piece)
            if writer is None:
                EVENTS.empty().write_parquet(tmp, **PARQUET_OPTIONS)
        finally:
            if writer is not None:
                writer.close()
    by_type = dict(sorted(by_type.items()))
    return {"events": sum(by_type.values()), "by_type": by_type, "initial_load_events": initial}


def _refuse_duplicates(con) -> None:
    duplicated = con.execute("SELECT event_key, count(*) FROM derived GROUP BY 1 HAVING count(*) > 1 "
                             "ORDER BY 1 LIMIT 1").fetchall()
    if duplicated:
        n = con.execute("SELECT count(*) FROM derived WHERE event_key IN (SELECT event_key FROM derived "
                        "GROUP BY 1 HAVING count(*) > 1)").fetchone()[0]
        raise ValueError(f"{n} events share a key, e.g. {duplicated[0][0]!r}")


# a municipality's events are derived from its rows of these alone
DERIVED_FROM = (EPISODES, EPISODE_STOPS, PROVIDER_CHANGES)


def write_events_or_keep(settings: Settings) -> tuple[dict, bool]:
    """`write_events`, unless the events file is already that of the current episodes, stops and provider
    changes (`core.stamps`); when the timeline rebuilt only some municipalities, only their events are
    derived again. Returns its figures (`write_events`) and whether any events were derived anew."""
    root, cutoff, shaping = settings.data_root, settings.cutoff_date, without_as_of(settings)
    stamp = Stamp(root, EVENTS.location(root).with_name(".events.stamp.json"), (EVENTS.location(root),))
    digest = stamp.inputs_digest(shaping, [t.location(root) for t in DERIVED_FROM], cutoff)
    own_base = stamp.inputs_digest(shaping, [], cutoff)
    figures = stamp.kept(digest)
    if figures is not None:
        keep_downstream(stamp, digest, figures, own_base, DERIVED_FROM)
        return _event_figures(figures), False
    recorded = stamp.recorded_figures()
    rebuild, partial = downstream_rebuild(root, recorded, own_base, DERIVED_FROM)
    stamp.forget()
    if rebuild == set():  # `recorded` is a whole record of the same timeline's events
        stamp.record(digest, recorded)
        return _event_figures(recorded or {}), False
    figures = write_events(root, cutoff, rebuild=rebuild)
    stamp.record(digest, {**figures, **partial})
    return figures, True


def _event_figures(recorded: dict) -> dict:
    """The figures `write_events` returned, without what the stamp keeps for a partial rebuild."""
    return {k: v for k, v in recorded.items() if k not in (BASE, MUNICIPALITIES)}


# rows decoded at a time when the events are streamed: a few tens of MB whatever the country's size
STREAM_BATCH_ROWS = 200_000


def events_by_municipality(path: Path, columns: Sequence[str] | None = None,
                           batch_rows: int = STREAM_BATCH_ROWS,
                           only: set[str] | None = None) -> Iterator[tuple[str, pl.DataFrame]]:
    """Each municipality's events (`EVENTS`, or only `columns`), one municipality at a time in file order.

    Why streamed: a national events table is some 8 M rows; the writer and the replay check need one
    municipality (or a few) at a time, so holding all of it cost gigabytes for nothing. The file is
    written sorted by municipality (`EVENTS.sort`), so one pass over its record batches cuts it into
    municipalities; a file whose municipalities are not in ascending order is an error naming it. With
    `only`, the row groups that hold none of those municipalities (by their statistics) are not read, and
    municipalities yielded may include others that share a row group with them.
    """
    wanted = None if columns is None else list(dict.fromkeys(["kommune", *columns]))
    current: str | None = None
    parts: list[pl.DataFrame] = []
    source = pq.ParquetFile(path)
    for batch in source.iter_batches(batch_size=batch_rows, columns=wanted, row_groups=_row_groups(source, only)):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        runs = frame.select(pl.col("kommune").rle()).unnest("kommune")
        offset = 0
        for kommune, length in runs.select("value", "len").iter_rows():
            if kommune != current:
                if current is not None:
                    if kommune is None or kommune < current:
                        raise ValueError(f"{path}: events are not sorted by municipality "
                                         f"({kommune!r} after {current!r}); rebuild them (service_events)")
                    yield current, pl.concat(parts)
                current, parts = kommune, []
            parts.append(frame.slice(offset, length))
            offset += length
    if current is not None:
        yield current, pl.concat(parts)


def _row_groups(source: pq.ParquetFile, only: set[str] | None) -> list[int]:
    """The row groups whose municipality range (statistics) holds one of `only` (every one when None)."""
    groups = range(source.metadata.num_row_groups)
    if only is None:
        return list(groups)
    column = source.schema_arrow.get_field_index("kommune")
    kept = []
    for i in groups:
        stats = source.metadata.row_group(i).column(column).statistics
        if stats is None or not stats.has_min_max or any(stats.min <= k <= stats.max for k in only):
            kept.append(i)
    return kept


class MunicipalityEvents:
    """The events of one municipality at a time, asked for in ascending order (`events_by_municipality`):
    the planning process never holds the country's events, only the municipality it plans and the next.
    `only`: the municipalities that will be asked for (others' row groups are skipped)."""

    def __init__(self, path: Path, columns: Sequence[str] | None = None, only: set[str] | None = None):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: materialize service_events (or run `ktt backfill`) first")
        _check_grouped(path)
        self._stream = events_by_municipality(path, columns, only=only)
        self._next = next(self._stream, None)
        empty = EVENTS.empty()
        self._empty = empty if columns is None else empty.select(list(dict.fromkeys(["kommune", *columns])))

    def take(self, kommune: str) -> pl.DataFrame:
        while self._next is not None and self._next[0] < kommune:
            self._next = next(self._stream, None)
        if self._next is None or self._next[0] != kommune:
            return self._empty
        frame = self._next[1]
        self._next = next(self._stream, None)
        return frame


def _check_grouped(path: Path) -> None:
    """Refuse an events file whose municipalities are not in ascending order before any is used: read one
    municipality at a time, a municipality's rows after another's would otherwise be missed unnoticed.
    Only the municipality column is read (dictionary-encoded: a fraction of a second for a national file)."""
    previous = None
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1_000_000, columns=["kommune"]):
        column = pl.from_arrow(batch.column(0))
        assert isinstance(column, pl.Series)
        if column.null_count() or not column.is_sorted() or (previous is not None and column[0] < previous):
            raise ValueError(f"{path}: events are not sorted by municipality; rebuild them (service_events)")
        previous = column[-1] if column.len() else previous
