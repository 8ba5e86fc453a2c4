"""Record conservation: per source file, records in = staged + quarantined (+ unchanged, for snapshot dumps).

The staged and quarantined counts are taken from the Parquet actually written,
not from the readers' own counters, so a reader that drops a record or stages it
twice is caught: read from the files, or taken by the sink from the very frames it
wrote to them (`written_counts`) and bound to each file's name, size and time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import polars as pl

from transforms.core import duck
from transforms.core.atomic import replacing
from transforms.core.duck import sql_list
from transforms.core.layout import DataRoot
from transforms.core.settings import Settings
from transforms.tables import (
    EPJ_PERSONS,
    EPJ_SERVICE_VERSIONS,
    EPJ_STOPS,
    FILE_COUNTS,
    IPLOS_ASSESSMENTS,
    IPLOS_DIAGNOSES,
    IPLOS_PERSONS,
    IPLOS_SERVICES,
    IPLOS_STOPS,
    IPLOS_TABLES,
    QUARANTINE,
    Table,
)
from transforms.tables.model import source_slug

# record kind -> (staged table, what counts as one record)
KIND_TABLES: dict[str, list[tuple[Table, str]]] = {
    "person": [(IPLOS_PERSONS, "count(*)"), (EPJ_PERSONS, "count(*)")],
    "service": [(IPLOS_SERVICES, "count(*)"), (EPJ_SERVICE_VERSIONS, "count(*)")],
    "stop": [(IPLOS_STOPS, "count(*)"), (EPJ_STOPS, "count(*)")],
    # one assessment element gives one row per scored variable
    "assessment": [(IPLOS_ASSESSMENTS, "count(DISTINCT location)")],
    "diagnosis": [(IPLOS_DIAGNOSES, "count(*)")],
}


# (what is counted, a source file's group of Parquet files) -> (their names, sizes and times, counted rows)
_COUNTED: dict[tuple[str, str], tuple[tuple, list[tuple]]] = {}
_PART_NUMBER = r"-[0-9]+\.parquet$"  # a staged part's number: its file without it names the source file's group
# the counts of the last check, kept beside the staged tables (not `.parquet`: no stage takes it for one of them)
COUNTS_FILE = "conservation_counts.arrow"
_IPLOS_SLUG = source_slug("raw/iplos/")  # the start of a yearly extract's per-file parts' names
_REMEMBERED = [False]  # counts handed over by the sinks (`remember`) that no record in a data root holds yet


def _group(path: Path) -> str:
    """The group of a Parquet file: its source file's parts of one table share it."""
    return re.sub(_PART_NUMBER, "", str(path))


def _stamp(paths: list[Path]) -> tuple:
    """What shows that a group's files are still the ones counted: their names, sizes and modification times."""
    stats = [(path, path.stat()) for path in paths]
    return tuple((path.name, st.st_size, st.st_mtime_ns) for path, st in stats)


def staged_part_rows(table: Table, frame: pl.DataFrame) -> pl.DataFrame:
    """What the count of a staged table's part needs of its rows (kept by the sink until the file is published):
    the rows per source file, or, for a distinct measure, the values counted."""
    if any("DISTINCT" in measure for t, measure in _measures(table)):
        return frame.select("source_file", "location")
    sources = frame["source_file"]
    if sources.null_count() == 0 and (sources == sources[0]).all():  # as a sink stages: one source file
        return pl.DataFrame({"source_file": [sources[0]], "len": [frame.height]}, schema_overrides={"len": pl.UInt32})
    return frame.group_by("source_file", maintain_order=True).len()


