"""The planted services only the extracts list (`truth/extract_only.parquet`), and editing them in the exports."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl

FIRST_RUN_TO = dt.date(2025, 6, 30)
NEXT_DAY = FIRST_RUN_TO + dt.timedelta(days=1)


def copy_ingested(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(
        "timeline", "ledger", "submissions", "outbox", ".dagster", "warehouse.duckdb", "reports"))
    return target


def extract_only(root: Path) -> pl.DataFrame:
    return pl.read_parquet(root / "truth" / "extract_only.parquet")


def export_lines(root: Path, service_id: str) -> list[tuple[Path, str]]:
    """Every line of an EPJ export (CSV or JSONL) that is about the service."""
    found = []
    for path in sorted((root / "raw" / "epj").rglob("*")):
        if path.suffix not in (".csv", ".jsonl"):
            continue
        encoding = "cp1252" if path.suffix == ".csv" else "utf-8"
        for line in path.read_bytes().decode(encoding).splitlines(keepends=True):
            if f";{service_id};" in line or f'"{service_id}"' in line:
                found.append((path, line))
    return found


def remove_lines(root: Path, service_id: str, keep=lambda line: False) -> int:
    """Remove the service's lines from the exports (except those `keep` accepts); returns lines removed."""
    removed = 0
    for path in sorted({p for p, _ in export_lines(root, service_id)}):
        encoding = "cp1252" if path.suffix == ".csv" else "utf-8"
        lines = path.read_bytes().decode(encoding).splitlines(keepends=True)
        kept = [line for line in lines
                if not (f";{service_id};" in line or f'"{service_id}"' in line) or keep(line)]
        removed += len(lines) - len(kept)
        path.write_bytes("".join(kept).encode(encoding))
    return removed


def sent_before_annulment(demo_root: Path, target: Path, key_file: Path) -> Path:
    """The demo with the annulled services' annulment taken out of the exports (as the EPJ was before it
    annulled them), written to FIRST_RUN_TO for the municipalities that hold them."""
    from pipelines.run import Runner
    from transforms.core.settings import load_settings
    from transforms.ingest.staging import ingest_epj
    from transforms.privacy.keys import load_keys

    root = copy_ingested(demo_root, target)
    annulled = extract_only(root).filter(pl.col("kind") == "annulled_in_epj").unique("service_id")
    for service_id in annulled["service_id"]:
        assert remove_lines(root, service_id, keep=lambda line: "ANNULLERT" not in line
                            and "CANCELLED" not in line) == 1
    runner = Runner(root, key_file)
    ingest_epj(load_settings(root), load_keys(key_file))
    runner.timeline()
    runner.events()
    runner.submissions(dt.date(2017, 1, 1), FIRST_RUN_TO, annulled_kommuner(root))
    return root


def annulled_kommuner(root: Path) -> list[str]:
    return sorted(set(extract_only(root).filter(pl.col("kind") == "annulled_in_epj")["reporting_kommune"]))


def restore_exports(demo_root: Path, root: Path) -> None:
    """The generated exports again (the annulment back in)."""
    for path in sorted((demo_root / "raw" / "epj").rglob("*")):
        if path.is_file():
            shutil.copyfile(path, root / path.relative_to(demo_root))
