"""Guarantees that the rare features the contract asks for exist at every scale and seed.

Most features follow from the plans (switches, the gap, corruptions) or are common enough
to appear by chance; a D-nummer replaced by a fødselsnummer *inside an exported EPJ* is
rare (1.5 % of persons, and the replacement must fall while an exported system holds the
person), so if chance left one export format without it, one suitable person is given a
D-nummer that the system replaces halfway through the time it holds them.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from .dates import SPAN_END
from .ids import person_numbers
from .registrations import person_rows, unit_frame
from .segments import Holdings
from .sources import FMT_A, FMT_B, MunicipalityPlan
from .world import World


def ensure_dnr_replacements(
    rng: np.random.Generator, world: World, holdings: Holdings, plans: list[MunicipalityPlan]
) -> tuple[World, Holdings]:
    persons = world.persons
    changed = False
    for fmt in (FMT_A, FMT_B):
        systems = holdings.systems.filter((pl.col("fmt") == fmt) & pl.col("exported"))
        replaced = holdings.person_rows.filter(
            (pl.col("kind") == 1) & pl.col("system").is_in(systems["system"].implode())
        )
        if replaced.height:
            continue
        spans = (
            holdings.segments.filter(
                pl.col("in_export") & pl.col("system").is_in(systems["system"].implode())
            )
            .group_by(["system", "pid"])
            .agg(pl.col("first_reg").min().alias("a"), pl.min_horizontal("seg_end", "t_to").max().alias("b"))
            .join(systems.select("system", "active_to"), on="system")
            .with_columns(pl.min_horizontal("b", "active_to", pl.lit(SPAN_END)).alias("b"))
            .join(persons.select("pid", "dnr", "fnr"), on="pid")
            .filter(pl.col("dnr").is_null() & (pl.col("b") - pl.col("a") > 60))
            .sort(["system", "pid"])
        )
        if spans.height == 0:
            raise RuntimeError(f"no person can carry a D-nummer replacement in a {fmt} export")
        pick = spans.row(int(rng.integers(0, spans.height)), named=True)
        used = set(persons["fnr"].drop_nulls().to_list()) | set(persons["dnr"].drop_nulls().to_list())
        row = persons.filter(pl.col("pid") == pick["pid"])
        dnr = person_numbers(
            rng, row["birth"].to_numpy(), row["male"].to_numpy(), np.ones(1, dtype=bool), used
        )[0]
        until = (pick["a"] + pick["b"]) // 2
        persons = persons.with_columns(
            pl.when(pl.col("pid") == pick["pid"]).then(pl.lit(dnr)).otherwise(pl.col("dnr")).alias("dnr"),
            pl.when(pl.col("pid") == pick["pid"])
            .then(pl.lit(until, dtype=pl.Int32))
            .otherwise(pl.col("dnr_until"))
            .alias("dnr_until"),
        )
        changed = True
    if not changed:
        return world, holdings
    world = World(
        persons, world.episodes, world.stops, world.provider_changes, world.hours_changes, world.diagnoses
    )
    holdings.person_rows = person_rows(rng, world, holdings.versions, holdings.systems, unit_frame(plans))
    return world, holdings
