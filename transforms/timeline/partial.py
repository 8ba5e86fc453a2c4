"""Rebuilding only the municipalities whose inputs changed, and keeping the others' rows as they were written.

Why: the daily schedule's `ktt backfill --from D --to D` re-reads only the source files that changed, and a
changed file belongs to one municipality (`ingest.touched`); rebuilding every timeline of the country for it
took half a minute at national scale. Episodes never cross reporting municipalities, so a municipality's
outputs depend only on its own staged files, the files it shares (a split unit's, a shared EPJ export's),
the split decisions of its family (a split unit's successors and the holders of the EPJ exports they
share), and what every municipality shares: code, settings and configuration, the as-of date (the stamp's
`base`). Each build records a digest of those inputs per municipality; the next build rebuilds the
municipalities whose digest changed and copies the others' rows from the files being replaced.

Every output is ordered by municipality first (the episode id starts with its number), so the kept rows and
the rebuilt batches interleave in file order without a sort.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms.core import duck
from transforms.core.config import load_kommuner
from transforms.core.settings import Settings
from transforms.core.stamps import Stamp, file_lines
from transforms.reference.municipalities import municipality_codes
from transforms.tables import COMBINED_TABLES, EPISODE_STOPS, EPISODES, PROVIDER_CHANGES, STREAMED_TABLES
from transforms.tables.model import Table
from transforms.timeline.splits import family_members
from transforms.timeline.staged import file_owner, partition_folder

# the figures' keys a build records for the next one to rebuild only part
BASE, MUNICIPALITIES, ROUNDS = "base", "municipalities", "linking_rounds_by_municipality"
OUTPUTS = "outputs_by_municipality"
AS_OF, AS_OF_DATE = "as_of_by_municipality", "as_of_date"  # `timeline.as_of.as_of_digests`, and the date
# the timeline's outputs that the stages after it read, and how a row names its municipality
_OF_EPISODE_ID = "split_part(episode_id, ':', 1)"
DOWNSTREAM_READS = {EPISODES: "kommune", EPISODE_STOPS: _OF_EPISODE_ID, PROVIDER_CHANGES: _OF_EPISODE_ID}


def timeline_stamp_of(root: Path) -> Stamp:
    """The timeline's stamp (beside the episodes), over every timeline output."""
    return Stamp(root, EPISODES.location(root).with_name(".timeline.stamp.json"),
                 tuple(t.location(root) for t in (*COMBINED_TABLES, *STREAMED_TABLES)))


def family_of(settings: Settings, split_units: pl.DataFrame, municipalities: list[str]) -> dict[str, list[str]]:
    """Per municipality, the municipalities whose staged files its reconstruction reads: itself and, for a member
    of a split family, the whole family (the split decisions read their files)."""
    configured = load_kommuner(settings.root.kommuner_toml)
    families = [family_members(pl.DataFrame({"candidates": [candidates]}), configured)
                for candidates in split_units["candidates"].unique().to_list()] if split_units.height else []
    return {nr: sorted(set().union({nr}, *(family for family in families if nr in family))) for nr in municipalities}


def files_by_owner(files: dict[str, list[Path]], tables: tuple[str, ...],
                   shared: dict[str, frozenset[str]]) -> dict[str, list[Path]]:
    """The staged files of `tables` that a batch of each municipality registers: its own (`file_owner`) and
    those it shares (`shared_file_owners`). Listed once: a national tree holds tens of thousands."""
    own: dict[str, list[Path]] = {}
    for path in sorted({path for name in tables for path in files[name]}):
        owners = set(shared.get(partition_folder(path), frozenset()))
        if (owner := file_owner(path)) is not None:
            owners.add(owner)
        for nr in owners:
            own.setdefault(nr, []).append(path)
    return own


