"""Running the asset graph in-process, for the CLI (`ktt ingest`, `ktt backfill`, `ktt demo`).

Each stage is one Dagster run over its whole range (a nine-year backfill of a daily
asset is one run, never one per day); the stages run in dependency order.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import dagster as dg

from assets import delivery, ingestion, submissions, timeline
from assets.resources import KttResource
from transforms.core.memory import release_memory
from transforms.core.settings import FIRST_DATA_YEAR, LAST_DATA_YEAR
from transforms.deliver.config import load_delivery_config


class CheckFailed(RuntimeError):
    pass


def _run_config(extra: dict | None = None) -> dict:
    """Dagster's console log at WARNING unless the CLI was asked to be verbose."""
    level = "INFO" if logging.getLogger().isEnabledFor(logging.INFO) else "WARNING"
    return {"loggers": {"console": {"config": {"log_level": level}}}, **(extra or {})}


def _instance() -> dg.DagsterInstance:
    """The project's instance when DAGSTER_HOME is set (runs show in the UI), else a throwaway one."""
    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def _raise_on_failed_checks(result: dg.ExecuteInProcessResult) -> None:
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    if failed:
        names = ", ".join(f"{e.asset_key.to_user_string()}:{e.check_name}" for e in failed)
        raise CheckFailed(f"asset checks failed: {names}")


def _range_tags(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def last_complete_day() -> dt.date:
    return dt.date.fromisoformat(timeline.days.get_partition_keys()[-1])


class Runner:
    """The stages of the graph, run in-process against one data root."""

    def __init__(self, data_root: Path, key_file: Path | None = None):
        self.data_root = Path(data_root)
        self.resources = {"ktt": KttResource(data_root=str(data_root), key_file=str(key_file or ""))}
        self.instance = _instance()

    def _materialize(self, assets: list, tags: dict | None = None, config: dict | None = None) -> None:
        result = dg.materialize(assets, resources=self.resources, instance=self.instance,
                                run_config=_run_config(config), tags=tags)
        release_memory()  # the next stage's peak must not come on top of what this one freed
        _raise_on_failed_checks(result)

    def ingest(self, years: Sequence[int] = tuple(range(FIRST_DATA_YEAR, LAST_DATA_YEAR + 1))) -> None:
        self._materialize([ingestion.iplos_extracts], tags=_range_tags(str(min(years)), str(max(years))))
        self._materialize([ingestion.epj_histories, ingestion.identity_vault, ingestion.municipality_numbers])

    def timeline(self) -> None:
        self._materialize([timeline.timeline])

    def reconciliation(self) -> None:
        self._materialize([timeline.reconciliation])

    def events(self) -> None:
        self._materialize([submissions.service_events])

    def daily_allocation(self, first: dt.date, last: dt.date) -> None:
        self._materialize([timeline.daily_allocation], tags=_range_tags(first.isoformat(), last.isoformat()))

    def submissions(self, first: dt.date, last: dt.date, kommuner: Sequence[str] = ()) -> None:
        config = {"ops": {"daily_submissions": {"config": {"kommuner": list(kommuner)}}}}
        self._materialize([submissions.daily_submissions], tags=_range_tags(first.isoformat(), last.isoformat()),
                          config=config)

    def plan(self, first: dt.date, last: dt.date, kommuner: Sequence[str] = ()) -> None:
        """The dry run of `submissions`: the plan only (`backfill_plan`), no message, no ledger row."""
        config = {"ops": {"backfill_plan": {"config": {"kommuner": list(kommuner)}}}}
        self._materialize([submissions.backfill_plan], tags=_range_tags(first.isoformat(), last.isoformat()),
                          config=config)

    def warehouse(self) -> None:
        self._materialize([timeline.warehouse])

    def deliver(self, first: dt.date, last: dt.date, kommuner: Sequence[str] = ()) -> None:
        config = {"ops": {"kpr_delivery": {"config": {"kommuner": list(kommuner)}}}}
        self._materialize([delivery.kpr_delivery], tags=_range_tags(first.isoformat(), last.isoformat()),
                          config=config)

    @property
    def delivers(self) -> bool:
        """Whether `config/delivery.toml` names a transport (checked now: a wrong file stops before the work)."""
        return load_delivery_config(self.data_root).transport != "none"

    def backfill(self, first: dt.date, last: dt.date, kommuner: Sequence[str] = (),
                 on_stage: Callable[[str], None] | None = None, dry_run: bool = False) -> None:
        """Every stage for the range; `on_stage(name)` is called as each stage starts. A dry run rebuilds
        the timelines and events and plans the messages, but writes no message and no ledger row."""
        stages: list[tuple[str, Callable[[], None]]] = [
            ("ingest sources", self.ingest),
            ("reconstruct timelines", self.timeline),
            ("reconcile with the extracts", self.reconciliation),
            ("derive events", self.events),
        ]
        if dry_run:
            stages.append(("plan daily messages", lambda: self.plan(first, last, kommuner)))
        else:
            stages += [
                ("daily aggregates", lambda: self.daily_allocation(first, last)),
                ("write daily messages", lambda: self.submissions(first, last, kommuner)),
                ("refresh warehouse", self.warehouse),
            ]
            if self.delivers:
                stages.append(("deliver to the registry", lambda: self.deliver(first, last, kommuner)))
        for name, stage in stages:
            if on_stage:
                on_stage(name)
            stage()


def run_ingestion(data_root: Path, key_file: Path | None = None,
                  years: Sequence[int] = tuple(range(FIRST_DATA_YEAR, LAST_DATA_YEAR + 1))) -> None:
    Runner(data_root, key_file).ingest(years)
