"""The commands a data engineer types: backfill a month, look at the ledger, resend, keys."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

KTT = str(Path(sys.executable).with_name("ktt"))


def ktt(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([KTT, *args], capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def month(demo_root, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "data"
    shutil.copytree(demo_root, root, ignore=shutil.ignore_patterns("ledger", "submissions", "outbox"))
    result = ktt("backfill", "--data-root", str(root), "--from", "2017-01-01", "--to", "2017-01-31")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "messages written" in result.stdout and "last day written" in result.stdout
    return root


def test_backfill_of_one_month_writes_its_days_in_order(month):
    files = sorted((month / "submissions").rglob("*.xml"))
    assert files and all("2017-01-" in f.name for f in files)
    assert (month / "warehouse.duckdb").exists()


def test_ledger_status_names_the_last_day(month):
    result = ktt("ledger", "status", "--data-root", str(month))
    assert result.returncode == 0, result.stderr
    assert "2017-01-31" in result.stdout and "numbering and chain intact" in result.stdout
    assert "every notification replayed" in result.stdout


def test_backfill_refuses_a_gap_and_names_the_first_missing_day(month):
    result = ktt("backfill", "--data-root", str(month), "--from", "2017-03-01", "--to", "2017-03-02")
    assert result.returncode != 0
    assert "first missing day 2017-02-01" in result.stdout + result.stderr


def test_resend_writes_to_the_outbox(month):
    kommune = sorted(p.name.split("=")[1] for p in (month / "submissions").glob("kommune=*"))[0]
    result = ktt("resend", "--data-root", str(month), "--kommune", kommune, "--between-seqs", "1", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wrote 3 notification(s)" in result.stdout
    assert list((month / "outbox").rglob("*.xml"))


def test_commands_needing_a_key_explain_how_to_make_one(month, tmp_path):
    result = ktt("ingest", "--data-root", str(month), env={"KTT_KEY_FILE": str(tmp_path / "none.json")})
    assert result.returncode == 2 and "ktt keys init" in result.stdout


def test_keys_init_never_overwrites(tmp_path):
    path = tmp_path / "k.json"
    first = ktt("keys", "init", "--key-file", str(path))
    content = path.read_bytes()
    second = ktt("keys", "init", "--key-file", str(path))
    assert first.returncode == second.returncode == 0
    assert "already exists" in second.stdout and path.read_bytes() == content
