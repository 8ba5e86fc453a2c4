"""`ktt sources check` lists exactly the planted problems of each demo export; `ktt sources draft` guesses."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import polars as pl
import pytest

from transforms.core.config import load_kommuner
from transforms.core.settings import load_settings
from transforms.ingest.check import check_system
from transforms.ingest.draft import draft

KTT = str(Path(sys.executable).with_name("ktt"))


def _systems(root: Path) -> list[tuple[str, str]]:
    return [(s.system, s.path) for m in load_kommuner(root / "config" / "kommuner.toml") for s in m.epj]


def test_check_lists_exactly_the_planted_problems_of_each_export(demo_root: Path):
    truth = pl.read_parquet(demo_root / "truth" / "corruptions.parquet")
    staging_before = sorted(p for p in (demo_root / "staging").rglob("*") if p.is_file())
    systems = _systems(demo_root)
    assert {Path(path).name.split("-", 1)[1] for _, path in systems} >= {"epj3301a", "epj3301b", "epj1515a"}
    for system, path in systems:
        report = check_system(load_settings(demo_root), system)
        planted = truth.filter(pl.col("source_file").str.starts_with(path + "/"))
        assert set(report.problems.select("source_file", "line", "rule_id").iter_rows()) == \
            set(planted.select("source_file", "line", "rule_id").iter_rows()), system
        assert report.persons and report.services
        assert not any(whole for _, _, whole in report.files)
    assert sorted(p for p in (demo_root / "staging").rglob("*") if p.is_file()) == staging_before


def test_check_prints_a_report_without_identifiers(demo_root: Path):
    result = subprocess.run([KTT, "sources", "check", "--system", "epj1515a", "--data-root", str(demo_root)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1  # problems found
    out = result.stdout
    assert "mapping omsorgsjournal-xml" in out and "history snapshot-series" in out
    for rule in ("id.check_digits", "period.end_before_start", "code.unknown_service", "hours.out_of_range",
                 "date.unparseable", "record.duplicate"):
        assert f"  {rule}: 1" in out, rule
    assert "services.service_code" in out and "'UKJENT' x1" in out
    persons = pl.read_parquet(demo_root / "truth" / "persons.parquet")
    assert not [fid for fid in persons["fid"].to_list() if fid in out]


@pytest.mark.parametrize(("pattern", "expected"), [
    ("*/brukere.csv", {"national_id", "id_type", "unit", "birth_year", "registered_at"}),
    ("*/events*.jsonl", {"national_id", "id_type", "registered_at", "start_date"}),
    ("*/uttrekk_*.xml", {"national_id", "service_code", "death_date", "start_date"}),
])
def test_draft_guesses_formats_and_columns(demo_root: Path, tmp_path: Path, pattern: str, expected: set[str]):
    sample = sorted((demo_root / "raw" / "epj").glob(pattern))[0]
    text = draft([sample])
    mapping = tomllib.loads(text)
    targets = {t for record in mapping["records"].values() for t in record.get("columns", {})}
    assert expected <= targets, text
    out = tmp_path / "draft.toml"
    result = subprocess.run([KTT, "sources", "draft", str(sample), "--out", str(out)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and out.read_text() == text
    if sample.suffix == ".csv":
        assert mapping["format"]["delimiter"] == ";" and mapping["format"]["header"] is True
