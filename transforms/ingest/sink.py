"""The sink every reader writes into: staged rows, quarantine rows, identities, counts.

A reader's output for one source file is written to a temporary folder and moved
into place only when the whole file was read, so a file that fails half-way
(truncated XML) leaves no partial rows: it is quarantined whole instead. Rows are
flushed in batches, so memory stays flat whatever the file size.
"""

from __future__ import annotations

import shutil
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from transforms.core.atomic import write_parquet
from transforms.core.layout import DataRoot
from transforms.ingest.quarantine import Rejection, mask_identifiers
from transforms.privacy.identity import Pseudonymizer, write_vault_part
from transforms.tables import FILE_COUNTS, IDENTITY_PARTS, QUARANTINE, STAGED_TABLES, Table
from transforms.tables.model import source_slug

BATCH_ROWS = 20_000
# Free-text and local-id fields where an EPJ might have put a birth number (some use it as user number).
MASKED_FIELDS = ("user_no", "district", "service_id", "stop_id", "location")


@dataclass
class FileSink:
    """Collects one source file's output; `commit` publishes it, `discard` forgets it."""

    root: DataRoot
    rel_path: str
    fmt: str
    partition: dict[str, str]  # the staged tables' partition of this file: year and unit, or system
    pseudonymizer: Pseudonymizer
    vault_key: bytes
    batch_rows: int = BATCH_ROWS
    _tmp: Path = field(init=False)
    _rows: dict[str, list[dict[str, Any]]] = field(init=False, default_factory=lambda: defaultdict(list))
    _parts: Counter = field(init=False, default_factory=Counter)
    _quarantine: list[dict[str, Any]] = field(init=False, default_factory=list)
    _identities: dict[str, tuple[str, int]] = field(init=False, default_factory=dict)
    records_in: Counter = field(init=False, default_factory=Counter)
    staged: Counter = field(init=False, default_factory=Counter)
    quarantined: Counter = field(init=False, default_factory=Counter)

    def __post_init__(self) -> None:
        self._tmp = self.root.staging_scratch / f"{source_slug(self.rel_path)}.{uuid.uuid4().hex}"
        self._tmp.mkdir(parents=True)

    # --- what readers call -------------------------------------------------
    def seen(self, kind: str) -> None:
        """Count one input record of `kind` before deciding where it goes."""
        self.records_in[kind] += 1

    def person_key(self, identifier: str, id_type: int) -> str:
        normalised = identifier.strip().replace(" ", "")
        key = self.pseudonymizer(normalised)
        self._identities[key] = (normalised, id_type)
        return key

    def stage(self, table: str, kind: str, row: dict[str, Any], count: bool = True) -> None:
        """Stage one row; `count=False` for the extra rows of one record (assessment scores)."""
        rows = self._rows[table]
        rows.append(row)
        if count:
            self.staged[kind] += 1
        if len(rows) >= self.batch_rows:
            self._flush(table)

    def reject(self, kind: str, rejection: Rejection, line: int | None, location: str, raw: str) -> None:
        self.quarantined[kind] += 1
        self._quarantine.append({
            "source_file": self.rel_path, "line": line,
            "location": mask_identifiers(location, self.pseudonymizer.tag), "format": self.fmt,
            "record_kind": kind, "rule_id": rejection.rule_id,
            "message": mask_identifiers(rejection.message, self.pseudonymizer.tag),
            "raw_value": mask_identifiers(raw, self.pseudonymizer.tag)[:2000],
        })

    # --- publishing --------------------------------------------------------
    def _flush(self, table: str) -> None:
        rows = self._rows.pop(table, [])
        if not rows:
            return
        frame = STAGED_TABLES[table].conform(pl.DataFrame(rows, schema=STAGED_TABLES[table].schema))
        frame = self._mask_frame(frame)
        part = self._parts[table]
        self._parts[table] += 1
        frame.write_parquet(self._tmp / f"{table}-{part:04d}.parquet", compression="zstd")

    def _mask_frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Replace identifier-like runs in local-id and free-text columns, checked in bulk first."""
        for name in MASKED_FIELDS:
            if name not in frame.columns:
                continue
            suspicious = frame[name].str.contains(r"\d{11}")
            if suspicious.any():
                frame = frame.with_columns(
                    pl.when(suspicious)
                    .then(frame[name].map_elements(lambda v: mask_identifiers(v, self.pseudonymizer.tag),
                                                   return_dtype=pl.Utf8))
                    .otherwise(frame[name]).alias(name))
        return frame

    def commit(self) -> None:
        for table in list(self._rows):
            self._flush(table)
        slug = source_slug(self.rel_path)
        for table in self._own_tables():
            pattern = self._staged_part(table, slug, "*")
            for stale in pattern.parent.glob(pattern.name):
                stale.unlink()
        for part in sorted(self._tmp.glob("*.parquet")):
            name, number = part.stem.rsplit("-", 1)
            target = self._staged_part(STAGED_TABLES[name], slug, number)
            target.parent.mkdir(parents=True, exist_ok=True)
            part.replace(target)
        self._write_quarantine(slug)
        self._write_counts(slug)
        if self._identities:
            ids = pl.DataFrame(
                [(k, v[0], v[1]) for k, v in self._identities.items()],
                schema=IDENTITY_PARTS.schema, orient="row",
            )
            write_vault_part(self.root.table(IDENTITY_PARTS, source=slug), ids, self.vault_key)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _own_tables(self) -> list[Table]:
        """The staged tables partitioned like this file (the yearly extracts' or the EPJ exports')."""
        return [t for t in STAGED_TABLES.values() if set(t.partition_keys) == {*self.partition, "source", "part"}]

    def _staged_part(self, table: Table, slug: str, number: str) -> Path:
        return self.root.table(table, **self.partition, source=slug, part=number)

    def discard(self) -> None:
        """Forget every row of this file (it is about to be quarantined whole)."""
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir(parents=True)
        self._rows.clear()
        self._parts.clear()
        self._quarantine.clear()
        self._identities.clear()
        self.records_in.clear()
        self.staged.clear()
        self.quarantined.clear()

    def _write_quarantine(self, slug: str) -> None:
        frame = QUARANTINE.conform(pl.DataFrame(self._quarantine, schema=QUARANTINE.schema))
        write_parquet(frame, self.root.table(QUARANTINE, source=slug))

    def _write_counts(self, slug: str) -> None:
        kinds = sorted(set(self.records_in) | set(self.staged) | set(self.quarantined))
        frame = pl.DataFrame(
            {
                "source_file": [self.rel_path] * len(kinds),
                "format": [self.fmt] * len(kinds),
                "record_kind": kinds,
                "records_in": [self.records_in[k] for k in kinds],
                "staged": [self.staged[k] for k in kinds],
                "quarantined": [self.quarantined[k] for k in kinds],
            },
            schema=FILE_COUNTS.schema,
        )
        write_parquet(frame, self.root.table(FILE_COUNTS, source=slug))
