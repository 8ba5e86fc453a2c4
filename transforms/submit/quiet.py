"""Municipalities with nothing to send: known without planning them against the ledger.

Why: the daily schedule writes one new day for every municipality. Planning one (the ledger's state of its
every sent key against its every event) costs a few ledger queries whatever it finds, most of a national
day's run, while most municipalities have no event that day and nothing changed. The writer records which
events file it last planned each municipality against (`ledger/events_planned.json`, path, size and
modification time of `timeline/events.parquet`). When the events are still that file, the ledger already
says everything they said up to the municipality's last written day: no key changed or vanished (no M, no
C), no late registration was left unsent; so the new days bring exactly the events dated on them, and a
municipality with none has an empty plan. Such a municipality is *settled*: one with events on its new
days is planned from those events alone, without the ledger's state of its every sent key (`ACTIVE_SQL`,
which reads the municipality's whole notification history: Oslo's million in 2 s). The record is removed
when a run starts and written when it ends, so a run killed half-way leaves none and the next one plans
every municipality. The replay check after the run verifies the ledger against the events either way.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from transforms.core.atomic import write_text
from transforms.core.layout import DataRoot


def events_state(events: Path) -> str:
    stat = events.stat()
    return f"{events.name}\t{stat.st_size}\t{stat.st_mtime_ns}"


class PlannedAgainst:
    """Per municipality, the state of the events file it was last planned against."""

    def __init__(self, data_root: Path):
        self.path = DataRoot(data_root).ledger / "events_planned.json"
        try:
            self.states: dict[str, str] = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            self.states = {}

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)

    def record(self, kommuner: list[str], state: str) -> None:
        self.states.update(dict.fromkeys(kommuner, state))
        write_text(self.path, json.dumps(self.states, indent=0, sort_keys=True))


def settled_municipalities(events: Path, planned: PlannedAgainst, kommuner: Iterable[str]) -> set[str]:
    """Of `kommuner`, those last planned against these very events."""
    state = events_state(events)
    return {k for k in kommuner if planned.states.get(k) == state}


def quiet_municipalities(events: Path, planned: PlannedAgainst, new_days: dict[str, tuple[dt.date, dt.date]]
                         ) -> set[str]:
    """Of the municipalities with new days (`new_days`: first and last), those whose plan is empty: settled
    (planned against these very events before), and no event dated on one of their new days."""
    candidates = settled_municipalities(events, planned, new_days)
    if not candidates:
        return set()
    first = min(new_days[k][0] for k in candidates)
    last = max(new_days[k][1] for k in candidates)
    dated = (pl.scan_parquet(events).select("kommune", "day").filter(pl.col("day").is_between(first, last))
             .collect())
    windows = pl.DataFrame([(k, *new_days[k]) for k in sorted(candidates)], orient="row",
                           schema={"kommune": pl.String, "first": pl.Date, "last": pl.Date})
    busy = dated.join(windows, on="kommune").filter(pl.col("day").is_between(pl.col("first"), pl.col("last")))
    return candidates - set(busy["kommune"].to_list())
