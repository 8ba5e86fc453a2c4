"""Build the timeline outputs from staged Parquet: coverage, episodes, stops, providers, conflicts."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms.core import duck
from transforms.core.config import load_kommuner
from transforms.core.settings import Settings
from transforms.reference.municipalities import municipality_codes, unit_succession
from transforms.timeline.checks import EPISODE_FLAG_COLUMNS, episode_flag_counts
from transforms.timeline.coverage import as_of_date, build_coverage, epj_system_frame, missing_extracts, staged_extracts
from transforms.timeline.episodes import (
    CONFLICTS_SQL,
    EPISODES_OUT_SQL,
    EPISODES_SQL,
    PROVIDERS_SQL,
    STOPS_SQL,
    check_record_count,
)
from transforms.timeline.linking import link_records
from transforms.timeline.records import PERSONS_SQL, RECORDS_SQL
from transforms.timeline.sql import run_script
from transforms.timeline.staged import file_owner, register_staged, staged_file_index

log = logging.getLogger(__name__)

# the staged tables the reconstruction reads
TIMELINE_INPUTS = ("iplos_services", "iplos_persons", "iplos_stops", "epj_service_versions", "epj_persons",
                   "epj_stops")
# staged service rows per batch: about 1-2 GiB of DuckDB working memory
BATCH_SERVICE_ROWS = 1_000_000
# DuckDB's share of the process: it spills beyond this instead of growing the process past ~4 GiB
# (KTT_DUCKDB_MEMORY_LIMIT overrides it); batches built side by side share it
TIMELINE_MEMORY_LIMIT_MB = 3000
TIMELINE_MEMORY_LIMIT = f"{TIMELINE_MEMORY_LIMIT_MB}MB"
# finished batches that may wait for the writer while later ones are built: their Arrow outputs, some
# 50-200 MB each at national scale
WAITING_RESULTS = 4

EPISODE_COLUMNS = ("episode_id", "kommune", "reporting_id", "reporting_id_derived", "person_key", "user_no",
                   "service_code", "start_date", "end_date", "provider_org", "hours_per_week", "start_registered_at",
                   "end_registered_at", "stitched", "end_imputed",
                   "bridged_gap", "conflict", "start_source", "n_records", "records", "lineage")


@dataclass(frozen=True)
class TimelineResult:
    coverage: pl.DataFrame
    segments: pl.DataFrame
    gaps: pl.DataFrame
    missing: pl.DataFrame
    episodes: pl.DataFrame
    stops: pl.DataFrame
    provider_changes: pl.DataFrame
    conflicts: pl.DataFrame
    linking_rounds: int


def timeline_dir(settings: Settings) -> Path:
    return settings.data_root / "timeline"


def register_timeline_views(con: duckdb.DuckDBPyConnection, folder: Path,
                            names: tuple[str, ...] = ("episodes", "stops")) -> None:
    """Views over written timeline outputs (`timeline/<name>.parquet`) on a DuckDB connection."""
    for name in names:
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{folder / f'{name}.parquet'}')")


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    frame.write_parquet(tmp, compression="zstd", statistics=True)
    os.replace(tmp, path)


@dataclass(frozen=True)
class StagedInputs:
    """What every batch reads about the staging tree, listed once per build instead of once per batch."""
    files: dict[str, list[Path]]
    extracts: pl.DataFrame


def staged_inputs(settings: Settings) -> StagedInputs:
    return StagedInputs(staged_file_index(settings), staged_extracts(settings))


# the large outputs, written batch by batch; (name, table, sort order within a batch). Each order is unique
# (no ties), so a sort in DuckDB and one in Polars give the same rows in the same order
STREAMED = {"episodes": ("episodes_out", ("episode_id",)),
            "stops": ("episode_stops", ("episode_id", "from_date", "stop_id", "source")),
            "provider_changes": ("provider_changes", ("episode_id", "change_date"))}


EPISODES_SELECT = f"SELECT {', '.join(EPISODE_COLUMNS)} FROM episodes_out"


def _sorted_output(con: duckdb.DuckDBPyConnection, name: str) -> pa.Table:
    """A large output of the batch in its sort order, as Arrow.

    Episodes carry their record and lineage lists, which make a sort of their rows costly: `episodes` is
    written in episode_id order, and the joins that add the lists keep that order when run on one thread.
    The order is checked, and the rows are sorted here only when a plan did not keep it.
    """
    if name != "episodes":
        source, order = STREAMED[name]
        by = ", ".join(f"{column} NULLS LAST" for column in order)
        return _arrow_table(con.execute(f"SELECT * FROM {source} ORDER BY {by}"))
    table = _arrow_table(con.execute(EPISODES_SELECT))
    ids = table.column("episode_id")
    if len(ids) > 1 and not pc.all(pc.less(ids.slice(0, len(ids) - 1), ids.slice(1)), skip_nulls=False).as_py():
        table = table.take(pc.sort_indices(table, [("episode_id", "ascending")]))
    return table


@contextlib.contextmanager
def _reconstructed(settings: Settings, kommuner: set[str] | None, inputs: StagedInputs, workers: int
                   ) -> Iterator[tuple[duckdb.DuckDBPyConnection, TimelineResult]]:
    """A connection holding every timeline table of `kommuner` (all when None), and the small outputs.

    With `workers` batches built side by side, each connection gets one thread and its share of the
    memory limit. The result's episodes, stops and provider changes are left empty: the caller reads
    them from the connection in the form it needs.
    """
    as_of = as_of_date(settings)
    memory = f"{TIMELINE_MEMORY_LIMIT_MB // workers}MB"
    with duck.connect(memory_limit=memory, threads=1 if workers > 1 else None) as con:
        # every statement over the staged views binds their files again; their footers are read once
        con.execute("SET parquet_metadata_cache = true")
        register_staged(con, settings, kommuner, inputs.files, TIMELINE_INPUTS)
        con.register("municipality_codes", municipality_codes().to_arrow())
        con.register("unit_succession", unit_succession(settings.cutoff_date.year, as_of.year).to_arrow())
        con.register("epj_systems", epj_system_frame(settings, kommuner).to_arrow())
        coverage, segments = build_coverage(settings, con, kommuner, inputs.extracts)
        run_script(con, PERSONS_SQL)
        run_script(con, RECORDS_SQL)
        check_record_count(con.execute("SELECT count(*) FROM resolved_records").fetchone()[0])
        rounds = link_records(con, settings.tolerances.iplos36_start_days, settings.tolerances.switch_window_days)
        for script in (EPISODES_SQL, CONFLICTS_SQL, EPISODES_OUT_SQL, STOPS_SQL, PROVIDERS_SQL):
            run_script(con, script, {"as_of": as_of})
        conflicts = con.execute("SELECT * FROM conflicts_out").pl()
        gaps = segments.filter(pl.col("source") == "gap").drop("source")
        missing = missing_extracts(settings, coverage, kommuner, inputs.extracts)
        empty = pl.DataFrame()
        yield con, TimelineResult(coverage, segments, gaps, missing, empty, empty, empty, conflicts, rounds)


def _build_batch(settings: Settings, kommuner: set[str] | None, inputs: StagedInputs | None = None,
                 workers: int = 1) -> TimelineResult:
    """Reconstruct the episodes of `kommuner` (all when None) on one DuckDB connection."""
    with _reconstructed(settings, kommuner, inputs or staged_inputs(settings), workers) as (con, small):
        return dataclasses.replace(
            small, episodes=con.execute(EPISODES_SELECT).pl(),
            stops=con.execute("SELECT * FROM episode_stops").pl(),
            provider_changes=con.execute("SELECT * FROM provider_changes").pl())


@dataclass(frozen=True)
class StreamedBatch:
    """One batch for `build_and_write_timeline`: the small outputs, and the large ones sorted, as Arrow."""
    small: TimelineResult
    tables: dict[str, pa.Table]


def _build_streamed_batch(settings: Settings, kommuner: set[str], inputs: StagedInputs, workers: int
                          ) -> StreamedBatch:
    """The batch's large outputs sorted in DuckDB and handed over as Arrow, without a Polars copy."""
    with _reconstructed(settings, kommuner, inputs, workers) as (con, small):
        return StreamedBatch(small, {name: _sorted_output(con, name) for name in STREAMED})


