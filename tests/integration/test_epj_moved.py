"""An EPJ export moved to another folder (its `path` in kommuner.toml changed, the system the same): the files
at the old path are forgotten, their staged parts with them, so no record is staged twice."""

from __future__ import annotations

import shutil

import polars as pl

from tests.phantoms import copy_ingested
from transforms.core.config import load_kommuner
from transforms.core.settings import load_settings
from transforms.ingest.staging import ingest_epj
from transforms.privacy.keys import load_keys
from transforms.tables import EPJ_SERVICE_VERSIONS


def test_a_moved_export_is_staged_once_from_its_new_folder(demo_root, tmp_path):
    root = copy_ingested(demo_root, tmp_path / "moved")
    settings = load_settings(root)
    system = next(s for m in load_kommuner(settings.root.kommuner_toml) if m.nr == "3301" for s in m.epj)
    old = system.path.strip("/")
    new = old + "-moved"

    def staged() -> pl.DataFrame:
        return pl.read_parquet(settings.root.files(EPJ_SERVICE_VERSIONS)).filter(
            pl.col("source_file").str.starts_with(f"{old}/") | pl.col("source_file").str.starts_with(f"{new}/"))

    before = staged()
    assert before.height > 0
    shutil.move(root / old, root / new)
    toml = settings.root.kommuner_toml
    toml.write_text(toml.read_text().replace(f'"{old}"', f'"{new}"'))

    report = ingest_epj(settings, load_keys())
    assert set(before["source_file"].unique().to_list()) <= set(report.removed)
    assert all(rel.startswith(f"{old}/") for rel in report.removed)
    after = staged()
    assert after["source_file"].str.starts_with(f"{new}/").all()
    assert after.height == before.height
    moved = before.with_columns(pl.col("source_file").str.replace(f"^{old}/", f"{new}/"))
    assert after.drop("source_file").sort(after.drop("source_file").columns).equals(
        moved.drop("source_file").sort(after.drop("source_file").columns))
