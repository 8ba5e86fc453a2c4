"""End to end on the demo world: generate, ingest through Dagster, compare with the ground truth."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl

from pipelines.run import run_ingestion
from tests.privacy import find_identifiers
from transforms.core.settings import load_settings
from transforms.ingest import conservation
from transforms.ingest.conservation import conservation_table, quarantine_frame
from transforms.ingest.staging import ingest_epj, ingest_iplos_years
from transforms.privacy.keys import load_keys


def test_every_recorded_corruption_is_quarantined_and_nothing_else(demo_root):
    truth = pl.read_parquet(demo_root / "truth" / "corruptions.parquet")
    quarantine = quarantine_frame(load_settings(demo_root))
    expected = set(truth.select("source_file", "line", "rule_id").iter_rows())
    got = set(quarantine.select("source_file", "line", "rule_id").iter_rows())
    assert got == expected, {"missing": expected - got, "unexpected": got - expected}
    # every rule of the bad-input list is exercised
    assert {"id.check_digits", "period.end_before_start", "code.unknown_service", "hours.out_of_range",
            "record.duplicate", "file.unparseable", "file.encoding_mismatch",
            "date.unparseable"} <= set(truth["rule_id"].to_list())


def test_records_conserved_per_file(demo_root):
    table = conservation_table(load_settings(demo_root))
    raw_files = {p.relative_to(demo_root).as_posix() for p in (demo_root / "raw").rglob("*") if p.is_file()}
    assert set(table["source_file"].to_list()) == raw_files
    assert table.filter(~pl.col("balanced")).height == 0
    assert table["records_in"].sum() > 10_000


def test_no_raw_identifier_in_staged_outputs(demo_root):
    persons = pl.read_parquet(demo_root / "truth" / "persons.parquet")
    previous = persons["previous_ids"].explode(empty_as_null=True).drop_nulls()
    identifiers = set(persons["fid"].to_list()) | set(previous.to_list())
    corrupted = _identifiers_in_corrupted_records(demo_root)
    outputs = [p for sub in ("staging", "identity", "reference", "timeline") for p in (demo_root / sub).rglob("*")
               if p.is_file()] + [demo_root / "ingest.log"]
    assert "INFO" in (demo_root / "ingest.log").read_text()
    assert len(identifiers) > 1000
    assert find_identifiers(outputs, identifiers | corrupted) == []


def _identifiers_in_corrupted_records(root: Path) -> set[str]:
    import re

    found: set[str] = set()
    truth = pl.read_parquet(root / "truth" / "corruptions.parquet").filter(pl.col("rule_id") == "id.check_digits")
    for rel, line in truth.select("source_file", "line").iter_rows():
        text = (root / rel).read_bytes().decode("latin-1").splitlines()[line - 1]
        found.update(re.findall(r"(?<!\d)\d{11}(?!\d)", text))
    return found


def test_staged_tables_hold_every_source(demo_root):
    staging = demo_root / "staging"
    years = {p.name for p in (staging / "iplos").iterdir()}
    assert years == {f"year={y}" for y in range(2017, 2026)}
    assert list((staging / "epj").glob("system=*/epj_service_versions-*.parquet"))
    vault = demo_root / "identity" / "vault.bin"
    assert vault.exists() and vault.stat().st_size > 0


def test_reingesting_is_idempotent(demo_root):
    before = conservation_table(load_settings(demo_root))
    run_ingestion(demo_root, Path(os.environ["KTT_KEY_FILE"]))
    after = conservation_table(load_settings(demo_root))
    assert before.equals(after)


def test_the_checks_take_the_counts_the_workers_took_of_what_they_wrote(demo_root, tmp_path, monkeypatch):
    """An ingestion's conservation check reads none of the Parquet the workers just published, and finds what a
    count of those files finds: every format, the snapshot series, a file quarantined whole."""
    root = tmp_path / "data"
    shutil.copytree(demo_root / "config", root / "config")
    shutil.copytree(demo_root / "raw", root / "raw", copy_function=os.link)
    settings, keys = load_settings(root), load_keys(Path(os.environ["KTT_KEY_FILE"]))
    monkeypatch.setenv("KTT_WORKERS", "2")  # the counts come back from worker processes
    report = ingest_iplos_years(settings, keys, [2022])
    report.extend(ingest_epj(settings, keys))
    assert report.files_rejected and {"epj-a-csv", "epj-b-jsonl", "omsorgsjournal-xml", "iplos"} == {
        f.format for f in report.files}
    sql_list = conservation.sql_list
    monkeypatch.setattr(conservation, "sql_list", None)  # no Parquet file is read
    taken = conservation_table(settings)
    assert taken.height > 50 and taken["balanced"].all()
    monkeypatch.setattr(conservation, "sql_list", sql_list)
    monkeypatch.setattr(conservation, "_COUNTED", {})
    (root / "staging" / conservation.COUNTS_FILE).unlink()
    assert conservation_table(settings).equals(taken)  # counted again from the files
