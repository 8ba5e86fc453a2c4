"""A small backfill with Dagster's instance on a real PostgreSQL (the production template).

`.ci/run` installs and starts Debian's PostgreSQL and exports KTT_TEST_PG_URL (a role that may
create databases); the test makes a database of its own and drops it afterwards. Without the
URL the test is skipped, unless KTT_REQUIRE_POSTGRES=1 (as in CI) makes that a failure.
"""

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import pytest

from pipelines.ui import prepare_instance
from transforms.submit.ledger import integrity_problems, open_ledger

KTT = str(Path(sys.executable).with_name("ktt"))
STAGES = 7  # Runner.backfill: yearly extracts, EPJ, timeline, events, daily aggregates, messages, warehouse


@pytest.fixture
def postgres_url():
    base = os.environ.get("KTT_TEST_PG_URL")
    if not base:
        if os.environ.get("KTT_REQUIRE_POSTGRES") == "1":
            pytest.fail("KTT_TEST_PG_URL is not set (.ci/services.sh starts PostgreSQL and sets it)")
        pytest.skip("no PostgreSQL: set KTT_TEST_PG_URL=postgresql://user:password@host:port/db")
    import psycopg2

    name = f"ktt_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(base)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(base)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


def test_small_backfill_with_postgres_instance_storage(demo_root, tmp_path, postgres_url, monkeypatch):
    """A quarter of the demo world, every stage, with runs, events and checks in PostgreSQL."""
    root = tmp_path / "data"
    shutil.copytree(demo_root, root, ignore=shutil.ignore_patterns("ledger", "submissions", "outbox", "timeline"))
    monkeypatch.setenv("KTT_DAGSTER_PG_URL", postgres_url)
    home = prepare_instance(tmp_path / "dagster_home", "postgres").home
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    result = subprocess.run([KTT, "backfill", "--data-root", str(root), "--from", "2017-01-01", "--to", "2017-03-31"],
                            env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        runs = instance.get_runs()
        assert len(runs) >= STAGES and all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
        materialized = instance.get_materialized_partitions(dg.AssetKey("daily_submissions"))
        assert len(materialized) == 90 and min(materialized) == "2017-01-01" and max(materialized) == "2017-03-31"
        for check in ("messages_schema_valid", "ledger_sequence_and_chain", "replay_reproduces_episodes"):
            history = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey("daily_submissions"), check), limit=1)
            assert [record.status.value for record in history] == ["SUCCEEDED"], check
    finally:
        instance.dispose()

    with open_ledger(root, read_only=True) as con:
        assert integrity_problems(con).height == 0
        days, files = con.execute("SELECT count(DISTINCT day), count(file) FROM written_days").fetchone()
    assert days == 90 and files == len(list((root / "submissions").rglob("*.xml"))) > 90
