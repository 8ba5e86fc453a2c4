"""Registering the staged Parquet (and empty stand-ins) as DuckDB views."""

from __future__ import annotations

import functools
from pathlib import Path

import duckdb
import polars as pl

from transforms.core.config import load_kommuner
from transforms.core.layout import files_under
from transforms.core.settings import Settings
from transforms.reference.municipalities import municipality_codes
from transforms.reference.successions import split_of
from transforms.tables import STAGED_TABLES


def sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def files_of(files: list[Path], kommuner: set[str] | None,
             shared: dict[str, frozenset[str]] | None = None) -> list[Path]:
    """The staged files that belong to the reporting municipalities `kommuner` (all when None).

    Yearly extracts sit under `kommune=<unit>` (the number valid in the data year), EPJ exports under
    `system=<reporting kommune>-<system>`; episodes never cross reporting municipalities, so a batch of
    municipalities can be reconstructed from its own files alone. `shared` (`shared_file_owners`) adds
    the other municipalities a folder's records may go to: a split unit's successors, the municipalities
    that share another one's EPJ export.
    """
    if kommuner is None:
        return files
    if not shared:
        return [path for path in files if file_owner(path) in kommuner]
    return [path for path in files
            if file_owner(path) in kommuner or not shared.get(partition_folder(path), frozenset()).isdisjoint(kommuner)]


@functools.cache
def partition_folder(path: Path) -> str:
    """The `kommune=<unit>` or `system=<key>` folder of a staged file ('' when it has neither)."""
    return next((p for p in path.parts if p.startswith(("kommune=", "system="))), "")


@functools.cache
def file_owner(path: Path) -> str | None:
    """The reporting municipality a staged file belongs to, by its partition folder (None: neither, or a
    split unit's file, which belongs to its successors through `shared_file_owners`).

    Cached: every batch of a national build filters the same tens of thousands of paths.
    """
    key, _, value = partition_folder(path).partition("=")
    if key == "kommune":
        return _reporting_kommune().get(value)
    return value.split("-", 1)[0] if key == "system" else None


def shared_file_owners(settings: Settings) -> dict[str, frozenset[str]]:
    """Partition folder -> the municipalities besides its owner whose records it may hold: a split unit's
    configured successors (`kommune=1507`), the municipalities sharing an EPJ export (`system=1508-epj_a`)."""
    municipalities = load_kommuner(settings.root.kommuner_toml)
    configured = {m.nr for m in municipalities}
    shared: dict[str, frozenset[str]] = {}
    for code in municipality_codes().filter(pl.col("split"))["code"].to_list():
        successors = frozenset(split_of(code).successors) & configured  # type: ignore[union-attr]
        if successors:
            shared[f"kommune={code}"] = successors
    holder = {s.system: m.nr for m in municipalities for s in m.epj}
    for m in municipalities:
        for system in m.shared_epj:
            key = f"system={holder[system.system]}-{system.system}"
            shared[key] = shared.get(key, frozenset()) | {m.nr}
    return shared


@functools.cache
def _reporting_kommune() -> dict[str, str]:
    return dict(municipality_codes().select("code", "reporting_kommune").iter_rows())


def staged_file_index(settings: Settings) -> dict[str, list[Path]]:
    """Every staged table's files from one walk of the staging tree.

    A national staging tree holds tens of thousands of files: globbing it once per table and
    batch cost seconds per batch.
    """
    found: dict[str, list[Path]] = {name: [] for name in STAGED_TABLES}
    for folder in {table.folder(settings.data_root) for table in STAGED_TABLES.values()}:
        for path in files_under(folder, ".parquet"):
            for name, table in STAGED_TABLES.items():
                if path.name.startswith(f"{name}-") and table.folder(settings.data_root) == folder:
                    found[name].append(path)
    return {name: sorted(paths) for name, paths in found.items()}


def register_staged(con: duckdb.DuckDBPyConnection, settings: Settings, kommuner: set[str] | None = None,
                    index: dict[str, list[Path]] | None = None,
                    tables: tuple[str, ...] | None = None,
                    shared: dict[str, frozenset[str]] | None = None) -> dict[str, int]:
    """One view per staged table (those named in `tables`, else all); a table with no files yet is an
    empty table of the declared schema.

    `index` is a `staged_file_index` the caller keeps across batches. Returns the number of
    files behind each view. Each view reads the footers of all its files when created, so a caller
    registers only the tables it reads.
    """
    counts = {}
    for name, table in STAGED_TABLES.items():
        if tables is not None and name not in tables:
            continue
        files = files_of(index[name] if index is not None else settings.root.files(table), kommuner, shared)
        counts[name] = len(files)
        if files:
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({sql_list(files)}, "
                        "hive_partitioning = false, union_by_name = true)")
        else:
            con.register(f"{name}_empty", table.empty().to_arrow())
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {name}_empty")
    return counts