def _arrow_table(result: duckdb.DuckDBPyConnection) -> pa.Table:
    """The result as one Arrow table (`to_arrow_table` from DuckDB 1.4, `fetch_arrow_table` before it)."""
    fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
    return fetch()


def plan_batches(settings: Settings, rows_per_batch: int = BATCH_SERVICE_ROWS,
                 files: dict[str, list[Path]] | None = None) -> list[set[str]]:
    """Reporting municipalities grouped so each batch holds about `rows_per_batch` staged service rows.

    Episodes never cross reporting municipalities, so batches are independent: memory is
    bounded by the largest batch instead of growing with the country. Batches follow the
    order of the municipality numbers. `files` is a `staged_file_index` when the caller has one.
    """
    files = files or staged_file_index(settings)
    sizes: dict[str, int] = {}
    for table in ("iplos_services", "epj_service_versions"):
        for path in files[table]:
            kommune = file_owner(path)
            if kommune:
                sizes[kommune] = sizes.get(kommune, 0) + pq.read_metadata(path).num_rows
    configured = sorted(m.nr for m in load_kommuner(settings.config_dir / "kommuner.toml"))
    batches: list[set[str]] = []
    current: set[str] = set()
    filled = 0
    for kommune in configured:
        if current and filled + sizes.get(kommune, 0) > rows_per_batch:
            batches.append(current)
            current, filled = set(), 0
        current.add(kommune)
        filled += sizes.get(kommune, 0)
    if current:
        batches.append(current)
    return batches


