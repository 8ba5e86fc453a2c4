"""Scanning outputs for raw identifiers: Parquet is read decoded (its pages are compressed)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import polars as pl


def parquet_strings(path: Path) -> Iterable[str]:
    frame = pl.read_parquet(path)
    for name, dtype in frame.schema.items():
        if dtype == pl.Utf8:
            yield from (v for v in frame[name].drop_nulls().unique().to_list())
        elif isinstance(dtype, pl.List):
            yield from (str(v) for v in frame[name].explode(empty_as_null=True).drop_nulls().unique().to_list())


def find_identifiers(paths: Iterable[Path], identifiers: set[str]) -> list[tuple[Path, str]]:
    """Every (file, identifier) where a raw identifier occurs in a file's content."""
    hits = []
    for path in paths:
        if path.suffix == ".parquet":
            text = "\n".join(parquet_strings(path))
        else:
            text = path.read_bytes().decode("utf-8", errors="replace")
        hits.extend((path, i) for i in identifiers if i in text)
    return hits
