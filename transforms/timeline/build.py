"""Build the timeline outputs from staged Parquet: coverage, episodes, stops, providers, conflicts."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import logging
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms.core import duck
from transforms.core.atomic import replacing, write_parquet
from transforms.core.config import load_kommuner
from transforms.core.layout import files_under
from transforms.core.settings import Settings
from transforms.core.stamps import Stamp
from transforms.reference.municipalities import municipality_codes, unit_succession
from transforms.tables import (
    COMBINED_TABLES,
    CONFLICTS,
    COVERAGE,
    COVERAGE_SEGMENTS,
    EPISODE_STOPS,
    EPISODES,
    EPJ_SERVICE_VERSIONS,
    GAPS,
    IPLOS_SERVICES,
    MISSING_EXTRACTS,
    MUNICIPALITY_CODES,
    PROVIDER_CHANGES,
    SPLIT_ASSIGNMENTS,
    STREAMED_TABLES,
    Table,
)
from transforms.tables.timeline import RECONSTRUCTION_INPUTS
from transforms.timeline import override_sql
from transforms.timeline.as_of import as_of_digests, latest_dates, trailing_coverage
from transforms.timeline.checks import EPISODE_FLAG_COLUMNS, episode_flag_counts
from transforms.timeline.coverage import (
    as_of_date,
    build_coverage,
    epj_system_frame,
    extract_evidence,
    missing_extracts,
    staged_extracts,
)
from transforms.timeline.episodes import (
    CONFLICTS_SQL,
    EPISODES_OUT_SQL,
    EPISODES_SQL,
    PROVIDERS_SQL,
    STOPS_SQL,
    check_record_count,
)
from transforms.timeline.linking import link_records
from transforms.timeline.override_sql import BatchOverrides
from transforms.timeline.overrides import Override, StaleOverride, load_overrides
from transforms.timeline.partial import (
    AS_OF,
    AS_OF_DATE,
    BASE,
    MUNICIPALITIES,
    OUTPUTS,
    ROUNDS,
    KeptRows,
    changed_municipalities,
    family_of,
    files_by_owner,
    kept_frame,
    municipality_digests,
    output_digests,
    timeline_stamp_of,
    without_as_of,
)
from transforms.timeline.records import PERSONS_SQL, RECORD_ROWS_SQL, RECORDS_FROM_ROWS_SQL
from transforms.timeline.splits import (
    SPLIT_EPISODES_SQL,
    SPLIT_RECORD_ROWS_SQL,
    SPLIT_RECORDS_FROM_ROWS_SQL,
    SPLIT_STOPS_SQL,
    SplitAssignments,
    assign_splits,
    register_batch_lookups,
)
from transforms.timeline.sql import run_script
from transforms.timeline.staged import file_owner, register_staged, shared_file_owners, staged_file_index

log = logging.getLogger(__name__)

# the staged tables the reconstruction reads (the municipality numbers are registered from the package)
TIMELINE_INPUTS = tuple(name for name in RECONSTRUCTION_INPUTS if name != MUNICIPALITY_CODES.name)
# staged service rows per batch: about 1-2 GiB of DuckDB working memory
BATCH_SERVICE_ROWS = 1_000_000
# DuckDB's share of the process: it spills beyond this instead of growing the process past ~4 GiB
# (KTT_DUCKDB_MEMORY_LIMIT overrides it); batches built side by side share it
TIMELINE_MEMORY_LIMIT_MB = 3000
TIMELINE_MEMORY_LIMIT = f"{TIMELINE_MEMORY_LIMIT_MB}MB"
# finished batches that may wait for the writer while later ones are built: their Arrow outputs, some
# 50-200 MB each at national scale
WAITING_RESULTS = 4


@dataclass(frozen=True)
class BatchResult:
    """The small outputs of one batch (the large ones stay on its connection until written)."""
    tables: dict[Table, pl.DataFrame]  # COMBINED_TABLES but the split assignments (decided once per build)
    linking_rounds: int


@dataclass(frozen=True)
class StagedInputs:
    """What every batch reads about the staging tree (listed once per build instead of once per batch), the
    split units' records decided once for all batches, and the analysts' overrides (`config/overrides.toml`)."""
    files: dict[str, list[Path]]
    extracts: pl.DataFrame
    shared: dict[str, frozenset[str]]  # `shared_file_owners`
    splits: SplitAssignments
    overrides: tuple[Override, ...] = ()

    def overrides_of(self, kommuner: set[str] | None) -> list[Override]:
        return [o for o in self.overrides if kommuner is None or o.kommune in kommuner]


def staged_inputs(settings: Settings) -> StagedInputs:
    overrides = load_overrides(settings.root.overrides_toml)
    configured = {m.nr for m in load_kommuner(settings.root.kommuner_toml)}
    foreign = [o for o in overrides if o.kommune not in configured]
    if foreign:
        raise StaleOverride("config/overrides.toml: " + "; ".join(
            f"override {o.id} ({o.kind}) matches nothing any more: kommune {o.kommune} is not configured"
            for o in foreign))
    files, shared = staged_file_index(settings), shared_file_owners(settings)
    return StagedInputs(files, staged_extracts(settings), shared, assign_splits(settings, files, shared), overrides)


# the large outputs, written batch by batch, and the batch's table that holds each. Each table's sort order is
# unique (no ties), so a sort in DuckDB and one in Polars give the same rows in the same order
STREAMED_SOURCES = {EPISODES: "episodes_out", EPISODE_STOPS: "episode_stops", PROVIDER_CHANGES: "provider_changes"}
EPISODES_SELECT = f"SELECT {', '.join(EPISODES.column_names)} FROM episodes_out"


def _sorted_output(con: duckdb.DuckDBPyConnection, table: Table) -> pa.Table:
    """A large output of the batch in its sort order, as Arrow.

    Episodes carry their record and lineage lists, which make a sort of their rows costly: `episodes` is
    written in episode_id order, and the joins that add the lists keep that order when run on one thread.
    The order is checked, and the rows are sorted here only when a plan did not keep it.
    """
    if table is not EPISODES:
        by = ", ".join(f"{column} NULLS LAST" for column in table.sort)
        return _arrow_table(con.execute(f"SELECT * FROM {STREAMED_SOURCES[table]} ORDER BY {by}"))
    table = _arrow_table(con.execute(EPISODES_SELECT))
    ids = table.column("episode_id")
    if len(ids) > 1 and not pc.all(pc.less(ids.slice(0, len(ids) - 1), ids.slice(1)), skip_nulls=False).as_py():
        table = table.take(pc.sort_indices(table, [("episode_id", "ascending")]))
    return table


@contextlib.contextmanager
def _reconstructed(settings: Settings, kommuner: set[str] | None, inputs: StagedInputs, workers: int
                   ) -> Iterator[tuple[duckdb.DuckDBPyConnection, BatchResult]]:
    """A connection holding every timeline table of `kommuner` (all when None), and the small outputs.

    With `workers` batches built side by side, each connection gets one thread and its share of the
    memory limit. Episodes, stops and provider changes stay on the connection for the caller to read.
    """
    as_of = as_of_date(settings)
    memory = f"{TIMELINE_MEMORY_LIMIT_MB // workers}MB"
    with_splits, received = _split_units_received(settings, kommuner, inputs)
    with duck.connect(memory_limit=memory, threads=1 if workers > 1 else None) as con:
        # every statement over the staged views binds their files again; their footers are read once
        con.execute("SET parquet_metadata_cache = true")
        register_staged(con, settings, kommuner, inputs.files, TIMELINE_INPUTS, inputs.shared)
        con.register(MUNICIPALITY_CODES.name, municipality_codes().to_arrow())
        con.register("unit_succession", unit_succession(settings.cutoff_date.year, as_of.year).to_arrow())
        con.register("epj_systems", epj_system_frame(settings, kommuner).to_arrow())
        coverage, segments = build_coverage(settings, con, kommuner, inputs.extracts, received)
        con.register("extract_evidence", extract_evidence(coverage).to_arrow())
        overrides = BatchOverrides(con, inputs.overrides_of(kommuner), segments.filter(pl.col("source") == "gap"))
        run_script(con, PERSONS_SQL)
        if with_splits:
            register_batch_lookups(con, inputs.splits, _members(settings, kommuner))
        run_script(con, SPLIT_RECORD_ROWS_SQL if with_splits else RECORD_ROWS_SQL)
        overrides.run(override_sql.ROWS_SQL)
        run_script(con, SPLIT_RECORDS_FROM_ROWS_SQL if with_splits else RECORDS_FROM_ROWS_SQL)
        check_record_count(con.execute("SELECT count(*) FROM resolved_records").fetchone()[0])
        rounds = link_records(con, settings.tolerances.iplos36_start_days, settings.tolerances.switch_window_days,
                              edit_edges=lambda: overrides.run(override_sql.EDGES_SQL))
        # the overrides' stages between the reconstruction's: dates, conflicts, lineage (each only with overrides)
        for script, after in ((SPLIT_EPISODES_SQL if with_splits else EPISODES_SQL, override_sql.DATES_SQL),
                              (CONFLICTS_SQL, override_sql.CONFLICTS_SQL),
                              (EPISODES_OUT_SQL, override_sql.LINEAGE_SQL),
                              (SPLIT_STOPS_SQL if with_splits else STOPS_SQL, None), (PROVIDERS_SQL, None)):
            run_script(con, script, {"as_of": as_of})
            if after:
                overrides.run(after)
        overrides.check_stale()
        small = {**_coverage_outputs(settings, kommuner, inputs, (coverage, segments), received),
                 CONFLICTS: con.execute("SELECT * FROM conflicts_out").pl()}
        yield con, BatchResult(small, rounds)


def _members(settings: Settings, kommuner: set[str] | None) -> set[str]:
    return kommuner if kommuner is not None else {m.nr for m in load_kommuner(settings.root.kommuner_toml)}


def _split_units_received(settings: Settings, kommuner: set[str] | None, inputs: StagedInputs
                          ) -> tuple[bool, pl.DataFrame | None]:
    """Whether `kommuner` (all when None) hold a successor of a split unit, and the split units they received
    records of (`SplitAssignments.received`: their coverage counts those units' days)."""
    members = _members(settings, kommuner)
    # a batch holds split units' files only when it holds a successor of a split (`shared_file_owners`)
    with_splits = not inputs.splits.empty and any(not members.isdisjoint(family) for family in inputs.splits.families())
    return with_splits, inputs.splits.for_batch(members).received if with_splits else None


def timeline_coverage(settings: Settings, inputs: StagedInputs, kommuner: set[str] | None = None
                      ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The coverage and its segments of `kommuner` (all when None) as a build's batches make them."""
    received = _split_units_received(settings, kommuner, inputs)[1]
    return build_coverage(settings, None, kommuner, inputs.extracts, received)


def _coverage_outputs(settings: Settings, kommuner: set[str] | None, inputs: StagedInputs,
                      coverage: tuple[pl.DataFrame, pl.DataFrame], received: pl.DataFrame | None
                      ) -> dict[Table, pl.DataFrame]:
    """The small outputs made from the coverage alone (of `kommuner`, all when None): a kept municipality's
    are made again, since a later as-of date extends them whether or not its episodes change."""
    days, segments = coverage
    return {COVERAGE: days, COVERAGE_SEGMENTS: segments,
            GAPS: segments.filter(pl.col("source") == "gap").drop("source"),
            MISSING_EXTRACTS: missing_extracts(settings, days, kommuner, inputs.extracts, received)}


@dataclass(frozen=True)
class StreamedBatch:
    """One batch: the small outputs, and the large ones sorted, as Arrow."""
    small: BatchResult
    tables: dict[Table, pa.Table]


def _build_streamed_batch(settings: Settings, kommuner: set[str], inputs: StagedInputs, workers: int
                          ) -> StreamedBatch:
    """The batch's large outputs sorted in DuckDB and handed over as Arrow, without a Polars copy."""
    with _reconstructed(settings, kommuner, inputs, workers) as (con, small):
        return StreamedBatch(small, {table: _sorted_output(con, table) for table in STREAMED_TABLES})


def _arrow_table(result: duckdb.DuckDBPyConnection) -> pa.Table:
    """The result as one Arrow table (`to_arrow_table` from DuckDB 1.4, `fetch_arrow_table` before it)."""
    fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
    return fetch()


def plan_batches(settings: Settings, rows_per_batch: int = BATCH_SERVICE_ROWS,
                 files: dict[str, list[Path]] | None = None, only: set[str] | None = None) -> list[set[str]]:
    """Reporting municipalities grouped so each batch holds about `rows_per_batch` staged service rows.

    Episodes never cross reporting municipalities, so batches are independent: memory is
    bounded by the largest batch instead of growing with the country. Batches follow the
    order of the municipality numbers. `files` is a `staged_file_index` when the caller has one.
    `only` plans those municipalities alone (a partial rebuild), each batch a run of consecutive
    ones, so its rows fit between the kept municipalities' in the outputs' order.
    """
    files = files if files is not None else staged_file_index(settings)
    sizes: dict[str, int] = {}
    for table in (IPLOS_SERVICES.name, EPJ_SERVICE_VERSIONS.name):
        for path in files[table]:
            kommune = file_owner(path)
            if kommune and (only is None or kommune in only):
                sizes[kommune] = sizes.get(kommune, 0) + pq.read_metadata(path).num_rows
    configured = sorted(m.nr for m in load_kommuner(settings.root.kommuner_toml))
    batches: list[set[str]] = []
    current: set[str] = set()
    filled = 0
    for kommune in configured:
        if only is not None and kommune not in only:
            if current:
                batches.append(current)
                current, filled = set(), 0
            continue
        if current and filled + sizes.get(kommune, 0) > rows_per_batch:
            batches.append(current)
            current, filled = set(), 0
        current.add(kommune)
        filled += sizes.get(kommune, 0)
    if current:
        batches.append(current)
    return batches


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
    """What a build keeps in memory: the small outputs, and counts of the large ones (read on request)."""
    root: Path
    tables: dict[Table, pl.DataFrame]  # COMBINED_TABLES
    episode_flags: dict[str, int]
    rows: dict[str, int]  # by table name
    linking_rounds: int
    # the municipalities this build reconstructed (all of them but in a partial rebuild, none when kept), and
    # the linking rounds of each one's batch (what the next partial rebuild keeps of them)
    rebuilt: tuple[str, ...] = ()
    rounds: dict[str, int] = field(default_factory=dict)

    @property
    def coverage(self) -> pl.DataFrame:
        return self.tables[COVERAGE]

    @property
    def segments(self) -> pl.DataFrame:
        return self.tables[COVERAGE_SEGMENTS]

    @property
    def gaps(self) -> pl.DataFrame:
        return self.tables[GAPS]

    @property
    def missing(self) -> pl.DataFrame:
        return self.tables[MISSING_EXTRACTS]

    @property
    def conflicts(self) -> pl.DataFrame:
        return self.tables[CONFLICTS]

    @property
    def split_assignments(self) -> pl.DataFrame:
        return self.tables[SPLIT_ASSIGNMENTS]

    def read(self, table: Table) -> pl.DataFrame:
        """A written output (the large ones are not kept in memory)."""
        return self.tables[table] if table in self.tables else pl.read_parquet(table.location(self.root))

    @property
    def episodes(self) -> pl.DataFrame:
        return self.read(EPISODES)

    @property
    def stops(self) -> pl.DataFrame:
        return self.read(EPISODE_STOPS)

    @property
    def provider_changes(self) -> pl.DataFrame:
        return self.read(PROVIDER_CHANGES)


# columns whose values rarely repeat: a dictionary page would be built and then given up for plain encoding
NEARLY_UNIQUE_COLUMNS = frozenset({"episode_id", "reporting_id", "person_key", "user_no", "records", "lineage"})


# rows an output's row group gathers before it is written: kept rows come in pieces cut at the rebuilt
# municipalities, and one row group per piece would splinter the files day after day
ROW_GROUP_ROWS = 100_000


class _ParquetAppender:
    """Parquet files written batch by batch: row groups appended, each file renamed into place only when
    every batch was written (`core.atomic.replacing`)."""

    def __init__(self, root: Path, tables: tuple[Table, ...]) -> None:
        self._stack = contextlib.ExitStack()
        self._temporaries = {t: self._stack.enter_context(replacing(t.location(root), keep_identical=True))
                             for t in tables}
        self.rows = {t.name: 0 for t in tables}
        self._writers: dict[Table, pq.ParquetWriter] = {}
        self._pending: dict[Table, list[pa.Table]] = {t: [] for t in tables}

    def write(self, declared: Table, table: pa.Table) -> None:
        if tuple(table.schema.names) != declared.column_names:
            raise ValueError(f"table {declared.name}: the batch has columns {table.schema.names}, "
                             f"declared {list(declared.column_names)}")
        pending = self._pending[declared]
        pending.append(table)
        self.rows[declared.name] += table.num_rows
        if sum(t.num_rows for t in pending) >= ROW_GROUP_ROWS:
            self._flush(declared)

    def _flush(self, declared: Table) -> None:
        pending = self._pending[declared]
        if not pending:
            return
        writer = self._writers.get(declared)
        if writer is None:
            schema = pending[0].schema
            writer = self._writers[declared] = pq.ParquetWriter(
                self._temporaries[declared], schema, compression="zstd",
                use_dictionary=[f.name for f in schema if f.name not in NEARLY_UNIQUE_COLUMNS])
        writer.write_table(pa.concat_tables([t if t.schema.equals(writer.schema) else t.cast(writer.schema)
                                            for t in pending]))
        pending.clear()

    def __enter__(self) -> _ParquetAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            for declared in self._pending:
                self._flush(declared)
        for writer in self._writers.values():
            writer.close()
        self._stack.__exit__(*exc)


def timeline_workers() -> int:
    """Batches built side by side: one per core, at most two (KTT_TIMELINE_WORKERS overrides it)."""
    configured = os.environ.get("KTT_TIMELINE_WORKERS")
    return max(1, int(configured)) if configured else max(1, min(2, os.cpu_count() or 1))


def build_timeline(settings: Settings, rows_per_batch: int | None = None, workers: int | None = None,
                   inputs: StagedInputs | None = None, rebuild: set[str] | None = None,
                   coverage: tuple[pl.DataFrame, pl.DataFrame] | None = None) -> TimelineSummary:
    """Reconstruct every configured municipality's timeline and write its outputs (`COVERAGE` ...
    `PROVIDER_CHANGES`), with memory bounded by the batches in flight.

    Batches are built `workers` at a time, each on a single-threaded DuckDB connection with its share
    of the memory limit: one DuckDB query on two threads keeps both cores busy only part of the time
    (its single-threaded phases, and the Python between statements, leave one idle), two batches side
    by side keep both busy, and single-threaded plans skip the merge work of parallel aggregates.
    Batches are smaller in proportion (`rows_per_batch` defaults to BATCH_SERVICE_ROWS / workers), so
    the memory in flight stays that of one large batch.

    Each batch's episodes, stops and provider changes are appended to their Parquet files (as row
    groups) as soon as the batch is done, so the country's episodes (with their record and lineage
    lists) are never held in memory at once. Batches follow municipality order and every sort order of
    these tables starts with the episode id (municipality first), so the batches, each sorted, append
    the rows in the table's order whatever the batching; the small outputs are combined at the end.

    `rebuild` reconstructs those municipalities only (`partial`): the others' rows are copied from the
    outputs being replaced, which must be a build of the same inputs for them (`timeline.as_of`: an as-of
    date that changes none of their rows), and their coverage is made again (`coverage`, when the caller has
    the whole `timeline_coverage`).
    """
    workers = workers or timeline_workers()
    rows_per_batch = rows_per_batch or BATCH_SERVICE_ROWS // workers
    inputs = inputs or staged_inputs(settings)
    root = settings.data_root
    configured = {m.nr for m in load_kommuner(settings.root.kommuner_toml)}
    kept = configured - rebuild if rebuild is not None else set()
    batches = plan_batches(settings, rows_per_batch, inputs.files, rebuild) or ([set()] if rebuild is None else [])
    log.info("timeline: %d municipalities in %d batches, %d at a time%s", sum(len(b) for b in batches),
             len(batches), workers, f" ({len(kept)} kept as they were)" if kept else "")
    small: list[BatchResult] = []
    old_small = [BatchResult(_kept_small(settings, kept, inputs, coverage), 0)] if kept else []
    flags: dict[str, int] = {}
    rounds: dict[str, int] = {}
    with _ParquetAppender(root, STREAMED_TABLES) as appender:
        kept_rows = {t: KeptRows(t.location(root), kept) for t in STREAMED_TABLES} if kept else {}

        def write(declared: Table, table: pa.Table) -> None:
            appender.write(declared, table)
            if declared is EPISODES:
                flag_columns = pl.from_arrow(table.select(list(EPISODE_FLAG_COLUMNS)))
                for flag, count in episode_flag_counts(flag_columns).items():
                    flags[flag] = flags.get(flag, 0) + count

        for batch, part in zip(batches, _built_in_order(settings, batches, inputs, workers), strict=True):
            for declared, table in part.tables.items():
                for piece in kept_rows[declared].before(min(batch)) if kept_rows else ():
                    write(declared, piece)
                write(declared, table)
            rounds.update(dict.fromkeys(batch, part.small.linking_rounds))
            small.append(part.small)
            del part
        for declared, rows in kept_rows.items():
            for piece in rows.before(None):
                write(declared, piece)
        row_counts = appender.rows
    combined = write_combined(root, [p.tables for p in (*old_small, *small)], inputs)
    row_counts.update({table.name: frame.height for table, frame in combined.items()})
    return TimelineSummary(root, combined, flags, row_counts, max(p.linking_rounds for p in small) if small else 0,
                           tuple(sorted(set().union(*batches))), rounds)


def write_combined(root: Path, parts: list[dict[Table, pl.DataFrame]], inputs: StagedInputs
                   ) -> dict[Table, pl.DataFrame]:
    """The small outputs, from the batches' parts, written (a file whose bytes come out the same is kept)."""
    combined = {table: _combined(table, [p[table] for p in parts]) if table is not SPLIT_ASSIGNMENTS
                else inputs.splits.listing for table in COMBINED_TABLES}
    for table, frame in combined.items():
        write_parquet(frame, table.location(root), keep_identical=True)
    return combined


def _kept_small(settings: Settings, kept: set[str], inputs: StagedInputs,
                coverage: tuple[pl.DataFrame, pl.DataFrame] | None) -> dict[Table, pl.DataFrame]:
    """The kept municipalities' small outputs: their conflicts as written, their coverage made again."""
    if coverage is None:
        coverage = timeline_coverage(settings, inputs, kept)
    else:
        mine = pl.col("kommune").is_in(sorted(kept))
        coverage = (coverage[0].filter(mine), coverage[1].filter(mine))
    received = _split_units_received(settings, kept, inputs)[1]
    return {**_coverage_outputs(settings, kept, inputs, coverage, received),
            CONFLICTS: kept_frame(CONFLICTS.location(settings.data_root), kept)}


def _as_of_digests(settings: Settings, inputs: StagedInputs, configured: list[str], as_of: dt.date,
                   segments: pl.DataFrame) -> dict[str, str]:
    """`timeline.as_of.as_of_digests` of every configured municipality on the as-of date."""
    files = {name: inputs.files[name] for name in TIMELINE_INPUTS}
    with_overrides = {o.kommune for o in inputs.overrides}
    return as_of_digests(as_of, family_of(settings, inputs.splits.units, configured),
                         files_by_owner(inputs.files, TIMELINE_INPUTS, inputs.shared), latest_dates(files, as_of),
                         trailing_coverage(segments, as_of), with_overrides)


def _combined(table: Table, parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The batches' parts of a small output as one frame of the declared schema, in the table's order."""
    return table.sorted(table.conform(pl.concat(parts, how="vertical_relaxed")))


def staged_parquet(settings: Settings) -> list[Path]:
    """Every staged Parquet file (the tables, file counts and quarantine), what a derived stage's stamp covers."""
    return files_under(settings.root.staging, ".parquet", skip=settings.root.staging_scratch)


def timeline_stamp(settings: Settings) -> tuple[Stamp, str]:
    """The timeline's stamp and the digest of its current inputs: the staged files, the as-of date."""
    stamp = timeline_stamp_of(settings.data_root)
    return stamp, stamp.inputs_digest(settings, staged_parquet(settings), as_of_date(settings))


def _summary_of_files(settings: Settings, figures: dict, rebuilt: tuple[str, ...] = ()) -> TimelineSummary:
    """The summary of outputs already written, from their files and the figures their build recorded."""
    tables = {table: pl.read_parquet(table.location(settings.data_root)) for table in COMBINED_TABLES}
    return TimelineSummary(settings.data_root, tables, figures["episode_flags"], figures["rows"],
                           figures["linking_rounds"], rebuilt, figures.get(ROUNDS, {}))


def build_or_keep_timeline(settings: Settings) -> tuple[TimelineSummary, bool]:
    """`build_timeline`, unless its outputs are those of the current inputs already (`core.stamps`); then
    they are kept and summarised from their files. When only some municipalities' inputs changed since the
    last build (`partial`), only they are rebuilt. Returns the summary (its `rebuilt` names who was
    reconstructed) and whether anything was built."""
    stamp, digest = timeline_stamp(settings)
    figures = stamp.kept(digest)
    if figures is not None:
        return _summary_of_files(settings, figures), False
    inputs = staged_inputs(settings)
    as_of = as_of_date(settings)
    # the as-of date reaches each municipality through `as_of_digests` (and the coverage of all, written again
    # when it moved); its year (units, successors, extracts expected) reaches all of them
    base = stamp.inputs_digest(without_as_of(settings), [], f"as-of year {as_of.year}", "per municipality")
    configured = sorted(m.nr for m in load_kommuner(settings.root.kommuner_toml))
    digests = municipality_digests(settings, inputs.files, TIMELINE_INPUTS, inputs.shared, inputs.extracts,
                                   inputs.splits.units, configured)
    recorded = stamp.recorded_figures()
    # a whole rebuild makes the coverage in its batches: its as-of digests are taken from what it wrote
    whole = changed_municipalities(recorded, base, digests) is None
    coverage = None if whole else timeline_coverage(settings, inputs)
    dated = None if coverage is None else _as_of_digests(settings, inputs, configured, as_of, coverage[1])
    rebuild = None if dated is None else changed_municipalities(recorded, base, digests, AS_OF, dated)
    stamp.forget()
    if rebuild == set():  # what changed is read by no municipality's reconstruction (a quarantine, a count)
        assert recorded is not None
        if recorded.get(AS_OF_DATE) != as_of.isoformat():
            # no municipality's episodes, stops or provider changes can change: the coverage gains the day
            log.info("timeline: as-of date %s changes no municipality's reconstruction (timeline.as_of); "
                     "the coverage is written again", as_of)
            small = write_combined(settings.data_root, [_kept_small(settings, set(configured), inputs, coverage)],
                                   inputs)
            rows = {**recorded["rows"], **{table.name: frame.height for table, frame in small.items()}}
            recorded = {**recorded, "rows": rows, AS_OF_DATE: as_of.isoformat()}
        stamp.record(digest, recorded)
        return _summary_of_files(settings, recorded), False
    result = build_timeline(settings, inputs=inputs, rebuild=rebuild, coverage=coverage)
    if dated is None:
        dated = _as_of_digests(settings, inputs, configured, as_of, result.tables[COVERAGE_SEGMENTS])
    rounds = {**(recorded or {}).get(ROUNDS, {}), **result.rounds} if rebuild is not None else result.rounds
    stamp.record(digest, {"episode_flags": result.episode_flags, "rows": result.rows,
                          "linking_rounds": max(rounds.values(), default=0),
                          BASE: base, MUNICIPALITIES: digests, AS_OF: dated, AS_OF_DATE: as_of.isoformat(),
                          ROUNDS: rounds, OUTPUTS: output_digests(settings.data_root)})
    return dataclasses.replace(result, linking_rounds=max(rounds.values(), default=0), rounds=rounds), True