def municipality_digests(settings: Settings, files: dict[str, list[Path]], tables: tuple[str, ...],
                         shared: dict[str, frozenset[str]], extracts: pl.DataFrame, split_units: pl.DataFrame,
                         municipalities: list[str]) -> dict[str, str]:
    """Per municipality, a digest of what its reconstruction reads besides the shared `base`: the staged files
    of `tables` that a batch of it would register (path, size and modification time), the yearly extracts read
    of its units, and, for a member of a split family, the same of the whole family (its decisions read them).
    """
    own = files_by_owner(files, tables, shared)
    paths = sorted({path for group in own.values() for path in group})
    lines = dict(zip(paths, file_lines(settings.data_root, paths), strict=True))
    units: dict[str, set[str]] = {}
    for code, reporting in municipality_codes().select("code", "reporting_kommune").iter_rows():
        if reporting is not None:
            units.setdefault(reporting, set()).add(code)
    for folder, owners in shared.items():
        key, _, code = folder.partition("=")
        if key == "kommune":
            for nr in owners:
                units.setdefault(nr, set()).add(code)
    years = {unit: ",".join(map(str, sorted(group))) for unit, group in
             extracts.group_by("unit").agg(pl.col("year")).iter_rows()}
    digests = {}
    for nr, members in family_of(settings, split_units, municipalities).items():
        digest = hashlib.sha256()
        for member in members:
            digest.update(f"municipality {member}\n".encode())
            for line in sorted(lines[path] for path in own.get(member, [])):
                digest.update(line.encode() + b"\n")
            for unit in sorted(units.get(member, set())):
                digest.update(f"extracts {unit} {years.get(unit, '')}\n".encode())
        digests[nr] = digest.hexdigest()
    return digests


def changed_municipalities(recorded: dict | None, base: str, digests: dict[str, str], key: str | None = None,
                           more: dict[str, str] | None = None) -> set[str] | None:
    """The municipalities to rebuild given the last build's figures, or None when everything must be rebuilt:
    no usable record (none, outputs touched, an older build that kept no digests), or a changed `base`.
    `more` is a second digest per municipality that the figures record under `key` (the timeline's
    `AS_OF`): a municipality whose either digest changed is rebuilt."""
    compared = [(MUNICIPALITIES, digests)] + ([(key, more)] if key is not None and more is not None else [])
    if not recorded or recorded.get(BASE) != base or any(set(recorded.get(k) or {}) != set(d) for k, d in compared):
        return None
    return {nr for k, d in compared for nr, digest in d.items() if recorded[k][nr] != digest}


def rows_by_municipality(con: duckdb.DuckDBPyConnection, rows: str, municipality: str) -> dict[str, str]:
    """Per municipality, the count and the sum of the hashes of its rows of the relation `rows` (aliased `r`;
    `municipality` names a row's municipality): a digest of the rows themselves, whatever the row groups they
    were written in and whatever build made them."""
    found = con.execute(f"SELECT {municipality}, count(*), sum(hash(r)) FROM {rows} r GROUP BY ALL").fetchall()
    return {nr: f"{n} {total}" for nr, n, total in found}


def output_digests(root: Path) -> dict[str, dict[str, str]]:
    """Per timeline output a downstream stage reads (`DOWNSTREAM_READS`), per municipality, its rows' digest
    (`rows_by_municipality`), so that a later as-of date or a changed source derives again only those whose
    rows changed."""
    with duck.connect() as con:
        return {table.name: rows_by_municipality(con, f"read_parquet({duck.sql_literal(table.location(root))})",
                                                 municipality)
                for table, municipality in DOWNSTREAM_READS.items()}


def rows_digest(root: Path, tables: tuple[Table, ...]) -> str | None:
    """A digest of every municipality's rows of the timeline outputs `tables` (`output_digests`), or None when
    the timeline's stamp holds none for its current files. For a stage that reads all of them at once (the
    daily aggregates): the files may be rewritten with the same rows (a partial rebuild's row groups, a
    later as-of date) and that stage need not run again."""
    outputs = (timeline_stamp_of(root).recorded_figures() or {}).get(OUTPUTS)
    if not outputs or any(t.name not in outputs for t in tables):
        return None
    digest = hashlib.sha256()
    for table in tables:
        for nr, rows in sorted(outputs[table.name].items()):
            digest.update(f"{table.name} {nr} {rows}\n".encode())
    return digest.hexdigest()


