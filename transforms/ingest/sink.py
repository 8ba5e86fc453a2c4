"""The sink every reader writes into: staged rows, quarantine rows, identities, counts.

A reader's output for one source file is written to a temporary folder and moved
into place only when the whole file was read, so a file that fails half-way
(truncated XML) leaves no partial rows: it is quarantined whole instead. Readers hand
over frames (a batch of records at a time); staged rows are written in parts of exactly
`batch_rows` rows, so memory stays flat whatever the file size and a file's parts are
the same however its reader batched it.
"""

from __future__ import annotations

import functools
import io
import shutil
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from transforms.core.atomic import PARQUET_OPTIONS, write_bytes, write_parquet
from transforms.core.layout import DataRoot
from transforms.ingest import conservation
from transforms.ingest.parts import matching
from transforms.ingest.quarantine import Rejection, mask_identifiers
from transforms.privacy.identity import Pseudonymizer, write_vault_part
from transforms.tables import FILE_COUNTS, FINDING_TABLES, IDENTITY_PARTS, QUARANTINE, STAGED_TABLES, Table
from transforms.tables.model import source_slug

BATCH_ROWS = 20_000
_REJECTED = {"kind": pl.Utf8, "line": pl.Int64, "location": pl.Utf8, "rule_id": pl.Utf8, "message": pl.Utf8,
             "raw_value": pl.Utf8}
# Staged parts are LZ4, not zstd: a national ingestion writes some 18,000 of them, mostly small, and zstd's
# per-column set-up made each write about 30 % dearer (some 14 CPU seconds in all, ~5 % of the ingestion);
# the parts are about 1.7 times larger (national: ~1.2 GB against 0.7 GB) and quicker to read.
STAGED_COMPRESSION = "lz4"
# Free-text and local-id fields where an EPJ might have put a birth number (some use it as user number).
MASKED_FIELDS = ("user_no", "district", "service_id", "stop_id", "location")


def prepared_rows(table: str, frame: pl.DataFrame, pseudonymizer: Pseudonymizer) -> pl.DataFrame:
    """Rows as a staged part holds them: conformed to `table`, identifier-like runs in local-id and free-text
    columns replaced. Row by row, so a frame of several source files' rows can be prepared at once and split
    (small yearly extracts judged together: once per group, not once per file and table)."""
    return _masked(STAGED_TABLES[table].conform(frame), pseudonymizer)


def _masked(frame: pl.DataFrame, pseudonymizer: Pseudonymizer) -> pl.DataFrame:
    """Replace identifier-like runs in local-id and free-text columns, checked in bulk first (one pass
    over every such column: a part of a small extract is a few hundred rows, and a pass per column
    cost more than the test)."""
    names = [name for name in MASKED_FIELDS if name in frame.columns]
    if not names:
        return frame
    found = frame.select(pl.col(name).str.contains(r"\d{11}").any() for name in names).row(0)
    for name in (name for name, any_found in zip(names, found, strict=True) if any_found):
        suspicious = frame[name].str.contains(r"\d{11}")
        frame = frame.with_columns(
            pl.when(suspicious)
            .then(frame[name].map_elements(lambda v: mask_identifiers(v, pseudonymizer.tag), return_dtype=pl.Utf8))
            .otherwise(frame[name]).alias(name))
    return frame


