"""What a table declaration holds, and what follows from it.

A `Table` says once what a table is: its name, where it lives under the data root, its columns
with types and descriptions, its row order, the asset that writes it and the tables it is made
from. From that follow the Polars and Arrow schemas the writers conform to, the DuckDB DDL of
the ledger's tables, the Dagster asset specs and column metadata (in `assets/`), and the
warehouse views with their column comments; nothing else spells a table's name or path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow as pa

Storage = Literal["parquet", "ledger", "frame", "vault"]
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType | type[pl.DataType]
    description: str
    nullable: bool = True  # declared NOT NULL in the ledger's DDL when False


def required(name: str, dtype, description: str) -> Column:
    """A column that is never null (NOT NULL in the ledger's DDL)."""
    return Column(name, dtype, description, nullable=False)


@dataclass(frozen=True, eq=False)  # each declaration is one object: compared and hashed by identity
class Table:
    """One table the pipeline writes.

    `path` is relative to the data root. A table written in parts names them with placeholders
    (`staging/quarantine/{source}.parquet`, `timeline/daily/day={day}/{part}.parquet`): `glob`
    reads all of them, `location` names one. Ledger tables live in `ledger/ledger.duckdb`; frame
    tables are handed between stages in memory (and written only on request, e.g. a dry run's plan).
    """

    name: str
    description: str
    columns: tuple[Column, ...]
    path: str
    asset: str | None  # the Dagster asset it belongs to (None: written beside other tables, no asset of its own)
    reads: tuple[str, ...] = ()  # the tables it is made from (the asset graph's edges)
    written_with: tuple[str, ...] = ()  # a table without an asset: the tables whose writer writes it too
    sort: tuple[str, ...] = ()  # row order of what is written ( unique where the writer relies on it)
    storage: Storage = "parquet"
    primary_key: tuple[str, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    hive_partitioning: bool = False  # partition folders (`day=...`) are columns when read
    extra_ddl: tuple[str, ...] = field(default=())  # further statements after CREATE TABLE (ledger)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(names) != len(set(names)):
            raise ValueError(f"table {self.name}: a column is declared twice")
        unknown = [c for c in (*self.sort, *self.primary_key) if c not in names
                   and not (self.hive_partitioning and c in self.partition_keys)]
        if unknown:
            raise ValueError(f"table {self.name}: sort or key columns {unknown} are not declared")

    # --- schemas ---------------------------------------------------------------------------------
    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def schema(self) -> dict[str, pl.DataType | type[pl.DataType]]:
        return {c.name: c.dtype for c in self.columns}

    def arrow_schema(self) -> pa.Schema:
        return self.empty().to_arrow().schema

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.schema)

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Cast to the declared schema and column order; fail on missing or extra columns."""
        missing = set(self.schema) - set(frame.columns)
        extra = set(frame.columns) - set(self.schema)
        if missing or extra:
            raise ValueError(f"table {self.name}: missing columns {sorted(missing)}, extra {sorted(extra)}")
        return frame.select([pl.col(c.name).cast(c.dtype) for c in self.columns])

    def sorted(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`frame` in the table's row order (nulls last)."""
        return frame.sort(*self.sort, nulls_last=True) if self.sort else frame

    # --- where it lives --------------------------------------------------------------------------
    @property
    def partition_keys(self) -> tuple[str, ...]:
        return tuple(_PLACEHOLDER.findall(self.path))

    @property
    def partitioned(self) -> bool:
        return bool(self.partition_keys)

    def glob(self, root: Path) -> str:
        """Every part of the table under `root`, as a glob DuckDB and `Path.glob` understand."""
        return str(root / _PLACEHOLDER.sub("*", self.path))

    def files(self, root: Path) -> list[Path]:
        """The table's files under `root`, sorted (a partitioned table's parts; else the file if it exists)."""
        if not self.partitioned:
            path = root / self.path
            return [path] if path.exists() else []
        return sorted(root.glob(_PLACEHOLDER.sub("*", self.path)))

    def location(self, root: Path, **parts: object) -> Path:
        """The file of the table (a partitioned table: the part named by `parts`)."""
        missing = set(self.partition_keys) - set(parts)
        if missing:
            raise ValueError(f"table {self.name}: {self.path} needs {sorted(missing)}")
        return root / self.path.format(**{k: str(v) for k, v in parts.items()})

    def partition_folder(self, root: Path, **keys: object) -> Path:
        """The folder of one partition (`year=2021` of a staged IPLOS table): the path up to the last
        folder named by `keys`, which a stage replaces as a whole."""
        segments = self.path.split("/")[:-1]
        last = max((i for i, s in enumerate(segments) if set(_PLACEHOLDER.findall(s)) & set(keys)), default=None)
        if last is None:
            raise ValueError(f"table {self.name}: no folder of {self.path} is named by {sorted(keys)}")
        return root.joinpath(*(s.format(**{k: str(v) for k, v in keys.items()}) for s in segments[:last + 1]))

    def folder(self, root: Path) -> Path:
        """The folder that holds every part: the path up to its first placeholder."""
        static = self.path.split("{", 1)[0]
        return root / (static if static.endswith("/") else static.rsplit("/", 1)[0])

    # --- DuckDB ----------------------------------------------------------------------------------
    def create_sql(self) -> str:
        """`CREATE TABLE IF NOT EXISTS` for a ledger table, from the declaration."""
        lines = [f"{c.name} {duckdb_type(c.dtype)}{'' if c.nullable else ' NOT NULL'}" for c in self.columns]
        if self.primary_key:
            lines.append(f"PRIMARY KEY ({', '.join(self.primary_key)})")
        lines += [f"UNIQUE ({', '.join(u)})" for u in self.unique]
        statements = [f"CREATE TABLE IF NOT EXISTS {self.name} (\n    " + ",\n    ".join(lines) + "\n)"]
        return ";\n".join([*statements, *self.extra_ddl]) + ";\n"


def source_slug(rel_path: str) -> str:
    """The `{source}` of a per-source-file part: the file's path relative to the data root with `/` as `__`,
    so re-reading a file replaces its parts instead of piling up new ones."""
    return rel_path.replace("/", "__").replace("\\", "__")


_DUCKDB_TYPES: dict[type[pl.DataType], str] = {
    pl.Utf8: "VARCHAR", pl.Int8: "TINYINT", pl.Int16: "SMALLINT", pl.Int32: "INTEGER", pl.Int64: "BIGINT",
    pl.UInt32: "UINTEGER", pl.UInt64: "UBIGINT", pl.Float64: "DOUBLE", pl.Boolean: "BOOLEAN", pl.Date: "DATE",
    pl.Binary: "BLOB",
}


def duckdb_type(dtype: pl.DataType | type[pl.DataType]) -> str:
    """The DuckDB type a Polars type is stored as (and read back as)."""
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    if isinstance(dtype, pl.List):
        return f"{duckdb_type(dtype.inner)}[]"
    base = dtype if isinstance(dtype, type) else type(dtype)
    if base is pl.Datetime:
        return "TIMESTAMP"
    return _DUCKDB_TYPES[base]


def type_label(dtype: pl.DataType | type[pl.DataType]) -> str:
    """A short type name for people (Dagster column schemas, the README)."""
    return duckdb_type(dtype).lower()