def written_counts(table: Table, parts: list[Path], rows: list[pl.DataFrame]) -> dict[tuple[str, str], tuple]:
    """The counts a check would take of one source file's published `parts` of `table`, from `rows` (per part,
    `staged_part_rows` of the frame written to it).

    Why: a national ingestion publishes some 27,000 Parquet files, and its two conservation checks read them all
    again in the main process, one after the other (12 s while the workers' cores stood idle). The sink knows
    every row it wrote; taken per file as it is published, in the workers, these are the same counts, and a
    file's name, size and time show later that it is still the file they were taken of (as for a count read
    from the file)."""
    entries = {}
    for kind, measure in _measures(table):
        if "DISTINCT" in measure:
            found = (pl.concat(rows).group_by("source_file", maintain_order=True)
                     .agg(pl.col("location").drop_nulls().n_unique()).iter_rows())
            counted = [(source, kind, n) for source, n in found]
        else:
            counted = [(source, kind, n) for frame in rows for source, n in frame.iter_rows()]
        entries[(f"{table.name}:{measure}", _group(parts[0]))] = (_stamp(parts), counted)
    return entries


def written_quarantine_counts(path: Path, frame: pl.DataFrame) -> dict[tuple[str, str], tuple]:
    """`written_counts` of a source file's quarantine file, whose rows are `frame`."""
    found = frame.group_by("source_file", "record_kind", maintain_order=True).len().iter_rows() if frame.height else []
    return {(QUARANTINE.name, _group(path)): (_stamp([path]), [tuple(row) for row in found])}


def written_file_counts(path: Path, frame: pl.DataFrame) -> dict[tuple[str, str], tuple]:
    """`written_counts` of a source file's `FILE_COUNTS` file, whose rows are `frame`."""
    found = list(zip(*(frame[name].to_list() for name in ("source_file", "record_kind", "records_in", "unchanged")),
                     strict=True))
    if len({row[:2] for row in found}) < len(found):  # a sink writes one row per kind: summed only otherwise
        found = (frame.group_by("source_file", "record_kind", maintain_order=True)
                 .agg(pl.col("records_in").sum(), pl.col("unchanged").sum()).iter_rows())
    return {(FILE_COUNTS.name, _group(path)): (_stamp([path]), [tuple(row) for row in found])}


def remember(entries: dict[tuple[str, str], tuple]) -> None:
    """Take counts the sinks took of what they published (`written_counts`), as if this process had counted them."""
    if entries:
        _COUNTED.update(entries)
        _REMEMBERED[0] = True


def _measures(table: Table) -> list[tuple[str, str]]:
    return [(kind, measure) for kind, tables in KIND_TABLES.items() for t, measure in tables if t is table]


class _Counts:
    """The counts `_counted` takes, and which of them it used and added; kept in the data root between runs.

    Why: a run with nothing new to stage still checks conservation, which read the 27,000 Parquet files of a
    national root again (10 s of the schedule's 90). A source file's counts change only when one of its
    Parquet files is rewritten, which its name, size and modification time show (the check's own test of a
    file, as `make` trusts), so a later process takes the recorded counts of files still as recorded and
    reads the rest. A missing or unreadable record only means counting again."""

    def __init__(self, root: DataRoot):
        self.path, self.prefix = root.staging / COUNTS_FILE, f"{root.path}/"
        self.used: set[tuple[str, str]] = set()
        self.recorded: set[tuple[str, str]] = set()  # the keys the record held
        self.added = False
        try:
            frame = pl.read_ipc(self.path, memory_map=False)
        except (OSError, pl.exceptions.PolarsError):
            return
        for what, group, stamp, rows in frame.iter_rows():
            key = (what, self.prefix + group)
            self.recorded.add(key)
            if key not in _COUNTED:  # this process's own count is the newer
                _COUNTED[key] = (tuple(map(tuple, json.loads(stamp))), [tuple(r) for r in json.loads(rows)])

    def save(self, whole: bool = True) -> None:
        """Write the counts used in this check when any was new. A check of every source file (`whole`) forgets
        a removed source file's counts; a check of one kind of source keeps the other kind's as recorded."""
        if not self.added and not _REMEMBERED[0] and self.path.exists():
            return
        _REMEMBERED[0] = False
        n = len(self.prefix)
        kept = self.used if whole else self.used | self.recorded
        rows = [(what, group[n:], json.dumps(_COUNTED[(what, group)][0]), json.dumps(_COUNTED[(what, group)][1]))
                for what, group in sorted(kept) if group.startswith(self.prefix)]
        frame = pl.DataFrame(rows, schema={"what": pl.String, "group": pl.String, "stamp": pl.String,
                                           "rows": pl.String}, orient="row")
        if self.path.parent.is_dir():
            with replacing(self.path) as temporary:
                frame.write_ipc(temporary, compression="zstd")


