"""What a person wants to know after a run, computed from the outputs on disk."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from transforms.config import load_kommuner
from transforms.conservation import conservation_table, quarantine_frame
from transforms.settings import Settings


@dataclass(frozen=True)
class IngestionSummary:
    municipalities: int
    files: int
    files_quarantined_whole: int
    records_in: int
    staged: int
    quarantined: int
    unbalanced_files: int
    quarantine_by_rule: pl.DataFrame
    records_by_kind: pl.DataFrame


def ingestion_summary(settings: Settings) -> IngestionSummary:
    config = settings.config_dir / "kommuner.toml"
    municipalities = len(load_kommuner(config)) if config.exists() else 0
    table = conservation_table(settings)
    quarantine = quarantine_frame(settings)
    by_rule = quarantine.group_by("rule_id").agg(pl.len().alias("records")).sort("rule_id")
    by_kind = table.group_by("record_kind").agg(
        pl.col("records_in").sum(), pl.col("staged").sum(), pl.col("quarantined").sum()).sort("record_kind")
    return IngestionSummary(
        municipalities=municipalities,
        files=table["source_file"].n_unique(),
        files_quarantined_whole=quarantine.filter(pl.col("record_kind") == "file").height,
        records_in=int(table["records_in"].sum()),
        staged=int(table["staged"].sum()),
        quarantined=int(table["quarantined"].sum()),
        unbalanced_files=table.filter(~pl.col("balanced"))["source_file"].n_unique(),
        quarantine_by_rule=by_rule,
        records_by_kind=by_kind,
    )
