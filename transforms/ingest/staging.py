"""Discover the source files of a data root and stage the ones that changed, one file at a time.

Each source file's outputs (staged parts, quarantine, counts, identity part, findings) are named
after the file. A file is read again only when it, or the way it is read, changed since it was
staged (`fingerprints.FileState`); a file removed from `raw/` (or from the configuration) has its
outputs removed. The files of a snapshot series are read in date order in one task, because each
dump is compared with the state the earlier ones left.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from transforms.core.config import EpjSystem, Municipality, load_kommuner
from transforms.core.settings import Settings
from transforms.ingest import conservation
from transforms.ingest import fingerprints as sources
from transforms.ingest.export import read_export_file
from transforms.ingest.mapping import Mapping, load_mapping
from transforms.ingest.parts import matching
from transforms.ingest.readers.base import FileRejected, ReadContext
from transforms.ingest.readers.iplos_xml import SMALL_FILE_BYTES, read_iplos_file, read_small_iplos_files
from transforms.ingest.sink import FileSink
from transforms.ingest.snapshots import dated_dumps, dump_date, stage_dump
from transforms.privacy.identity import Pseudonymizer
from transforms.privacy.keys import Keys
from transforms.tables import (
    EPJ_SERVICE_VERSIONS,
    FILE_COUNTS,
    FINDING_TABLES,
    IDENTITY_PARTS,
    IPLOS_SERVICES,
    QUARANTINE,
    STAGED_TABLES,
)
from transforms.tables.model import source_slug

log = logging.getLogger(__name__)

Reader = Callable[[Path, FileSink, ReadContext], None]

_IPLOS_NAME = re.compile(r"^(\d{4})\.xml$")
SMALL_GROUP_BYTES = 4 << 20  # small yearly extracts read in one task


@dataclass(frozen=True)
class FileOutcome:
    source_file: str
    format: str
    records_in: int
    staged: int
    quarantined: int
    file_rule: str | None  # set when the file was quarantined whole
    state: sources.FileState | None = None  # what was read (None: the file was gone)
    counted: dict = field(default_factory=dict, repr=False)  # its published files' counts (`conservation.remember`)


@dataclass
class IngestReport:
    files: list[FileOutcome] = field(default_factory=list)   # the files read
    unchanged: list[str] = field(default_factory=list)       # files not read: staged as they are
    removed: list[str] = field(default_factory=list)         # files gone since they were staged

    @property
    def records_in(self) -> int:
        return sum(f.records_in for f in self.files)

    @property
    def staged(self) -> int:
        return sum(f.staged for f in self.files)

    @property
    def quarantined(self) -> int:
        return sum(f.quarantined for f in self.files)

    @property
    def files_rejected(self) -> list[FileOutcome]:
        return [f for f in self.files if f.file_rule]

    @property
    def changed_files(self) -> list[str]:
        """Files whose staged rows were replaced or removed by this ingestion."""
        return sorted({f.source_file for f in self.files} | set(self.removed))

    def extend(self, other: IngestReport) -> None:
        self.files.extend(other.files)
        self.unchanged.extend(other.unchanged)
        self.removed.extend(other.removed)


def _sink(settings: Settings, keys: Keys, rel: str, fmt: str, partition: dict[str, str]) -> FileSink:
    return FileSink(root=settings.root, rel_path=rel, fmt=fmt, partition=partition,
                    pseudonymizer=Pseudonymizer(keys.pseudonym_key), vault_key=keys.vault_key)


def _rejection(exc: Exception | None) -> FileRejected | None:
    """A reader's whole-file failure as the file's rejection (an OS error: the file cannot be read)."""
    if exc is None or isinstance(exc, FileRejected):
        return exc
    return FileRejected("file.unreadable", f"cannot read the file: {exc}")


def _read_one(sink: FileSink, path: Path, reader: Reader | None, ctx: ReadContext, reader_fp: str,
              rejection: FileRejected | None = None) -> FileOutcome:
    """Run a reader on one file; a whole-file failure discards its rows and quarantines the file."""
    state = sources.FileState.of(path, reader_fp)
    if rejection is None and reader is not None:
        try:
            reader(path, sink, ctx)
        except (FileRejected, OSError) as exc:
            rejection = _rejection(exc)
    return _finish(sink, state, rejection)


def _finish(sink: FileSink, state: sources.FileState, rejection: FileRejected | None) -> FileOutcome:
    """Publish one file's output: its rows, or (rejected whole) only the file's own quarantine row."""
    if rejection is not None:
        sink.discard()
        sink.seen("file")
        sink.reject("file", rejection.rejection, None, "", f"{sink.rel_path}: {rejection}")
        log.warning("quarantined whole file %s: %s (%s)", sink.rel_path, rejection.rejection.rule_id, rejection)
    sink.commit()
    return FileOutcome(
        source_file=sink.rel_path, format=sink.fmt,
        records_in=sum(sink.records_in.values()), staged=sum(sink.staged.values()),
        quarantined=sum(sink.quarantined.values()),
        file_rule=rejection.rejection.rule_id if rejection is not None else None, state=state,
        counted=sink.counted,
    )


def forget_file(settings: Settings, rel: str, partition: dict[str, str]) -> None:
    """Remove every output of one source file (its staged parts, findings, quarantine, counts, identities)."""
    slug = source_slug(rel)
    for table in (*STAGED_TABLES.values(), *FINDING_TABLES):
        if not set(table.partition_keys) <= {*partition, "source", "part"}:
            continue
        pattern = settings.root.table(table, **partition, source=slug, **({"part": "*"} if "part" in
                                                                         table.partition_keys else {}))
        for stale in matching(pattern):
            stale.unlink()
    for table in (QUARANTINE, FILE_COUNTS, IDENTITY_PARTS):
        settings.root.table(table, source=slug).unlink(missing_ok=True)


def _star(task: tuple) -> list[FileOutcome]:
    function, args = task
    result = function(*args)
    return result if isinstance(result, list) else [result]


def _run_tasks(function: Callable[..., FileOutcome | list[FileOutcome]], tasks: list[tuple],
               sizes: list[int] | None = None) -> list[FileOutcome]:
    """Tasks on `KTT_WORKERS` processes (default: every core); their outcomes in task order.

    With `sizes` (bytes each task reads), the largest are handed out first: the pool's last tasks are then
    short ones, not a 35 MB export started when every other core has finished."""
    workers = min(len(tasks), int(os.environ.get("KTT_WORKERS") or os.cpu_count() or 1))
    if workers <= 1:
        return [o for task in tasks for o in _star((function, task))]
    order = sorted(range(len(tasks)), key=lambda i: -sizes[i]) if sizes else list(range(len(tasks)))
    # spawn, not fork: DuckDB and Polars keep thread pools that a forked child must not inherit
    with _worker_threads(), ProcessPoolExecutor(max_workers=workers,
                                                mp_context=multiprocessing.get_context("spawn")) as pool:
        done = dict(zip(order, pool.map(_star, [(function, tasks[i]) for i in order], chunksize=1), strict=True))
    return [o for i in range(len(tasks)) for o in done[i]]


@contextlib.contextmanager
def _worker_threads() -> Iterator[None]:
    """Workers started in this block run Polars on one thread (unless `POLARS_MAX_THREADS` says otherwise).

    The pool already keeps every core busy with one file each; a worker's own thread pool only added
    hand-overs and idle spinning to its many short operations (national ingestion: ~5% of CPU time)."""
    if "POLARS_MAX_THREADS" in os.environ:
        yield
        return
    os.environ["POLARS_MAX_THREADS"] = "1"  # read by a spawned worker when it imports Polars
    try:
        yield
    finally:
        os.environ.pop("POLARS_MAX_THREADS", None)


def _split(settings: Settings, files: list[Path], readers: dict[str, str], staged: dict[str, sources.FileState]
           ) -> tuple[list[Path], list[str]]:
    """(files to read, files unchanged): a file is read when its size, time or reader differs from the staged."""
    to_read, unchanged = [], []
    for path in files:
        rel = settings.root.relative(path)
        if staged.get(rel) == sources.FileState.of(path, readers[rel]):
            unchanged.append(rel)
        else:
            to_read.append(path)
    return to_read, unchanged


def _record(settings: Settings, report: IngestReport, groups: dict[str, str]) -> None:
    for outcome in report.files:  # the conservation check need not read what the workers just wrote
        conservation.remember(outcome.counted)
    sources.record_files(settings, {o.source_file: o.state for o in report.files if o.state is not None},
                         forgotten=report.removed)
    sources.record_staged(settings, groups)


# --- yearly extracts ----------------------------------------------------------------------------
def _iplos_reader(settings: Settings, keys: Keys, year: int, unit: str) -> str:
    return sources.reader_fingerprint("iplos", year, unit, settings.allow_synthetic_ids,
                                      sources.key_fingerprint(keys.pseudonym_key))


def _unit(path: Path) -> str:
    match = _IPLOS_NAME.match(path.name)
    return match.group(1) if match else "unknown"


def ingest_iplos_year(settings: Settings, keys: Keys, year: int) -> IngestReport:
    """Stage the changed yearly extracts of one data year."""
    return ingest_iplos_years(settings, keys, [year])


def ingest_iplos_years(settings: Settings, keys: Keys, years: list[int]) -> IngestReport:
    """Stage the new and changed yearly extracts of `years` on one pool of workers; forget removed ones."""
    groups = {sources.iplos_group(year): sources.fingerprint(settings, sources.iplos_files(settings, year))
              for year in years}
    staged = sources.staged_files(settings)
    report = IngestReport()
    tasks = []
    for year in years:
        files = sources.iplos_files(settings, year)
        readers = {settings.root.relative(p): _iplos_reader(settings, keys, year, _unit(p)) for p in files}
        to_read, report_unchanged = _split(settings, files, readers, staged)
        report.unchanged += report_unchanged
        prefix = f"raw/iplos/{year}/"
        gone = [rel for rel in staged if rel.startswith(prefix) and rel not in readers]
        for rel in gone:
            forget_file(settings, rel, {"year": str(year), "unit": _unit(Path(rel))})
        report.removed += gone
        if not staged and not report_unchanged:  # nothing known: clear what an older version staged
            shutil.rmtree(IPLOS_SERVICES.partition_folder(settings.data_root, year=year), ignore_errors=True)
        for path in to_read:
            rel = settings.root.relative(path)
            forget_file(settings, rel, {"year": str(year), "unit": _unit(path)})
            tasks.append((settings, keys, year, path, readers[rel]))
    report.files = _run_tasks(_dispatch, _iplos_tasks(tasks))
    _record(settings, report, groups)
    return report


def _iplos_tasks(files: list[tuple]) -> list[tuple]:
    """Large files one task each, largest first (the pool's last task is then a short one); small files in
    groups of about `SMALL_GROUP_BYTES`, read in one task and judged together."""
    sizes = {task[3]: task[3].stat().st_size for task in files}
    large = sorted((t for t in files if sizes[t[3]] > SMALL_FILE_BYTES), key=lambda t: -sizes[t[3]])
    tasks: list[tuple] = [(_iplos_task, task) for task in large]
    group: list[tuple] = []
    for task in (t for t in files if sizes[t[3]] <= SMALL_FILE_BYTES):
        group.append(task)
        if sum(sizes[t[3]] for t in group) >= SMALL_GROUP_BYTES:
            tasks.append((_iplos_group_task, (group,)))
            group = []
    if group:
        tasks.append((_iplos_group_task, (group,)))
    return tasks


def _iplos_file(settings: Settings, keys: Keys, year: int, path: Path
                ) -> tuple[FileSink, ReadContext, FileRejected | None]:
    rel = settings.root.relative(path)
    unit = _unit(path)
    sink = _sink(settings, keys, rel, "iplos", {"year": str(year), "unit": unit})
    ctx = ReadContext(settings.allow_synthetic_ids, year=year, unit=unit)
    named = _IPLOS_NAME.match(path.name)
    return sink, ctx, None if named else FileRejected("file.misfiled", "yearly extracts must be named "
                                                                       "<kommunenummer>.xml")


def _iplos_task(settings: Settings, keys: Keys, year: int, path: Path, reader_fp: str) -> FileOutcome:
    sink, ctx, rejection = _iplos_file(settings, keys, year, path)
    return _read_one(sink, path, read_iplos_file, ctx, reader_fp, rejection)


def _iplos_group_task(files: list[tuple[Settings, Keys, int, Path, str]]) -> list[FileOutcome]:
    """Small yearly extracts read in one task, their batches judged together (`read_small_iplos_files`)."""
    opened = []
    for settings, keys, year, path, reader_fp in files:
        sink, ctx, rejection = _iplos_file(settings, keys, year, path)
        opened.append((path, sink, ctx, sources.FileState.of(path, reader_fp), rejection))
    readable = [(path, sink, ctx) for path, sink, ctx, _, rejection in opened if rejection is None]
    failures = iter(read_small_iplos_files(readable))
    return [_finish(sink, state, rejection if rejection is not None else _rejection(next(failures)))
            for _, sink, _, state, rejection in opened]


# --- EPJ exports --------------------------------------------------------------------------------
def epj_systems(settings: Settings) -> list[tuple[Municipality, EpjSystem]]:
    municipalities = load_kommuner(settings.root.kommuner_toml)
    return [(m, s) for m in municipalities for s in m.epj]


def epj_system_key(municipality: Municipality, system: EpjSystem) -> str:
    """Folder key of a system: ids like `epj_a` repeat between municipalities."""
    return f"{municipality.nr}-{system.system}"


def _epj_reader(settings: Settings, keys: Keys, kommune: str, system: EpjSystem, mapping: Mapping) -> str:
    return sources.reader_fingerprint("epj", mapping.digest, kommune, system.system, settings.allow_synthetic_ids,
                                      sources.key_fingerprint(keys.pseudonym_key))


def _plan_system(settings: Settings, keys: Keys, municipality: Municipality, system: EpjSystem,
                 staged: dict[str, sources.FileState], report: IngestReport) -> tuple[list[tuple], set[str]]:
    """(tasks for the system's files to read, the relative paths it holds)."""
    key = epj_system_key(municipality, system)
    partition = {"system": key}
    folder = settings.root.resolve(system.path)
    mapping = load_mapping(system.mapping, settings.data_root)
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    if not folder.is_dir():
        log.warning("EPJ system %s of %s: export folder %s not found", system.system, municipality.nr, system.path)
    reader = _epj_reader(settings, keys, municipality.nr, system, mapping)
    readers = {settings.root.relative(p): reader for p in files}
    prefix = settings.root.relative(folder) + "/" if folder.is_dir() else f"{system.path.rstrip('/')}/"
    gone = [rel for rel in staged if rel.startswith(prefix) and rel not in readers]
    for rel in gone:
        forget_file(settings, rel, partition)
    report.removed += gone
    to_read, unchanged = _split(settings, files, readers, staged)
    if mapping.history == "snapshot-series":
        dated, undated = dated_dumps(mapping, files)
        order = [p for _, p in dated]
        changed = [i for i, p in enumerate(order) if p in to_read]
        first = min(changed, default=len(order))
        if gone:  # a removed dump changes the state every later dump is compared with
            first = min(first, _first_after(mapping, dated, gone))
        restage = order[first:]
        unchanged = [settings.root.relative(p) for p in order[:first]] + \
                    [u for u in unchanged if settings.root.resolve(u) in undated]
        for path in [*restage, *[p for p in undated if p in to_read]]:
            forget_file(settings, settings.root.relative(path), partition)
        report.unchanged += unchanged
        tasks = [(_series_task, (settings, keys, municipality.nr, system, order[:first], restage, reader))] \
            if restage else []
        tasks += [(_epj_task, (settings, keys, municipality.nr, system, p, reader)) for p in undated if p in to_read]
        return tasks, set(readers)
    report.unchanged += unchanged
    for path in to_read:
        forget_file(settings, settings.root.relative(path), partition)
    return [(_epj_task, (settings, keys, municipality.nr, system, p, reader)) for p in to_read], set(readers)


def _first_after(mapping: Mapping, dated: list, gone: list[str]) -> int:
    """The position of the first dump dated after the earliest removed one (all of them, when a removed
    file's name holds no date)."""
    removed, _ = dated_dumps(mapping, [Path(rel) for rel in gone])
    if not removed:
        return 0
    return next((i for i, (day, _) in enumerate(dated) if day > removed[0][0]), len(dated))


def _epj_task(settings: Settings, keys: Keys, kommune: str, system: EpjSystem, path: Path, reader_fp: str
              ) -> FileOutcome:
    rel = settings.root.relative(path)
    mapping = load_mapping(system.mapping, settings.data_root)
    sink = _sink(settings, keys, rel, mapping.name, {"system": f"{kommune}-{system.system}"})
    ctx = ReadContext(settings.allow_synthetic_ids, system=system.system, reporting_kommune=kommune)
    if mapping.history == "snapshot-series":  # a file whose name holds no dump date
        try:
            dump_date(mapping, path)
        except FileRejected as exc:
            return _read_one(sink, path, None, ctx, reader_fp, exc)
    return _read_one(sink, path, lambda p, s, c: read_export_file(p, s, c, mapping), ctx, reader_fp)


def _series_task(settings: Settings, keys: Keys, kommune: str, system: EpjSystem, earlier: list[Path],
                 restage: list[Path], reader_fp: str) -> list[FileOutcome]:
    """Stage dumps in date order, each compared with the state the dumps before it left."""
    mapping = load_mapping(system.mapping, settings.data_root)
    ctx = ReadContext(settings.allow_synthetic_ids, system=system.system, reporting_kommune=kommune)
    outcomes, done = [], list(earlier)
    for path in restage:
        sink = _sink(settings, keys, settings.root.relative(path), mapping.name,
                     {"system": f"{kommune}-{system.system}"})
        day = dump_date(mapping, path)
        outcomes.append(_read_one(sink, path, lambda p, s, c, day=day, before=list(done):
                                  stage_dump(p, day, before, mapping, s, c), ctx, reader_fp))
        done.append(path)
    return outcomes


def ingest_epj(settings: Settings, keys: Keys) -> IngestReport:
    """Stage the new and changed files of every configured EPJ export; forget removed files and systems."""
    groups = {sources.EPJ_GROUP: sources.fingerprint(settings, sources.epj_files(settings))}
    staged = sources.staged_files(settings)
    report = IngestReport()
    tasks, held = [], set()
    systems = epj_systems(settings)
    for municipality, system in systems:
        system_tasks, files = _plan_system(settings, keys, municipality, system, staged, report)
        tasks += system_tasks
        held |= files
    orphans = [rel for rel in staged if rel.startswith("raw/") and not rel.startswith("raw/iplos/")
               and rel not in held and rel not in report.removed]
    report.removed += orphans
    configured = {f"system={epj_system_key(m, s)}" for m, s in systems}
    epj_folder = EPJ_SERVICE_VERSIONS.folder(settings.data_root)
    if epj_folder.is_dir():
        for folder in epj_folder.iterdir():
            if folder.is_dir() and folder.name not in configured:
                shutil.rmtree(folder, ignore_errors=True)
    for rel in orphans:
        forget_file(settings, rel, {"system": "*"})
    report.files = _run_tasks(_dispatch, tasks, [_task_bytes(task) for task in tasks])
    _record(settings, report, groups)
    return report


def _task_bytes(task: tuple) -> int:
    """What an EPJ task reads: its file, or a snapshot series' dumps to stage."""
    function, args = task
    paths = args[5] if function is _series_task else [args[4]]
    return sum(path.stat().st_size for path in paths if path.exists())


def _dispatch(function: Callable, args: tuple) -> FileOutcome | list[FileOutcome]:
    return function(*args)
