"""Run-time settings, read from the environment and the data root's `config/`.

Settings are plain values resolved once per run so that every stage sees the same
data root, cut-off date and identifier policy; nothing here touches Dagster.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from transforms.core.layout import DataRoot

CUTOFF_DATE = dt.date(2017, 1, 1)
FIRST_DATA_YEAR = 2017
LAST_DATA_YEAR = 2025


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Tolerances:
    """Reconstruction tolerances of timeline.md; every one is a setting."""

    iplos36_start_days: int = 7
    switch_window_days: int = 7


@dataclass(frozen=True)
class Reconciliation:
    """Reconciliation with the yearly extracts: below this agreement a (municipality, year) is warned about."""

    agreement_threshold: float = 0.95

    def __post_init__(self) -> None:
        if not 0.0 <= self.agreement_threshold <= 1.0:
            raise ValueError(f"[reconciliation] agreement_threshold = {self.agreement_threshold} in "
                             "config/settings.toml is not between 0 and 1")


@dataclass(frozen=True)
class SplitOverride:
    """An analyst's decision: the records of `person_key` filed under the split unit `unit` belong to `kommune`."""

    unit: str
    person_key: str
    kommune: str


@dataclass(frozen=True)
class SplitSettings:
    """`[splits]`: who receives a split unit's records that no rule places, and an analyst's moves.

    `default` maps a divided unit (5012, 1850, 1507) to a successor, replacing the succession table's
    default; `override` moves one person's records of a split unit (the `split_assignments` listing
    names them by pseudonym).
    """

    default: dict[str, str] = field(default_factory=dict)
    override: tuple[SplitOverride, ...] = ()

    @classmethod
    def from_toml(cls, values: dict) -> SplitSettings:
        overrides = tuple(SplitOverride(str(o["unit"]), str(o["person_key"]), str(o["kommune"]))
                          for o in values.get("override", []))
        return cls({str(k): str(v) for k, v in values.get("default", {}).items()}, overrides)


@dataclass(frozen=True)
class Settings:
    data_root: Path
    allow_synthetic_ids: bool = False
    cutoff_date: dt.date = CUTOFF_DATE
    as_of_date: dt.date | None = None
    tolerances: Tolerances = field(default_factory=Tolerances)
    reconciliation: Reconciliation = field(default_factory=Reconciliation)
    splits: SplitSettings = field(default_factory=SplitSettings)

    @property
    def root(self) -> DataRoot:
        """Every folder and file under the data root (`transforms.core.layout`)."""
        return DataRoot(self.data_root)

    def with_root(self, data_root: Path) -> Settings:
        return replace(self, data_root=Path(data_root))


def load_settings(data_root: str | Path | None = None) -> Settings:
    """Resolve settings: explicit argument, then `KTT_DATA_ROOT`, then `./data`.

    `config/settings.toml` under the data root may set `allow_synthetic_ids`,
    `as_of_date`, `[tolerances]`, `[reconciliation]` and `[splits]`; the environment wins over the file so that a
    test or the demo can switch synthetic identifiers on without editing config.
    """
    root = Path(data_root or os.environ.get("KTT_DATA_ROOT") or "data").resolve()
    file_values: dict = {}
    settings_file = DataRoot(root).settings_toml
    if settings_file.exists():
        file_values = tomllib.loads(settings_file.read_text(encoding="utf-8"))
    allow = bool(file_values.get("allow_synthetic_ids", False)) or _env_flag("KTT_ALLOW_SYNTHETIC_IDS")
    as_of = os.environ.get("KTT_AS_OF_DATE") or file_values.get("as_of_date")
    if isinstance(as_of, str):
        as_of = dt.date.fromisoformat(as_of)
    tol = Tolerances(**file_values.get("tolerances", {}))
    reconciliation = Reconciliation(**file_values.get("reconciliation", {}))
    return Settings(data_root=root, allow_synthetic_ids=allow, as_of_date=as_of, tolerances=tol,
                    reconciliation=reconciliation, splits=SplitSettings.from_toml(file_values.get("splits", {})))
