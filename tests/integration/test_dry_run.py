"""`ktt backfill --dry-run` plans against the current ledger and changes nothing; the real run then sends
exactly what the dry run listed (here: the C of a service its EPJ annulled, and the month's new events)."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl

from tests.phantoms import NEXT_DAY, annulled_kommuner, restore_exports
from transforms.submit.ledger import open_ledger
from transforms.tables import PLAN

KTT = str(Path(sys.executable).with_name("ktt"))
LAST = NEXT_DAY + dt.timedelta(days=30)
COMPARED = ["kommune", "day", "status", "event_key", "content_hash", "ref_guid", "event_type", "event_date"]


def _fingerprint(root: Path) -> dict[str, str]:
    """Every byte under submissions/ and ledger/."""
    files = [p for folder in ("submissions", "ledger") for p in sorted((root / folder).rglob("*")) if p.is_file()]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _ktt(*args: str) -> str:
    result = subprocess.run([KTT, *args], capture_output=True, text=True, timeout=900, env={
        **__import__("os").environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_dry_run_lists_exactly_what_the_real_run_sends_and_changes_nothing(sent_root, demo_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(sent_root, root)
    restore_exports(demo_root, root)  # the EPJs annulled the planted services since the last run
    kommuner = annulled_kommuner(root)
    before = _fingerprint(root)
    assert any(name.endswith(".xml") for name in before)

    output = _ktt("backfill", "--dry-run", "--data-root", str(root), "--from", str(NEXT_DAY), "--to", str(LAST),
                  "--kommune", *kommuner)
    assert _fingerprint(root) == before, "the dry run changed a message file or the ledger"
    plan = pl.read_parquet(PLAN.location(root))
    assert set(plan["kommune"]) == set(kommuner)
    assert set(plan["status"]) == {"N", "C"}
    for kommune in kommuner:
        assert f"{kommune}: notifications it would send by event type" in output
    assert "nothing was sent" in output and str(NEXT_DAY) in output

    _ktt("backfill", "--data-root", str(root), "--from", str(NEXT_DAY), "--to", str(LAST), "--kommune", *kommuner)
    with open_ledger(root, read_only=True) as con:
        sent = con.execute("SELECT * FROM notifications WHERE day BETWEEN ? AND ?", [NEXT_DAY, LAST]).pl()
    ours = plan.select(COMPARED).sort(COMPARED, nulls_last=True)
    theirs = sent.select(COMPARED).sort(COMPARED, nulls_last=True)
    assert ours.height > 0 and ours.equals(theirs)