def build_timeline(settings: Settings, rows_per_batch: int = BATCH_SERVICE_ROWS) -> TimelineResult:
    """Reconstruct every reporting municipality's episodes, batch by batch; nothing is written here."""
    inputs = staged_inputs(settings)
    batches = plan_batches(settings, rows_per_batch, inputs.files)
    log.info("timeline: %d municipalities in %d batches", sum(len(b) for b in batches), len(batches))
    parts = [_build_batch(settings, batch, inputs) for batch in batches] or [_build_batch(settings, set(), inputs)]

    def combined(name: str, *order: str) -> pl.DataFrame:
        return pl.concat([getattr(p, name) for p in parts], how="vertical_relaxed").sort(*order, nulls_last=True)

    return TimelineResult(
        coverage=combined("coverage", "kommune", "unit", "day"),
        segments=combined("segments", "kommune", "unit", "first_day"),
        gaps=combined("gaps", "kommune", "unit", "first_day"),
        missing=combined("missing", "kommune", "unit", "year"),
        episodes=combined("episodes", "episode_id"),
        stops=combined("stops", "episode_id", "from_date", "stop_id", "source"),
        provider_changes=combined("provider_changes", "episode_id", "change_date"),
        conflicts=combined("conflicts", "kommune", "conflict", "episode_id", "record_id", "detail"),
        linking_rounds=max(p.linking_rounds for p in parts),
    )


def write_timeline(settings: Settings, result: TimelineResult, skip: tuple[str, ...] = ()) -> dict[str, Path]:
    """Write every output of `result` (except those named in `skip`); return all their paths."""
    out = timeline_dir(settings)
    paths = {
        "coverage": out / "coverage.parquet",
        "coverage_segments": out / "coverage_segments.parquet",
        "gaps": out / "gaps.parquet",
        "missing_extracts": out / "missing_extracts.parquet",
        "episodes": out / "episodes.parquet",
        "stops": out / "stops.parquet",
        "provider_changes": out / "provider_changes.parquet",
        "conflicts": out / "conflicts.parquet",
    }
    frames = {
        "coverage": result.coverage, "coverage_segments": result.segments, "gaps": result.gaps,
        "missing_extracts": result.missing, "episodes": result.episodes, "stops": result.stops,
        "provider_changes": result.provider_changes, "conflicts": result.conflicts,
    }
    for name, path in paths.items():
        if name not in skip:
            write_parquet_atomic(frames[name], path)
    return paths


def _built_in_order(settings: Settings, batches: list[set[str]], inputs: StagedInputs, workers: int
                    ) -> Iterator[StreamedBatch]:
    """Each batch's result in batch order, built up to `workers` at a time.

    DuckDB and Polars release the GIL while they work, so threads suffice. Batches are queued up to
    WAITING_RESULTS beyond the running ones, so a worker never idles behind a long batch earlier in
    the order (Oslo alone takes as long as three other batches); at most that many finished results
    wait for the caller, so memory stays bounded when writing is slower than building.
    """
    if workers == 1:
        for batch in batches:
            yield _build_streamed_batch(settings, batch, inputs, 1)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="timeline-batch") as pool:
        pending: deque[Future[StreamedBatch]] = deque()
        queued = iter(batches)
        try:
            for batch in itertools.islice(queued, workers + WAITING_RESULTS):
                pending.append(pool.submit(_build_streamed_batch, settings, batch, inputs, workers))
            while pending:
                result = pending.popleft().result()
                for batch in itertools.islice(queued, 1):
                    pending.append(pool.submit(_build_streamed_batch, settings, batch, inputs, workers))
                yield result
        finally:
            for future in pending:
                future.cancel()


@dataclass(frozen=True)
class TimelineSummary:
    """What `build_and_write_timeline` keeps in memory: the small outputs and counts of the large ones."""
    coverage: pl.DataFrame
    segments: pl.DataFrame
    gaps: pl.DataFrame
    missing: pl.DataFrame
    conflicts: pl.DataFrame
    episode_flags: dict[str, int]
    rows: dict[str, int]
    linking_rounds: int
    paths: dict[str, Path]


# columns whose values rarely repeat: a dictionary page would be built and then given up for plain encoding
NEARLY_UNIQUE_COLUMNS = frozenset({"episode_id", "reporting_id", "person_key", "user_no", "records", "lineage"})