def _counted(con: duckdb.DuckDBPyConnection, counts: _Counts, what: str, files: list[Path], select: str,
             per_file: bool = True) -> list[tuple]:
    """Rows of `select` (grouped by source file) over `files`, each source file's Parquet files read again only
    when one of them changed since it was last counted (in this process or, through `counts`, an earlier
    one): an ingestion's asset checks and summary count the same thousands of files several times, and a
    file's count changes only when it is rewritten.
    `per_file`: the measures are counts and sums, which come per Parquet file (a source file's parts give a
    row each; `conservation_table` adds them up), so that the group's name is made once per file, not once
    per row read (a third of the scan); a distinct count is taken over the group's files together."""
    groups: dict[str, list[Path]] = {}
    for path in files:
        groups.setdefault(_group(path), []).append(path)
    stamps = {group: _stamp(paths) for group, paths in groups.items()}
    stale = [g for g in groups if _COUNTED.get((what, g), (None,))[0] != stamps[g]]
    if stale:
        found: dict[str, list[tuple]] = {g: [] for g in stale}
        paths = [p for g in stale for p in groups[g]]
        scan = f"read_parquet({sql_list(paths)}, filename = true, union_by_name = true)"
        if per_file:
            query = (f"SELECT regexp_replace(filename, '{_PART_NUMBER}', '') AS grp, * EXCLUDE (filename) "
                     f"FROM (SELECT filename, {select} FROM {scan} GROUP BY ALL)")
        else:
            query = f"SELECT regexp_replace(filename, '{_PART_NUMBER}', '') AS grp, {select} FROM {scan} GROUP BY ALL"
        for row in con.sql(query).fetchall():
            found[row[0]].append(row[1:])
        for group in stale:
            _COUNTED[(what, group)] = (stamps[group], found[group])
        counts.added = True
    counts.used.update((what, g) for g in groups)
    return [row for g in groups for row in _COUNTED[(what, g)][1]]


def _staged_select(kind: str, measure: str) -> str:
    return f"source_file, '{kind}' AS record_kind, {measure} AS n"


_QUARANTINED_SELECT = "source_file, record_kind, count(*) AS n"
_COUNTS_SELECT = "source_file, record_kind, sum(records_in)::BIGINT AS records_in, sum(unchanged)::BIGINT AS unchanged"


