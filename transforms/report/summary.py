"""What a person wants to know after a run, computed from the outputs on disk."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from transforms.core.config import load_kommuner
from transforms.core.settings import Settings
from transforms.ingest.conservation import conservation_table, quarantine_frame
from transforms.tables import EPISODES, GAPS


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
    config = settings.root.kommuner_toml
    municipalities = len(load_kommuner(config)) if config.exists() else 0
    table = conservation_table(settings)
    quarantine = quarantine_frame(settings)
    by_rule = quarantine.group_by("rule_id").agg(pl.len().alias("records")).sort("rule_id")
    by_kind = table.group_by("record_kind").agg(
        pl.col("records_in").sum(), pl.col("staged").sum(), pl.col("quarantined").sum(),
        pl.col("unchanged").sum()).sort("record_kind")
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


def backfill_summary(settings: Settings) -> dict[str, int | str]:
    """The figures `ktt backfill` and `ktt demo` end with."""
    from transforms.submit.ledger import open_ledger

    ingestion = ingestion_summary(settings)
    root = settings.data_root
    episodes = pl.read_parquet(EPISODES.location(root)) if EPISODES.files(root) else None
    gaps = pl.read_parquet(GAPS.location(root)) if GAPS.files(root) else None
    with open_ledger(settings.data_root, read_only=True) as con:
        messages = con.execute("SELECT count(*) FROM written_days WHERE file IS NOT NULL").fetchone()[0]
        by_status = dict(con.execute("SELECT status, count(*) FROM notifications GROUP BY status").fetchall())
        last_day = con.execute("SELECT max(day) FROM written_days").fetchone()[0]
    return {
        "municipalities": ingestion.municipalities,
        "source files read": ingestion.files,
        "records staged": ingestion.staged,
        "records quarantined": ingestion.quarantined,
        "episodes": episodes.height if episodes is not None else 0,
        "  stitched across a switch": int(episodes["stitched"].sum()) if episodes is not None else 0,
        "  with imputed end": int(episodes["end_imputed"].sum()) if episodes is not None else 0,
        "gap days (unit-days without a source)": int(gaps["days"].sum()) if gaps is not None else 0,
        "messages written": messages,
        "notifications N / M / C": f"{by_status.get('N', 0):,} / {by_status.get('M', 0):,} / "
                                   f"{by_status.get('C', 0):,}",
        "last day written": str(last_day),
    }
