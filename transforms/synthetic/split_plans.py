"""How the pieces of split municipalities were held, so that the worlds show every rule of the split.

- Snillfjord (1613 in 2017, 5012 in 2018–2019; to Heim, Hitra and Orkland in 2020): one EPJ for the
  whole municipality, never exported. Its persons appear only in Snillfjord's yearly extracts until
  each successor's system takes its piece over on 1 January 2020: the extract records move by the
  person's continuation, or go to the default (Orkland).
- Tysfjord (1850; to Narvik and Hamarøy in 2020): the default successor's piece was held in an
  exported EPJ that only that successor configures (its records move by configuration), the other
  pieces in EPJs never exported.
- Ålesund 1507 (2020–2023; Ålesund 1508 and Haram 1580 from 2024): Haram's piece (1534) is in
  Haram's own EPJ until 2019 (never exported), in Ålesund's EPJ 2020–2023 (which Haram's
  configuration shares, `[[kommune.shared_epj]]`) and in Haram's new EPJ from 2024.
Each piece is a part of its successor's plan (`municipalities`); a system that held several
municipalities' pieces belongs to one plan and is `borrowed` by the others.
"""

from __future__ import annotations

import dataclasses

import polars as pl

from transforms.reference.successions import split_of

from .dates import day, year_start
from .municipalities import FIRST_YEAR, YEARS, Municipality
from .sources import FIRST_SYSTEM_FROM, FMT_A, MunicipalityPlan, SystemPlan, Takeover, _sys
from .world import World

HARAM, ALESUND = "1580", "1508"
# the split units whose pieces were held by one EPJ of the whole unit (never exported), and those whose
# default successor's piece was in an export of its own
ONE_UNEXPORTED_EPJ = frozenset({"5012"})
PIECE_EPJS = frozenset({"1850"})
PIECE_WEIGHT = 0.5


def haram(m: Municipality, persons: int) -> MunicipalityPlan:
    """Haram's own EPJ until 2019 (never exported) and a new one from 2024; 2020–2023 are filled in by
    `plan_split_parts` with Ålesund's systems."""
    old = _sys(m.nr, "x", None, 2, "HA", FIRST_SYSTEM_FROM, "2019-12-31", None, (m.parts[0],))
    new = _sys(m.nr, "a", FMT_A, 3, "HN", "2024-01-01", None, "2024-01-01", (m.nr,))
    takeovers = (Takeover(m.parts[0], FIRST_SYSTEM_FROM, old.system), Takeover(m.parts[0], day("2024-01-01"),
                                                                              new.system))
    return MunicipalityPlan(m, persons, (old, new), takeovers)


def piece_parts(m: Municipality) -> dict[int, str]:
    """Part index -> the divided unit, for the parts that are pieces of a split unit filed under it from 2017."""
    return {j: split_of(part).unit for j, part in enumerate(m.parts)  # type: ignore[union-attr]
            if split_of(part) is not None and split_of(m.unit(j, FIRST_YEAR)) is not None}


def split_codes_of(m: Municipality, j: int) -> frozenset[str]:
    """The codes part `j` was filed under while it was (part of) a split unit."""
    return frozenset(code for code in m.units[j] if split_of(code) is not None)


def _system_on(plan: MunicipalityPlan, when: int, parts: set[str]) -> str:
    """The system that held the plan's other parts on day `when`."""
    takes = sorted((t.day, t.system) for t in plan.takeovers if t.part in parts and t.day <= when)
    return takes[-1][1]


def plan_split_parts(plans: list[MunicipalityPlan]) -> list[MunicipalityPlan]:
    """The plans with their split pieces held as the module describes (plans without pieces unchanged)."""
    by_nr = {p.muni.nr: p for p in plans}
    owned: dict[str, SystemPlan] = {}  # the systems of whole split units, by divided unit
    out = []
    for plan in plans:
        pieces = piece_parts(plan.muni)
        if plan.muni.nr == HARAM:
            out.append(_haram_in_alesund(plan, by_nr.get(ALESUND)))
            continue
        if not pieces:
            out.append(plan)
            continue
        systems, borrowed, piece_systems = list(plan.systems), list(plan.borrowed), set()
        own_parts = {p for j, p in enumerate(plan.muni.parts) if j not in pieces}
        piece_codes = frozenset().union(*(split_codes_of(plan.muni, j) for j in pieces))
        takeovers = [t for t in plan.takeovers if t.part in own_parts]
        for j, divided in sorted(pieces.items()):
            split = split_of(divided)
            part = plan.muni.parts[j]
            if divided in ONE_UNEXPORTED_EPJ:
                holder = owned.get(divided)
                if holder is None:
                    holder = owned[divided] = _sys(plan.muni.nr, "s", None, 2, "SN", FIRST_SYSTEM_FROM,
                                                   "2019-12-31", None, tuple(sorted(split_codes_of(plan.muni, j))))
                    systems.append(holder)
                    piece_systems.add(holder.system)
                else:
                    borrowed.append(holder)
            elif divided in PIECE_EPJS:
                exported = plan.muni.nr == split.default  # type: ignore[union-attr]
                holder = _sys(plan.muni.nr, "t", FMT_A if exported else None, 4, "TY", FIRST_SYSTEM_FROM,
                              "2019-12-31", "2016-01-01" if exported else None,
                              tuple(sorted(split_codes_of(plan.muni, j))))
                systems.append(holder)
                piece_systems.add(holder.system)
            else:
                raise ValueError(f"no synthetic setup for the split of {divided}")
            on = day(split.date)  # type: ignore[union-attr]
            later = sorted({t.day for t in plan.takeovers if t.part in own_parts and t.day > on})
            takeovers += [Takeover(part, FIRST_SYSTEM_FROM, holder.system)]
            takeovers += [Takeover(part, when, _system_on(plan, when, own_parts)) for when in (on, *later)]
        # the municipality's own systems never held the pieces before the split
        systems = [s if s.system in piece_systems else
                   dataclasses.replace(s, kommuner=tuple(k for k in s.kommuner if k not in piece_codes))
                   for s in systems]
        weights = tuple(PIECE_WEIGHT if j in pieces else 1.0 for j in range(len(plan.muni.parts)))
        first_own = min(j for j in range(len(plan.muni.parts)) if j not in pieces)
        weights = tuple(2.0 if j == first_own else w for j, w in enumerate(weights))
        out.append(dataclasses.replace(plan, systems=tuple(systems), borrowed=tuple(borrowed),
                                       takeovers=tuple(sorted(takeovers, key=lambda t: (t.part, t.day))),
                                       part_weights=weights))
    return out