def conservation_table(settings: Settings, source: str | None = None) -> pl.DataFrame:
    """One row per (source file, record kind) with records_in, staged, quarantined and `balanced`.

    `source`: only the yearly extracts ("iplos": the files under `raw/iplos/`) or only the EPJ exports ("epj":
    every other source file), with their tables. Each ingestion asset checks its own kind; the EPJ exports'
    check listed and stamped the yearly extracts' 24,000 files again (some 1.5 s of a national ingestion, the
    workers' cores idle)."""
    if source not in (None, "iplos", "epj"):
        raise ValueError(f"source must be 'iplos' or 'epj', not {source!r}")

    def mine(path: Path) -> bool:
        return source is None or path.name.startswith(_IPLOS_SLUG) == (source == "iplos")

    def ours(table: Table) -> bool:
        return source is None or (table in IPLOS_TABLES) == (source == "iplos")

    counts_files = [path for path in settings.root.files(FILE_COUNTS) if mine(path)]
    if not counts_files:
        return pl.DataFrame(schema={"source_file": pl.Utf8, "record_kind": pl.Utf8, "records_in": pl.Int64,
                                    "staged": pl.Int64, "quarantined": pl.Int64, "unchanged": pl.Int64,
                                    "balanced": pl.Boolean})
    key = ["source_file", "record_kind"]
    counts = _Counts(settings.root)
    with duck.connect() as con:
        staged: list[tuple] = []
        for kind, tables in KIND_TABLES.items():
            for table, measure in (entry for entry in tables if ours(entry[0])):
                staged += _counted(con, counts, f"{table.name}:{measure}", settings.root.files(table),
                                   _staged_select(kind, measure), per_file="DISTINCT" not in measure)
        quarantined = _counted(con, counts, QUARANTINE.name,
                               [path for path in settings.root.files(QUARANTINE) if mine(path)], _QUARANTINED_SELECT)
        counted = _counted(con, counts, FILE_COUNTS.name, counts_files, _COUNTS_SELECT)
        counts.save(whole=source is None)
        con.register("staged_rows", _frame(staged, [*key, "n"]))
        con.register("quarantined_rows", _frame(quarantined, [*key, "n"]))
        con.register("counted_rows", _frame(counted, [*key, "records_in", "unchanged"]))
        frame = con.sql("""
            WITH counted AS (
                SELECT source_file, record_kind, sum(records_in) AS records_in, sum(unchanged) AS unchanged
                FROM counted_rows GROUP BY ALL
            ), staged AS (
                SELECT source_file, record_kind, sum(n) AS n FROM staged_rows GROUP BY ALL
            ), quarantined AS (
                SELECT source_file, record_kind, sum(n) AS n FROM quarantined_rows GROUP BY ALL
            )
            SELECT
                coalesce(c.source_file, s.source_file, q.source_file) AS source_file,
                coalesce(c.record_kind, s.record_kind, q.record_kind) AS record_kind,
                coalesce(c.records_in, 0)::BIGINT AS records_in,
                coalesce(s.n, 0)::BIGINT AS staged,
                coalesce(q.n, 0)::BIGINT AS quarantined,
                coalesce(c.unchanged, 0)::BIGINT AS unchanged
            FROM counted c
            FULL JOIN staged s ON s.source_file = c.source_file AND s.record_kind = c.record_kind
            FULL JOIN quarantined q
                ON q.source_file = coalesce(c.source_file, s.source_file)
                AND q.record_kind = coalesce(c.record_kind, s.record_kind)
            ORDER BY 1, 2
        """).pl()
    return frame.with_columns(
        balanced=pl.col("records_in") == pl.col("staged") + pl.col("quarantined") + pl.col("unchanged"))


def _frame(rows: list[tuple], names: list[str]) -> pl.DataFrame:
    schema = {n: pl.Utf8 if n in ("source_file", "record_kind") else pl.Int64 for n in names}
    return pl.DataFrame(rows, schema=schema, orient="row")


def quarantine_frame(settings: Settings) -> pl.DataFrame:
    files = settings.root.files(QUARANTINE)
    if not files:
        return QUARANTINE.empty()
    return quarantine_rows(files)


# a quarantine file's path -> (its size and time, its rows)
_QUARANTINE_ROWS: dict[str, tuple[tuple[int, int], pl.DataFrame]] = {}


def quarantine_rows(files: list[Path]) -> pl.DataFrame:
    """The rows of the quarantine `files`, in their order; a file is read again only when its size or time
    changed since it was read in this process. An ingestion's asset metadata, charts and summary read the
    same thousands of files (one per source file, most of them empty) five times."""
    stamps = {}
    for path in files:
        st = path.stat()
        stamps[str(path)] = (st.st_size, st.st_mtime_ns)
    stale = [path for path in files if _QUARANTINE_ROWS.get(str(path), (None,))[0] != stamps[str(path)]]
    if stale:
        read = pl.read_parquet(stale, include_file_paths="_file")
        by_file = read.partition_by("_file", as_dict=True, include_key=False) if read.height else {}
        empty = read.drop("_file").head(0)
        for path in stale:
            _QUARANTINE_ROWS[str(path)] = (stamps[str(path)], by_file.get((str(path),), empty))
    return pl.concat([_QUARANTINE_ROWS[str(path)][1] for path in files])