class _ParquetAppender:
    """Parquet files written batch by batch: row groups appended, renamed into place only when complete."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths
        self.rows = dict.fromkeys(paths, 0)
        self._writers: dict[str, pq.ParquetWriter] = {}

    def write(self, name: str, table: pa.Table) -> None:
        writer = self._writers.get(name)
        if writer is None:
            self.paths[name].parent.mkdir(parents=True, exist_ok=True)
            writer = self._writers[name] = pq.ParquetWriter(
                self.paths[name].with_suffix(".parquet.tmp"), table.schema, compression="zstd",
                use_dictionary=[f.name for f in table.schema if f.name not in NEARLY_UNIQUE_COLUMNS])
        writer.write_table(table)
        self.rows[name] += table.num_rows

    def __enter__(self) -> _ParquetAppender:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        for writer in self._writers.values():
            writer.close()
        for name, path in self.paths.items():
            tmp = path.with_suffix(".parquet.tmp")
            if exc_type is None and name in self._writers:
                os.replace(tmp, path)
            else:
                tmp.unlink(missing_ok=True)


def timeline_workers() -> int:
    """Batches built side by side: one per core, at most two (KTT_TIMELINE_WORKERS overrides it)."""
    configured = os.environ.get("KTT_TIMELINE_WORKERS")
    return max(1, int(configured)) if configured else max(1, min(2, os.cpu_count() or 1))


def build_and_write_timeline(settings: Settings, rows_per_batch: int | None = None,
                             workers: int | None = None) -> TimelineSummary:
    """`write_timeline(settings, build_timeline(settings))` with memory bounded by the batches in flight.

    Batches are built `workers` at a time, each on a single-threaded DuckDB connection with its share
    of the memory limit: one DuckDB query on two threads keeps both cores busy only part of the time
    (its single-threaded phases, and the Python between statements, leave one idle), two batches side
    by side keep both busy, and single-threaded plans skip the merge work of parallel aggregates.
    Batches are smaller in proportion (`rows_per_batch` defaults to BATCH_SERVICE_ROWS / workers), so
    the memory in flight stays that of one large batch.

    Each batch's episodes, stops and provider changes are appended to their Parquet files (as row
    groups) as soon as the batch is done, so the country's episodes (with their record and lineage
    lists) are never held in memory at once, and no pass over part files is left for the end.
    Batches follow municipality order and every sort order of these tables starts with the episode
    id (municipality first), so the batches, each sorted, append the same rows in the same order as
    `write_timeline` writes.
    """
    workers = workers or timeline_workers()
    rows_per_batch = rows_per_batch or BATCH_SERVICE_ROWS // workers
    inputs = staged_inputs(settings)
    batches = plan_batches(settings, rows_per_batch, inputs.files) or [set()]
    log.info("timeline: %d municipalities in %d batches, %d at a time",
             sum(len(b) for b in batches), len(batches), workers)
    small: list[TimelineResult] = []
    flags: dict[str, int] = {}
    with _ParquetAppender({name: timeline_dir(settings) / f"{name}.parquet" for name in STREAMED}) as appender:
        for part in _built_in_order(settings, batches, inputs, workers):
            for name, table in part.tables.items():
                appender.write(name, table)
            flag_columns = pl.from_arrow(part.tables["episodes"].select(list(EPISODE_FLAG_COLUMNS)))
            for flag, count in episode_flag_counts(flag_columns).items():
                flags[flag] = flags.get(flag, 0) + count
            small.append(part.small)
            del part
        rows = appender.rows
    combined = TimelineResult(
        coverage=pl.concat([p.coverage for p in small], how="vertical_relaxed").sort(
            "kommune", "unit", "day", nulls_last=True),
        segments=pl.concat([p.segments for p in small], how="vertical_relaxed").sort(
            "kommune", "unit", "first_day", nulls_last=True),
        gaps=pl.concat([p.gaps for p in small], how="vertical_relaxed").sort(
            "kommune", "unit", "first_day", nulls_last=True),
        missing=pl.concat([p.missing for p in small], how="vertical_relaxed").sort(
            "kommune", "unit", "year", nulls_last=True),
        episodes=pl.DataFrame(), stops=pl.DataFrame(), provider_changes=pl.DataFrame(),
        conflicts=pl.concat([p.conflicts for p in small], how="vertical_relaxed").sort(
            "kommune", "conflict", "episode_id", "record_id", "detail", nulls_last=True),
        linking_rounds=max(p.linking_rounds for p in small),
    )
    paths = write_timeline(settings, combined, skip=tuple(STREAMED))
    rows["conflicts"] = combined.conflicts.height
    return TimelineSummary(combined.coverage, combined.segments, combined.gaps, combined.missing,
                           combined.conflicts, flags, rows, combined.linking_rounds, paths)
