"""`generate`: one call that writes a whole synthetic data root for a scale and a seed.

Deterministic by construction: one seeded numpy generator drawn in a fixed order (plus
per-file generators seeded from (seed, kommune, year)), every output sorted on complete
keys, and no wall-clock value in any file; so the same scale and seed give byte-identical
files. The files this generator owns (`raw/`, `truth/`, `config/kommuner.toml`) are
removed first, so a root can be regenerated in place; other files of the root are kept.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .corruptions import CorruptionPlanner
from .features import ensure_dnr_replacements
from .municipalities import load_municipalities, national_sizes
from .phantoms import plant_phantoms
from .render_config import write_config
from .render_epj import render_epj
from .render_iplos import render_iplos
from .scales import SCALES
from .segments import build_holdings
from .sources import plan_municipalities
from .split_plans import end_before_split_era
from .truth import write_truth
from .world import PERSONS_PER_ACTIVE, build_world


@dataclass(frozen=True)
class GenerationSummary:
    """What a generation run produced."""

    scale: str
    seed: int
    municipalities: int
    persons: int
    episodes: int
    files_written: int
    corruptions: int
    elapsed_seconds: float

    def __str__(self) -> str:
        return (
            f"synthetic data ({self.scale}, seed {self.seed}): {self.municipalities} municipalities, "
            f"{self.persons:,} persons, {self.episodes:,} episodes, {self.files_written:,} files, "
            f"{self.corruptions} planted corruptions, {self.elapsed_seconds:.1f} s"
        )


def _clean(root: Path) -> None:
    for owned in (root / "raw", root / "truth"):
        if owned.exists():
            shutil.rmtree(owned)
    (root / "config" / "kommuner.toml").unlink(missing_ok=True)
    (root / "config" / "sources" / "omsorgsjournal.toml").unlink(missing_ok=True)


def generate(data_root: Path | str, scale: str, seed: int = 42) -> GenerationSummary:
    """Write config, raw sources and ground truth for `scale` into `data_root`."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    started = time.perf_counter()
    root = Path(data_root)
    root.mkdir(parents=True, exist_ok=True)
    _clean(root)
    spec = SCALES[scale]
    rng = np.random.default_rng(seed)
    municipalities = load_municipalities()
    sizes = (
        national_sizes(rng, municipalities, spec.national_active_per_day, PERSONS_PER_ACTIVE)
        if spec.national
        else dict(spec.persons)
    )
    plans = plan_municipalities(sizes, municipalities, rng)
    world = end_before_split_era(build_world(plans, rng), plans)
    world, holdings = build_holdings(rng, world, plans)
    world, holdings = ensure_dnr_replacements(rng, world, holdings, plans)
    planner = CorruptionPlanner(plans)
    # the renderers also draw services the extracts list but the EPJ export does not stand behind
    phantoms = plant_phantoms(seed, plans, world, holdings)
    write_config(root, plans, scale, seed)
    epj_files, epj_marks = render_epj(root, plans, phantoms.holdings, planner.rows)
    xml_files, xml_marks, ids37 = render_iplos(
        root, plans, phantoms.world, phantoms.holdings, seed, planner.rows, planner.file_bytes
    )
    corruptions = planner.files + epj_marks + xml_marks
    truth_tables = write_truth(root, plans, world, holdings, ids37, corruptions, {"extract_only": phantoms.truth})
    return GenerationSummary(
        scale=scale,
        seed=seed,
        municipalities=len(plans),
        persons=world.persons.height,
        episodes=world.episodes.height,
        files_written=(1 + epj_files + xml_files + len(truth_tables)
                       + len(list((root / "config" / "sources").glob("*.toml")))),
        corruptions=len(corruptions),
        elapsed_seconds=time.perf_counter() - started,
    )
