"""Running the asset graph in-process, for the CLI (`ktt ingest`, `ktt demo`)."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from assets import ingestion, timeline
from assets.resources import KttResource
from transforms.settings import CUTOFF_DATE, FIRST_DATA_YEAR, LAST_DATA_YEAR


def _run_config() -> dict:
    """Dagster's console log at WARNING unless the CLI was asked to be verbose."""
    level = "INFO" if logging.getLogger().isEnabledFor(logging.INFO) else "WARNING"
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def _instance() -> dg.DagsterInstance:
    """The project's instance when DAGSTER_HOME is set (runs show in the UI), else a throwaway one."""
    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def run_ingestion(data_root: Path, key_file: Path | None = None,
                  years: Sequence[int] = tuple(range(FIRST_DATA_YEAR, LAST_DATA_YEAR + 1))) -> None:
    """Stage the yearly extracts of `years` (one run for the range), then EPJ, vault and codes."""
    resources = {"ktt": KttResource(data_root=str(data_root), key_file=str(key_file or ""))}
    instance = _instance()
    first, last = str(min(years)), str(max(years))
    result = dg.materialize(
        [ingestion.iplos_extracts], resources=resources, instance=instance, run_config=_run_config(),
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )
    _raise_on_failed_checks(result)
    result = dg.materialize(
        [ingestion.epj_histories, ingestion.identity_vault, ingestion.municipality_numbers],
        resources=resources, instance=instance, run_config=_run_config(),
    )
    _raise_on_failed_checks(result)


def run_timeline(data_root: Path, key_file: Path | None = None, first_day: dt.date | None = None,
                 last_day: dt.date | None = None) -> None:
    """Coverage and episodes, the daily aggregates for the range (one run), then the warehouse."""
    resources = {"ktt": KttResource(data_root=str(data_root), key_file=str(key_file or ""))}
    instance = _instance()
    result = dg.materialize([timeline.timeline], resources=resources, instance=instance, run_config=_run_config())
    _raise_on_failed_checks(result)
    partitions = timeline.days
    keys = partitions.get_partition_keys()
    first = (first_day or CUTOFF_DATE).isoformat()
    last = min(last_day.isoformat(), keys[-1]) if last_day else keys[-1]
    dg.materialize([timeline.daily_allocation], resources=resources, instance=instance, run_config=_run_config(),
                   tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last})
    dg.materialize([timeline.warehouse], resources=resources, instance=instance, run_config=_run_config())


class CheckFailed(RuntimeError):
    pass


def _raise_on_failed_checks(result: dg.ExecuteInProcessResult) -> None:
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    if failed:
        names = ", ".join(f"{e.asset_key.to_user_string()}:{e.check_name}" for e in failed)
        raise CheckFailed(f"asset checks failed: {names}")
