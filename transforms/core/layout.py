"""The data root's layout, as one object: every folder and file the pipeline reads or writes.

The input side is the contract of `docs/inputs.md` (`config/`, `raw/`); the outputs sit beside it.
Tables name their own files (`transforms.tables`: `EPISODES.location(root)`); this object names the
rest (configuration, raw inputs, the ledger's database and lock, message files, the warehouse) and
the folders a stage owns, so no module joins a data-root path by hand.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from transforms.tables import NOTIFICATIONS, Table


def files_under(folder: Path, suffix: str, skip: Path | None = None) -> list[Path]:
    """The files under `folder` (not under `skip`) whose names end in `suffix`, sorted.

    `os.walk`, not `Path.rglob`: a national staging tree's 27,000 files took 1.6 s to glob and 0.2 s to walk,
    and the stamps of the timeline and the reconciliation list it on every run.
    """
    found = []
    for top, folders, names in os.walk(folder):
        if skip is not None and Path(top) == skip:
            folders.clear()
            continue
        found += [os.path.join(top, name) for name in names if name.endswith(suffix)]
    return [Path(p) for p in sorted(found)]


@dataclass(frozen=True)
class DataRoot:
    path: Path

    # --- inputs ----------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / "config"

    @property
    def kommuner_toml(self) -> Path:
        return self.config / "kommuner.toml"

    @property
    def settings_toml(self) -> Path:
        return self.config / "settings.toml"

    @property
    def delivery_toml(self) -> Path:
        """How messages reach the registry (`transport`, `[kneik-api]`, `[directory]`; delivery.md)."""
        return self.config / "delivery.toml"

    @property
    def overrides_toml(self) -> Path:
        """Analysts' decisions on conflicts and doubtful cases (`transforms.timeline.overrides`)."""
        return self.config / "overrides.toml"

    @property
    def raw(self) -> Path:
        return self.path / "raw"

    def iplos_year(self, year: int) -> Path:
        """The folder of a data year's yearly extracts, `raw/iplos/<YYYY>/<kommunenr>.xml`."""
        return self.raw / "iplos" / str(year)

    def resolve(self, relative: str) -> Path:
        """A path given relative to the data root in the configuration (an EPJ export's folder)."""
        return (self.path / relative).resolve()

    def relative(self, path: Path) -> str:
        """`path` relative to the data root, as the outputs record it (`raw/iplos/2021/3005.xml`)."""
        return path.resolve().relative_to(self.path).as_posix()

    # --- outputs ---------------------------------------------------------------------------------
    @property
    def staging(self) -> Path:
        return self.path / "staging"

    @property
    def staging_scratch(self) -> Path:
        """Where a source file's outputs are collected before they are published whole."""
        return self.staging / ".tmp"

    @property
    def staged_sources(self) -> Path:
        """What staging last read: path, size and modification time per file (`raw_files_sensor`)."""
        return self.staging / "sources.json"

    @property
    def staged_files(self) -> Path:
        """Per source file: size, modification time and reader of what staging last read from it."""
        return self.staging / "source_files.json"

    @property
    def timeline(self) -> Path:
        return self.path / "timeline"

    @property
    def ledger(self) -> Path:
        return self.ledger_db.parent

    @property
    def ledger_db(self) -> Path:
        return NOTIFICATIONS.location(self.path)

    @property
    def writer_lock(self) -> Path:
        return self.ledger / "writer.lock"

    @property
    def submissions(self) -> Path:
        return self.path / "submissions"

    @staticmethod
    def message_relpath(kommune: str, day: dt.date) -> str:
        """A day's message file relative to the data root, as the ledger records it."""
        return f"submissions/kommune={kommune}/{day.year}/{day.isoformat()}.xml"

    @property
    def outbox(self) -> Path:
        """Resent messages (`ktt resend`)."""
        return self.path / "outbox"

    @property
    def sandbox(self) -> Path:
        """The sandbox registry's public PKI, settings and what it accepted (`ktt sandbox`)."""
        return self.path / "sandbox"

    @property
    def reports(self) -> Path:
        """Full-size charts and report pages for people."""
        return self.path / "reports"

    @property
    def warehouse(self) -> Path:
        """The analyst catalog: views over every Parquet output."""
        return self.path / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        """`ktt ui`'s instance, kept beside the data it describes."""
        return self.path / ".dagster"

    # --- tables ----------------------------------------------------------------------------------
    def table(self, table: Table, **parts: object) -> Path:
        return table.location(self.path, **parts)

    def files(self, table: Table) -> list[Path]:
        return table.files(self.path)

    def glob(self, table: Table) -> str:
        return table.glob(self.path)

    # folders that one stage owns and rewrites as a whole
    OUTPUT_FOLDERS = ("staging", "identity", "timeline", "ledger", "submissions", "outbox", "reference", "dry_run")