@functools.cache
def _empty_quarantine() -> bytes:
    """The bytes of a quarantine file without rows, as `write_parquet` writes it. Nearly every source file's
    quarantine is empty, and each file the same: written from these bytes, not through Polars' Parquet writer
    (some 1.3 ms each, 4,481 files in a national ingestion)."""
    buffer = io.BytesIO()
    QUARANTINE.empty().write_parquet(buffer, **PARQUET_OPTIONS)
    return buffer.getvalue()


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
    _frames: dict[str, list[pl.DataFrame]] = field(init=False, default_factory=lambda: defaultdict(list))
    _pending: Counter = field(init=False, default_factory=Counter)
    _parts: Counter = field(init=False, default_factory=Counter)
    _quarantine: list[pl.DataFrame] = field(init=False, default_factory=list)
    _identities: list[pl.DataFrame] = field(init=False, default_factory=list)
    _findings: dict[str, list[pl.DataFrame]] = field(init=False, default_factory=lambda: defaultdict(list))
    records_in: Counter = field(init=False, default_factory=Counter)
    staged: Counter = field(init=False, default_factory=Counter)
    quarantined: Counter = field(init=False, default_factory=Counter)
    unchanged: Counter = field(init=False, default_factory=Counter)  # snapshot rows equal to their last version
    # per staged table, per part written: what the conservation check counts of it (`conservation.written_counts`)
    _written: dict[str, list[pl.DataFrame]] = field(init=False, default_factory=lambda: defaultdict(list))
    counted: dict = field(init=False, default_factory=dict)  # the published files' counts, set by `commit`

    def __post_init__(self) -> None:
        self._tmp = self.root.staging_scratch / f"{source_slug(self.rel_path)}.{uuid.uuid4().hex}"
        self._tmp.mkdir(parents=True)

    # --- what readers call -------------------------------------------------
    def seen(self, kind: str, n: int = 1) -> None:
        """Count `n` input records of `kind` before deciding where they go."""
        if n:
            self.records_in[kind] += n

    def seen_kinds(self, kinds: pl.Series) -> None:
        """Count one input record per value of `kinds` (each a record kind)."""
        for kind, n in kinds.value_counts().iter_rows():
            self.records_in[kind] += n

    def stage_frame(self, table: str, kind: str, frame: pl.DataFrame, records: int | None = None,
                    prepared: bool = False) -> None:
        """Stage rows of `table`; `records` counts them as input records when not one per row (an
        assessment element gives a row per score). `prepared`: the rows are already `prepared_rows`."""
        if frame.height == 0:
            return
        self._frames[table].append(frame if prepared else prepared_rows(table, frame, self.pseudonymizer))
        self._pending[table] += frame.height
        self.staged[kind] += frame.height if records is None else records
        while self._pending[table] >= self.batch_rows:
            self._flush(table, self.batch_rows)

    def reject_frame(self, frame: pl.DataFrame) -> None:
        """Quarantine records: `frame` has kind, line, location, rule_id, message and raw_value."""
        if frame.height == 0:
            return
        for kind, n in frame["kind"].value_counts().iter_rows():
            self.quarantined[kind] += n
        tag = self.pseudonymizer.tag
        self._quarantine.append(pl.DataFrame({
            "source_file": [self.rel_path] * frame.height,
            "line": frame["line"].cast(pl.Int64),
            "location": [mask_identifiers(v or "", tag) for v in frame["location"].to_list()],
            "format": [self.fmt] * frame.height,
            "record_kind": frame["kind"],
            "rule_id": frame["rule_id"],
            "message": [mask_identifiers(v, tag) for v in frame["message"].to_list()],
            "raw_value": [mask_identifiers(v or "", tag)[:2000] for v in frame["raw_value"].to_list()],
        }, schema=QUARANTINE.schema))

    def reject(self, kind: str, rejection: Rejection, line: int | None, location: str, raw: str) -> None:
        self.reject_frame(pl.DataFrame({"kind": [kind], "line": [line], "location": [location],
                                        "rule_id": [rejection.rule_id], "message": [rejection.message],
                                        "raw_value": [raw]}, schema=_REJECTED))

    def quarantined_rows(self) -> pl.DataFrame:
        """The quarantine rows collected so far (masked as written)."""
        return pl.concat(self._quarantine) if self._quarantine else QUARANTINE.empty()

    @property
    def scratch(self) -> Path:
        """This file's scratch folder (removed with the sink's other temporary output)."""
        return self._tmp

    def add_finding(self, table: Table, frame: pl.DataFrame) -> None:
        """Rows of a finding table (`FINDING_TABLES`), written with the file's other output."""
        if frame.height:
            self._findings[table.name].append(table.conform(frame))

    def staged_parts(self, table: Table, rel_path: str) -> list[Path]:
        """The staged parts of `table` that another source file of this partition published."""
        return sorted(matching(self._staged_part(table, source_slug(rel_path), "*")))

    def register_identities(self, frame: pl.DataFrame) -> None:
        """(person_key, fid, id_type) of staged persons; for a key seen twice, the later one is kept."""
        if frame.height:
            self._identities.append(frame.select(IDENTITY_PARTS.column_names))

    # --- publishing --------------------------------------------------------
    def _flush(self, table: str, rows: int | None = None) -> None:
        """Write `rows` (default: all pending) staged rows of `table` as its next part."""
        frames = self._frames.pop(table, [])
        if not frames:
            return
        pending = pl.concat(frames, rechunk=False) if len(frames) > 1 else frames[0]
        rows = pending.height if rows is None else rows
        frame, rest = pending.head(rows), pending.slice(rows)
        if rest.height:
            self._frames[table] = [rest]
        self._pending[table] = rest.height
        part = self._parts[table]
        self._parts[table] += 1
        frame.write_parquet(self._tmp / f"{table}-{part:04d}.parquet", compression=STAGED_COMPRESSION)
        self._written[table].append(conservation.staged_part_rows(STAGED_TABLES[table], frame))

    def commit(self) -> None:
        for table in list(self._frames):
            self._flush(table)
        slug = source_slug(self.rel_path)
        for table in self._own_tables():
            for stale in matching(self._staged_part(table, slug, "*")):
                stale.unlink()
        published: dict[str, list[Path]] = defaultdict(list)
        for part in sorted(self._tmp.glob("*.parquet")):
            name, number = part.stem.rsplit("-", 1)
            target = self._staged_part(STAGED_TABLES[name], slug, number)
            target.parent.mkdir(parents=True, exist_ok=True)
            part.replace(target)
            published[name].append(target)
        for name, targets in published.items():
            self.counted.update(conservation.written_counts(STAGED_TABLES[name], targets, self._written[name]))
        self._write_quarantine(slug)
        self._write_counts(slug)
        self._write_findings(slug)
        if self._identities:
            ids = pl.concat(self._identities).unique(subset="person_key", keep="last", maintain_order=True)
            write_vault_part(self.root.table(IDENTITY_PARTS, source=slug), ids, self.vault_key, "arrow")
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
        self._frames.clear()
        self._pending.clear()
        self._parts.clear()
        self._written.clear()
        self._quarantine.clear()
        self._identities.clear()
        self._findings.clear()
        self.records_in.clear()
        self.staged.clear()
        self.quarantined.clear()
        self.unchanged.clear()

    def _write_findings(self, slug: str) -> None:
        for table in FINDING_TABLES:
            if set(table.partition_keys) != {*self.partition, "source"}:
                continue
            target = self.root.table(table, **self.partition, source=slug)
            frames = self._findings.get(table.name)
            if frames:
                write_parquet(table.sorted(pl.concat(frames)), target)
            else:
                target.unlink(missing_ok=True)

    def _write_quarantine(self, slug: str) -> None:
        target = self.root.table(QUARANTINE, source=slug)
        if not self._quarantine:  # the national sources: 35 quarantined records in 4,481 files
            write_bytes(target, _empty_quarantine())
            self.counted.update(conservation.written_quarantine_counts(target, QUARANTINE.empty()))
            return
        frame = QUARANTINE.conform(self.quarantined_rows().sort("line", nulls_last=False, maintain_order=True))
        write_parquet(frame, target)
        self.counted.update(conservation.written_quarantine_counts(target, frame))

    def _write_counts(self, slug: str) -> None:
        kinds = sorted(set(self.records_in) | set(self.staged) | set(self.quarantined) | set(self.unchanged))
        frame = pl.DataFrame(
            {
                "source_file": [self.rel_path] * len(kinds),
                "format": [self.fmt] * len(kinds),
                "record_kind": kinds,
                "records_in": [self.records_in[k] for k in kinds],
                "staged": [self.staged[k] for k in kinds],
                "quarantined": [self.quarantined[k] for k in kinds],
                "unchanged": [self.unchanged[k] for k in kinds],
            },
            schema=FILE_COUNTS.schema,
        )
        target = self.root.table(FILE_COUNTS, source=slug)
        write_parquet(frame, target)
        self.counted.update(conservation.written_file_counts(target, frame))
