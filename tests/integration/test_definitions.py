"""The code location loads, and the assets a data engineer expects are in it."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

from pipelines.definitions import defs
from tests.conftest import REPO

ROOT = REPO


def test_definitions_resolve():
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {"iplos_services", "iplos_persons", "iplos_assessments", "epj_service_versions", "epj_stops",
            "epj_persons", "identity_vault", "municipality_numbers"} <= keys


def test_yearly_assets_are_partitioned_by_data_year_and_backfill_in_one_run():
    graph = defs.get_repository_def().asset_graph
    node = graph.get(dg.AssetKey("iplos_services"))
    assert node.partitions_def.get_partition_keys() == [str(y) for y in range(2017, 2026)]
    assert node.backfill_policy == dg.BackfillPolicy.single_run()


def test_dagster_cli_validates_the_workspace():
    exe = Path(sys.executable).with_name("dagster")
    result = subprocess.run([str(exe), "definitions", "validate", "-w", "workspace.yaml"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_transforms_never_import_dagster():
    offenders = [p for p in (ROOT / "transforms").rglob("*.py")
                 if "import dagster" in p.read_text() or "from dagster" in p.read_text()]
    assert offenders == []


def test_daily_schedule_targets_yesterday_and_is_on_by_default():
    schedule = defs.resolve_schedule_def("daily_operation_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "0 6 * * *"
    job = defs.resolve_job_def("daily_operation")
    assert "daily_submissions" in {k.to_user_string() for k in job.asset_layer.executable_asset_keys}


def test_delivery_follows_the_messages_in_the_daily_job_and_pending_ones_are_retried_by_a_sensor():
    graph = defs.resolve_asset_graph()
    node = graph.get(dg.AssetKey("kpr_delivery"))
    assert {k.to_user_string() for k in node.parent_keys} == {"daily_submissions"}
    assert node.backfill_policy == dg.BackfillPolicy.single_run() and node.pools == {"ktt_delivery"}
    job = defs.resolve_job_def("daily_operation")
    assert "kpr_delivery" in {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    sensor = defs.resolve_sensor_def("pending_deliveries_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_no_production_module_imports_the_sandbox():
    production = [p for folder in ("transforms", "assets", "pipelines") for p in (ROOT / folder).rglob("*.py")
                  if "sandbox" not in p.parts and p.name not in ("cli.py", "cli_delivery.py")]
    offenders = [p for p in production if "transforms.sandbox" in p.read_text()]
    assert offenders == []
