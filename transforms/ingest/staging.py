"""Discover the source files of a data root and stage them, one file at a time.

Each source file's outputs (staged parts, quarantine, counts, identity part) are
named after the file, so re-ingesting replaces them and a file removed from
`raw/` disappears from staging when its year or system is ingested again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from transforms.core.config import EpjSystem, Municipality, load_kommuner
from transforms.core.settings import Settings
from transforms.ingest import fingerprints as sources
from transforms.ingest.export import read_export_file
from transforms.ingest.mapping import load_mapping
from transforms.ingest.readers.base import FileRejected, ReadContext
from transforms.ingest.readers.iplos_xml import read_iplos_file
from transforms.ingest.sink import FileSink
from transforms.privacy.identity import Pseudonymizer
from transforms.privacy.keys import Keys
from transforms.tables import EPJ_SERVICE_VERSIONS, FILE_COUNTS, IDENTITY_PARTS, IPLOS_SERVICES, QUARANTINE
from transforms.tables.model import source_slug

log = logging.getLogger(__name__)

Reader = Callable[[Path, FileSink, ReadContext], None]

_IPLOS_NAME = re.compile(r"^(\d{4})\.xml$")


@dataclass(frozen=True)
class FileOutcome:
    source_file: str
    format: str
    records_in: int
    staged: int
    quarantined: int
    file_rule: str | None  # set when the file was quarantined whole


@dataclass
class IngestReport:
    files: list[FileOutcome] = field(default_factory=list)

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

    def extend(self, other: IngestReport) -> None:
        self.files.extend(other.files)


def _sink(settings: Settings, keys: Keys, rel: str, fmt: str, partition: dict[str, str]) -> FileSink:
    return FileSink(root=settings.root, rel_path=rel, fmt=fmt, partition=partition,
                    pseudonymizer=Pseudonymizer(keys.pseudonym_key), vault_key=keys.vault_key)


def _read_one(sink: FileSink, path: Path, reader: Reader | None, ctx: ReadContext,
              rejection: FileRejected | None = None) -> FileOutcome:
    """Run a reader on one file; a whole-file failure discards its rows and quarantines the file."""
    if rejection is None and reader is not None:
        try:
            reader(path, sink, ctx)
        except FileRejected as exc:
            rejection = exc
        except OSError as exc:
            rejection = FileRejected("file.unreadable", f"cannot read the file: {exc}")
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
        file_rule=rejection.rejection.rule_id if rejection is not None else None,
    )


def _forget_outputs(settings: Settings, slug_prefix: str) -> None:
    """The per-file outputs (quarantine, counts, identity parts) of every file whose slug starts so."""
    for table in (QUARANTINE, FILE_COUNTS, IDENTITY_PARTS):
        pattern = settings.root.table(table, source=f"{slug_prefix}*")
        for stale in pattern.parent.glob(pattern.name):
            stale.unlink()



def ingest_iplos_year(settings: Settings, keys: Keys, year: int) -> IngestReport:
    """Stage every yearly extract of one data year (replacing what was staged for it)."""
    return ingest_iplos_years(settings, keys, [year])


def ingest_iplos_years(settings: Settings, keys: Keys, years: list[int]) -> IngestReport:
    """Stage the yearly extracts of `years`, every file of every year on one pool of workers."""
    seen = {sources.iplos_group(year): sources.fingerprint(settings, sources.iplos_files(settings, year))
            for year in years}
    tasks = []
    for year in years:
        year_dir = settings.root.iplos_year(year)
        shutil.rmtree(IPLOS_SERVICES.partition_folder(settings.data_root, year=year), ignore_errors=True)
        _forget_outputs(settings, source_slug(f"raw/iplos/{year}/"))
        if year_dir.exists():
            tasks += [(settings, keys, year, path) for path in sorted(p for p in year_dir.iterdir() if p.is_file())]
    report = IngestReport(_run_tasks(_iplos_task, tasks))
    sources.record_staged(settings, seen)
    return report


def _iplos_task(settings: Settings, keys: Keys, year: int, path: Path) -> FileOutcome:
    rel = settings.root.relative(path)
    match = _IPLOS_NAME.match(path.name)
    unit = match.group(1) if match else "unknown"
    sink = _sink(settings, keys, rel, "iplos", {"year": str(year), "unit": unit})
    ctx = ReadContext(settings.allow_synthetic_ids, year=year, unit=unit)
    rejection = None if match else FileRejected("file.misfiled", "yearly extracts must be named <kommunenummer>.xml")
    return _read_one(sink, path, read_iplos_file, ctx, rejection)


def _star(task: tuple) -> FileOutcome:
    function, args = task
    return function(*args)


def _run_tasks(function: Callable[..., FileOutcome], tasks: list[tuple]) -> list[FileOutcome]:
    """One file per task, on `KTT_WORKERS` processes (default: every core); results in task order."""
    workers = min(len(tasks), int(os.environ.get("KTT_WORKERS") or os.cpu_count() or 1))
    if workers <= 1:
        return [function(*task) for task in tasks]
    # spawn, not fork: DuckDB and Polars keep thread pools that a forked child must not inherit
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_star, [(function, task) for task in tasks], chunksize=1))


def epj_systems(settings: Settings) -> list[tuple[Municipality, EpjSystem]]:
    municipalities = load_kommuner(settings.root.kommuner_toml)
    return [(m, s) for m in municipalities for s in m.epj]


def epj_system_key(municipality: Municipality, system: EpjSystem) -> str:
    """Folder key of a system: ids like `epj_a` repeat between municipalities."""
    return f"{municipality.nr}-{system.system}"


def _prepare_epj_system(settings: Settings, keys: Keys, municipality: Municipality, system: EpjSystem
                        ) -> list[tuple]:
    """Forget what was staged for the system; return one task per file of its export."""
    folder = settings.root.resolve(system.path)
    staged = EPJ_SERVICE_VERSIONS.partition_folder(settings.data_root, system=epj_system_key(municipality, system))
    shutil.rmtree(staged, ignore_errors=True)
    if not folder.exists():
        log.warning("EPJ system %s of %s: export folder %s not found", system.system, municipality.nr,
                    system.path)
        return []
    _forget_outputs(settings, source_slug(settings.root.relative(folder) + "/"))
    return [(settings, keys, municipality.nr, system, path)
            for path in sorted(p for p in folder.iterdir() if p.is_file())]



def _epj_task(settings: Settings, keys: Keys, kommune: str, system: EpjSystem, path: Path) -> FileOutcome:
    rel = settings.root.relative(path)
    mapping = load_mapping(system.mapping, settings.data_root)
    sink = _sink(settings, keys, rel, mapping.name, {"system": f"{kommune}-{system.system}"})
    ctx = ReadContext(settings.allow_synthetic_ids, system=system.system, reporting_kommune=kommune)
    return _read_one(sink, path, lambda p, s, c: read_export_file(p, s, c, mapping), ctx)


def ingest_epj(settings: Settings, keys: Keys) -> IngestReport:
    """Stage every configured EPJ export, every file on one pool of workers."""
    seen = sources.fingerprint(settings, sources.epj_files(settings))
    tasks = [task for municipality, system in epj_systems(settings)
             for task in _prepare_epj_system(settings, keys, municipality, system)]
    report = IngestReport(_run_tasks(_epj_task, tasks))
    sources.record_staged(settings, {sources.EPJ_GROUP: seen})
    return report
