"""How each real service is held by the EPJ systems of its municipality over time.

A service lives in the system that holds its territory part on each day; an EPJ switch or
a merger cuts it into *segments*, one per system, and the later segment is a migrated
record that starts on the migration date. From the segments follow the ids (service,
stop, user) every system assigns, and for exported systems the registration history:
one version per registration, holding the whole record after it, which is what both EPJ
formats write (`registrations`). Annulled services, which never existed in the world, are added here
because they exist only in an EPJ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from .dates import OPEN, SPAN_END
from .registrations import person_rows, service_versions, stop_versions, unit_frame
from .sources import MunicipalityPlan
from .world import World


@dataclass
class Holdings:
    systems: pl.DataFrame  # one row per system of every plan
    segments: pl.DataFrame  # eid, system, sid, seg_start, seg_end, migrated, link, ...
    versions: pl.DataFrame  # registrations of service records in exported systems (annulled included)
    stops: pl.DataFrame  # world stops with the system and stop id that hold them
    stop_versions: pl.DataFrame  # registrations of stops in exported systems
    users: pl.DataFrame  # system, pid, user_no
    person_rows: pl.DataFrame  # registrations of persons in exported systems
    annulled: pl.DataFrame  # the annulled services: system, sid, pid, code, dates


def systems_frame(plans: list[MunicipalityPlan]) -> pl.DataFrame:
    rows = []
    for i, plan in enumerate(plans):
        for s in plan.systems:
            rows.append(
                {
                    "plan": i,
                    "system": s.system,
                    "kommune": s.kommune,
                    "fmt": s.fmt,
                    "exported": s.exported,
                    "prefix": f"{s.prefix}-",
                    "user_prefix": s.user_prefix,
                    "active_from": s.active_from,
                    "active_to": s.active_to if s.active_to else OPEN,
                    "history_from": s.history_from if s.history_from is not None else OPEN,
                    "link_prob": s.link_prob,
                    "stop_prefix": "P-" if s.fmt == "epj-b-jsonl" else "S-",
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "plan": pl.Int32,
            "system": pl.Utf8,
            "kommune": pl.Utf8,
            "fmt": pl.Utf8,
            "exported": pl.Boolean,
            "prefix": pl.Utf8,
            "user_prefix": pl.Utf8,
            "active_from": pl.Int32,
            "active_to": pl.Int32,
            "history_from": pl.Int32,
            "link_prob": pl.Float64,
            "stop_prefix": pl.Utf8,
        },
    )


def _timeline(plans: list[MunicipalityPlan]) -> pl.DataFrame:
    rows = []
    for i, plan in enumerate(plans):
        for j, part in enumerate(plan.muni.parts):
            takes = sorted((t.day, t.system) for t in plan.takeovers if t.part == part)
            for k, (start, system) in enumerate(takes):
                end = takes[k + 1][0] - 1 if k + 1 < len(takes) else OPEN
                rows.append((i, j, system, start, end))
    return pl.DataFrame(
        rows,
        schema={"plan": pl.Int32, "part": pl.Int32, "system": pl.Utf8, "t_from": pl.Int32, "t_to": pl.Int32},
        orient="row",
    )


def _cut_segments(
    rng: np.random.Generator, world: World, plans: list[MunicipalityPlan], systems: pl.DataFrame
) -> pl.DataFrame:
    eps = world.episodes.select(
        "eid", "pid", "plan", "part", "code", "start", "end", "decision", "planned_end"
    )
    seg = (
        eps.join(_timeline(plans), on=["plan", "part"], how="inner")
        .filter((pl.col("start") <= pl.col("t_to")) & (pl.col("end") >= pl.col("t_from")))
        .with_columns(
            pl.max_horizontal("start", "t_from").alias("seg_start"),
            pl.min_horizontal("end", "t_to").alias("seg_end"),
            (pl.col("start") < pl.col("t_from")).alias("migrated"),
            (pl.col("end") <= pl.col("t_to")).alias("ends_here"),
        )
        .sort(["eid", "t_from"])
    )
    seg = seg.with_columns(pl.col("system").shift(1).over("eid").alias("prev_system"))
    seg = seg.join(
        systems.select("system", "exported", "link_prob", "history_from", "active_to", "fmt", "prefix"),
        on="system",
        how="left",
    )
    prev_exported = systems.select(
        pl.col("system").alias("prev_system"), pl.col("exported").alias("prev_exported")
    )
    seg = seg.join(prev_exported, on="prev_system", how="left").sort(["eid", "t_from"])
    draw = rng.random(seg.height)
    seg = seg.with_columns(
        (
            pl.col("migrated")
            & pl.col("prev_exported").fill_null(False)
            & (pl.Series(draw) < pl.col("link_prob"))
        ).alias("link"),
        pl.when(pl.col("migrated"))
        .then(pl.col("t_from"))
        .otherwise(pl.max_horizontal("decision", "t_from"))
        .alias("first_reg"),
        pl.when(pl.col("migrated"))
        .then(pl.col("t_from"))
        .otherwise(pl.col("decision"))
        .alias("sys_decision"),
        # a system exports every service still active on or after its history_from
        (
            pl.col("exported")
            & (
                pl.when(pl.col("ends_here")).then(pl.col("end")).otherwise(pl.col("t_to"))
                >= pl.col("history_from")
            )
        ).alias("in_export"),
    )
    return seg


def _annulled(rng: np.random.Generator, seg: pl.DataFrame) -> pl.DataFrame:
    """A few services per exported system that were registered by mistake and annulled days later."""
    rows = []
    for system in seg.filter(pl.col("in_export"))["system"].unique().sort().to_list():
        cand = seg.filter((pl.col("system") == system) & pl.col("in_export")).with_columns(
            pl.max_horizontal("seg_start", "history_from").alias("lo"),
            pl.min_horizontal("seg_end", pl.lit(SPAN_END - 30)).alias("hi"),
        )
        cand = cand.filter(pl.col("hi") - pl.col("lo") > 20)
        if cand.height == 0:
            continue
        k = max(1, round(0.004 * cand.height))
        pick = cand[np.sort(rng.choice(cand.height, size=min(k, cand.height), replace=False)).tolist()]
        lo, hi = pick["lo"].to_numpy(), pick["hi"].to_numpy()
        reg = lo + np.floor(rng.random(pick.height) * (hi - lo)).astype(np.int64)
        for r, (row, when) in enumerate(zip(pick.iter_rows(named=True), reg.tolist(), strict=True)):
            rows.append(
                {
                    "system": system,
                    "pid": row["pid"],
                    "plan": row["plan"],
                    "part": row["part"],
                    "code": int((1, 4, 5, 6, 15)[r % 5]),
                    "reg": when,
                    "start": when + int(rng.integers(0, 15)),
                    "annul": when + int(rng.integers(1, 15)),
                }
            )
    schema = {
        "system": pl.Utf8,
        "pid": pl.Int64,
        "plan": pl.Int32,
        "part": pl.Int32,
        "code": pl.Int32,
        "reg": pl.Int32,
        "start": pl.Int32,
        "annul": pl.Int32,
    }
    frame = pl.DataFrame(rows, schema=schema)
    return frame.with_columns((-1 - pl.int_range(pl.len())).cast(pl.Int64).alias("eid"))


def _number(
    frame: pl.DataFrame, systems: pl.DataFrame, order_cols: list[str], prefix_col: str, width: int, name: str
) -> pl.DataFrame:
    """Per-system running numbers in order of first registration, formatted as ids."""
    frame = frame.sort(["system", *order_cols])
    frame = frame.with_columns(pl.int_range(1, pl.len() + 1).over("system").alias("_n"))
    frame = frame.join(systems.select("system", prefix_col), on="system", how="left")
    return frame.with_columns(
        pl.concat_str([pl.col(prefix_col), pl.col("_n").cast(pl.Utf8).str.zfill(width)]).alias(name)
    ).drop("_n", prefix_col)


def build_holdings(
    rng: np.random.Generator, world: World, plans: list[MunicipalityPlan]
) -> tuple[World, Holdings]:
    """Segments, ids and registration histories; returns the world with details that cannot be
    told apart at a migration (a change on the migration day, a stop across it) removed."""
    systems = systems_frame(plans)
    units = unit_frame(plans)
    seg = _cut_segments(rng, world, plans, systems)
    # details that straddle a segment boundary are dropped from the world
    stops = (
        world.stops.join(
            seg.select("eid", "system", "seg_start", "seg_end", "in_export", "t_to", "pid", "plan", "part"),
            on="eid",
        )
        .filter((pl.col("from") >= pl.col("seg_start")) & (pl.col("from") <= pl.col("seg_end")))
        .filter(pl.col("to") <= pl.col("seg_end"))
        # a stop ending on the last day its system holds the service would be completed the day after, by a
        # system that no longer has it: the export would show it open for ever
        .filter(pl.col("planned") | (pl.col("to") < pl.col("t_to")))
    )
    changes = (
        world.provider_changes.join(seg.select("eid", "seg_start", "seg_end"), on="eid")
        .filter((pl.col("date") > pl.col("seg_start") + 1) & (pl.col("date") <= pl.col("seg_end")))
        .select("eid", "date", "org")
        .sort(["eid", "date"])
    )
    hours = (
        world.hours_changes.join(seg.select("eid", "seg_start", "seg_end"), on="eid")
        .filter((pl.col("date") > pl.col("seg_start") + 1) & (pl.col("date") <= pl.col("seg_end")))
        .select("eid", "date", "hours")
        .sort(["eid", "date"])
    )
    world = World(
        world.persons,
        world.episodes,
        stops.select(world.stops.columns).sort(["eid", "from"]),
        changes,
        hours,
        world.diagnoses,
    )

    annulled = _annulled(rng, seg)
    # ids: services and annulled services share one sequence per system
    keys = pl.concat(
        [
            seg.select("system", "eid", pl.col("first_reg").alias("k1"), pl.lit(0).alias("k2")),
            annulled.select("system", "eid", pl.col("reg").alias("k1"), pl.lit(1).alias("k2")),
        ]
    )
    ids = _number(keys, systems, ["k1", "k2", "eid"], "prefix", 6, "sid").select("system", "eid", "sid")
    seg = seg.join(ids, on=["system", "eid"], how="left").sort(["eid", "t_from"])
    seg = seg.with_columns(pl.col("sid").shift(1).over("eid").alias("prev_sid"))
    annulled = annulled.join(ids, on=["system", "eid"], how="left")

    stops = stops.join(systems.select("system", "stop_prefix"), on="system")
    stops = (
        stops.sort(["system", "from", "eid"])
        .with_columns(
            pl.concat_str(
                [pl.col("stop_prefix"), pl.int_range(1, pl.len() + 1).over("system").cast(pl.Utf8)]
            ).alias("stop_id")
        )
        .drop("stop_prefix")
        .join(seg.select("eid", "system", "sid"), on=["eid", "system"])
    )

    # users: every system numbers the persons it holds in order of their first registration
    first = pl.concat(
        [
            seg.select("system", "pid", pl.col("first_reg").alias("k")),
            annulled.select("system", "pid", pl.col("reg").alias("k")),
        ]
    )
    first = first.group_by(["system", "pid"]).agg(pl.col("k").min())
    first = first.join(systems.select("system", "user_prefix"), on="system", how="left").sort(
        ["system", "k", "pid"]
    )
    first = first.with_columns(pl.int_range(pl.len()).over("system").alias("_n"))
    users = first.with_columns(
        pl.when(pl.col("user_prefix") == "c-")
        .then(pl.concat_str([pl.lit("c-"), (pl.col("_n") + 1).cast(pl.Utf8)]))
        .otherwise((pl.col("_n") + 1001).cast(pl.Utf8))
        .alias("user_no")
    ).select("system", "pid", "user_no")

    versions = service_versions(rng, world, seg, annulled, units)
    stop_history = stop_versions(rng, stops, units)
    rows = person_rows(rng, world, versions, systems, units)
    holdings = Holdings(systems, seg, versions, stops, stop_history, users, rows, annulled)
    return world, holdings