def downstream_rebuild(root: Path, recorded: dict | None, own_base: str, tables: tuple[Table, ...],
                       with_inputs: bool = False, extra: dict[str, str] | None = None
                       ) -> tuple[set[str] | None, dict]:
    """For a stage derived a municipality at a time from the timeline's outputs `tables` (the reconciliation,
    the events) whose last build recorded `recorded` (`Stamp.recorded_figures`): the municipalities to derive
    again (None: all), and the figures to record for the next run.

    A municipality is derived again when its rows of `tables` changed (`output_digests`, which the timeline's
    stamp records while its outputs are those it wrote), or, `with_inputs`, its staged inputs (the timeline's
    digest per municipality), or its `extra` digest (what else the stage reads of it); everything when the
    stage's own base (its code, settings and parameters) changed. Its rows, not the timeline's base: the next
    morning's timeline (a later as-of date) is rebuilt whole, and most municipalities' rows come out the same.
    A timeline with no such record means a whole rebuild.
    """
    timeline = timeline_stamp_of(root).recorded_figures() or {}
    outputs, inputs = timeline.get(OUTPUTS), timeline.get(MUNICIPALITIES)
    if not outputs or not inputs or any(t.name not in outputs for t in tables):
        return None, {}
    digests = {}
    for nr in inputs:
        digest = hashlib.sha256()
        parts = [inputs[nr]] if with_inputs else []
        parts += [outputs[t.name].get(nr, "no rows") for t in tables]
        parts += [(extra or {}).get(nr, "none")]
        for part in parts:
            digest.update(part.encode() + b"\n")
        digests[nr] = digest.hexdigest()
    return changed_municipalities(recorded, own_base, digests), {BASE: own_base, MUNICIPALITIES: digests}


def without_as_of(settings: Settings) -> Settings:
    """The settings a stage derived from the timeline's files is shaped by: all but the as-of date, which
    reaches it through those files. The daily run moves the as-of date every morning; a stage whose input
    files came out byte for byte the same (`core.atomic.replacing(keep_identical=True)`) then keeps its
    outputs instead of deriving them again."""
    return dataclasses.replace(settings, as_of_date=None)


def keep_downstream(stamp: Stamp, digest: str, figures: dict, own_base: str, tables: tuple[Table, ...],
                    with_inputs: bool = False, extra: dict[str, str] | None = None) -> None:
    """A downstream stage kept whole (its input files unchanged) while the timeline's record moved on: its
    record takes the timeline's current digests, so that the next changed source still derives only the
    municipalities it touches (`downstream_rebuild`)."""
    _, current = downstream_rebuild(stamp.root, figures, own_base, tables, with_inputs, extra)
    if current and any(figures.get(key) != value for key, value in current.items()):
        stamp.record(digest, {**figures, **current})


def episode_municipality(table: pa.Table) -> pa.Array:
    """The municipality of each row, from its episode id (`<kommune>:<reporting id>`)."""
    ids = table.column("episode_id").combine_chunks()
    return pc.list_element(pc.split_pattern(ids, ":", max_splits=1), 0)


def municipality_column(table: pa.Table) -> pa.Array:
    return table.column("kommune").combine_chunks()


class KeptRows:
    """The rows of the kept municipalities in an output being replaced, read one row group at a time and handed
    out in file order up to the next rebuilt municipality. `municipality` gives each row's (the episode
    id's prefix by default: the stops and provider changes carry no municipality column)."""

    def __init__(self, path: Path, kept: set[str],
                 municipality: Callable[[pa.Table], pa.Array] = episode_municipality) -> None:
        self._file = pq.ParquetFile(path)
        self._municipality_of = municipality
        self._kept = pa.array(sorted(kept), pa.string())
        self._group = 0
        self._rows: pa.Table | None = None
        self._municipality: pa.Array | None = None

    def _fill(self) -> bool:
        """Read row groups until some kept rows are buffered; False at the end of the file."""
        while self._rows is None or self._rows.num_rows == 0:
            if self._group == self._file.num_row_groups:
                return False
            table = self._file.read_row_group(self._group)
            self._group += 1
            municipality = self._municipality_of(table)
            mask = pc.is_in(municipality, value_set=self._kept)
            self._rows, self._municipality = table.filter(mask), municipality.filter(mask)
        return True

    def before(self, first: str | None) -> Iterator[pa.Table]:
        """The kept rows of municipalities before `first` (all that remain when None)."""
        while self._fill():
            assert self._rows is not None and self._municipality is not None
            taken = self._rows.num_rows if first is None else pc.sum(
                pc.less(self._municipality, pa.scalar(first, pa.string()))).as_py() or 0
            if taken == 0:
                return
            yield self._rows.slice(0, taken)
            self._rows, self._municipality = self._rows.slice(taken), self._municipality.slice(taken)
            if self._rows.num_rows:
                return


def kept_frame(path: Path, kept: set[str]) -> pl.DataFrame:
    """A small output's rows of the kept municipalities (those tables carry the municipality as a column)."""
    return pl.read_parquet(path).filter(pl.col("kommune").is_in(sorted(kept)))