def _haram_in_alesund(plan: MunicipalityPlan, alesund: MunicipalityPlan | None) -> MunicipalityPlan:
    """Haram's part held by Ålesund's systems 2020–2023 (a never-exported stand-in when Ålesund is absent)."""
    part, merged, split = plan.muni.parts[0], day("2020-01-01"), day("2024-01-01")
    if alesund is None:
        stand_in = _sys(plan.muni.nr, "y", None, 2, "HY", merged, "2023-12-31", None, ("1507",))
        return dataclasses.replace(plan, systems=(*plan.systems, stand_in),
                                   takeovers=(*plan.takeovers, Takeover(part, merged, stand_in.system)))
    own = {alesund.muni.parts[0]}
    switches = sorted({t.day for t in alesund.takeovers if t.part in own and merged < t.day < split})
    window = [(when, _system_on(alesund, when, own)) for when in (merged, *switches)]
    borrowed = tuple(dict.fromkeys(alesund.system(s) for _, s in window))
    takeovers = (*plan.takeovers, *(Takeover(part, d, s) for d, s in window))
    return dataclasses.replace(plan, borrowed=borrowed, takeovers=tuple(sorted(takeovers, key=lambda t: t.day)))


def shared_systems(plan: MunicipalityPlan) -> list[tuple[SystemPlan, tuple[str, ...], int, int]]:
    """(system, units, first day, last day) for each exported borrowed system: `[[kommune.shared_epj]]`."""
    out = []
    for system in plan.borrowed:
        if not system.exported:
            continue
        for j, part in enumerate(plan.muni.parts):
            takes = sorted((t.day, t.system) for t in plan.takeovers if t.part == part)
            for k, (start, name) in enumerate(takes):
                if name != system.system:
                    continue
                end = takes[k + 1][0] - 1 if k + 1 < len(takes) else None
                years = [y for y in YEARS
                         if start <= day(f"{y}-12-31") and (end is None or day(f"{y}-01-01") <= end)]
                units = tuple(sorted({plan.muni.unit(j, y) for y in years}))
                out.append((system, units, start, end if end is not None else system.active_to))
    return out


def end_before_split_era(world: World, plans: list[MunicipalityPlan]) -> World:
    """End on the last day before it an episode of a piece first filed under a whole unit, then under a
    split one (Haram 1534, then Ålesund 1507), that ended while filed under the split unit.

    Otherwise its earlier records would be the piece's municipality's (1534 is Haram's) and its later
    ones the split's default's (an ended 1507 record is Ålesund's): one service reported by two
    municipalities, which the world's truth (one reporting municipality per episode) cannot say.
    """
    rows = []
    for i, plan in enumerate(plans):
        for j in range(len(plan.muni.parts)):
            years = [y for y in YEARS if split_of(plan.muni.unit(j, y)) is not None]
            if years and years[0] > FIRST_YEAR:
                split = split_of(plan.muni.unit(j, years[0]))
                rows.append((i, j, year_start(years[0]), day(split.date)))  # type: ignore[union-attr]
    if not rows:
        return world
    bounds = pl.DataFrame(rows, schema={"plan": pl.Int32, "part": pl.Int32, "_era": pl.Int32, "_split": pl.Int32},
                          orient="row")
    eps = world.episodes.join(bounds, on=["plan", "part"], how="left")
    cut = (pl.col("_era").is_not_null() & (pl.col("start") < pl.col("_era")) & (pl.col("end") >= pl.col("_era"))
           & (pl.col("end") < pl.col("_split")))
    eps = eps.with_columns(pl.when(cut).then(pl.col("_era") - 1).otherwise(pl.col("end")).cast(
        world.episodes["end"].dtype).alias("end")).drop("_era", "_split")
    ends = eps.select("eid", pl.col("end").alias("_end"))
    stops = (world.stops.join(ends, on="eid").filter(pl.col("from") <= pl.col("_end"))
             .with_columns(pl.min_horizontal("to", "_end").cast(world.stops["to"].dtype).alias("to")).drop("_end"))
    return World(
        world.persons, eps.select(world.episodes.columns), stops.select(world.stops.columns),
        world.provider_changes.join(ends, on="eid").filter(pl.col("date") <= pl.col("_end")).drop("_end"),
        world.hours_changes.join(ends, on="eid").filter(pl.col("date") <= pl.col("_end")).drop("_end"),
        world.diagnoses,
    )
