"""How each real service is held by the EPJ systems of its municipality over time.

A service lives in the system that holds its territory part on each day; an EPJ switch or
a merger cuts it into *segments*, one per system, and the later segment is a migrated
record that starts on the migration date. From the segments follow the ids (service,
stop, user) every system assigns, and for exported systems the registration history:
one version per registration, holding the whole record after it, which is what both EPJ
formats write. Annulled services, which never existed in the world, are added here
because they exist only in an EPJ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from .dates import OPEN, SPAN_END, years_of
from .municipalities import FIRST_YEAR, LAST_YEAR, YEARS
from .sources import MunicipalityPlan
from .world import World

_WORKDAY_START = 7 * 3600 + 1800  # registrations happen from 07:30 local time
# order of registrations made on the same day: person first, then service, changes, end, stops
ORDER_PERSON, ORDER_NEW, ORDER_PROVIDER, ORDER_HOURS, ORDER_END, ORDER_STOP, ORDER_ANNUL = range(7)


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


def unit_frame(plans: list[MunicipalityPlan]) -> pl.DataFrame:
    """(plan, part, year) -> unit: the kommunenummer a part reported under in a data year."""
    rows = [
        (i, j, y, plan.muni.unit(j, y))
        for i, plan in enumerate(plans)
        for j in range(len(plan.muni.parts))
        for y in YEARS
    ]
    return pl.DataFrame(
        rows, schema={"plan": pl.Int32, "part": pl.Int32, "year": pl.Int32, "unit": pl.Utf8}, orient="row"
    )


def with_unit(frame: pl.DataFrame, units: pl.DataFrame, day_col: str, name: str = "unit") -> pl.DataFrame:
    """Add the unit valid on `day_col` (years before 2017 use the 2017 number)."""
    year = np.clip(years_of(frame[day_col].to_numpy()), FIRST_YEAR, LAST_YEAR)
    return (
        frame.with_columns(pl.Series("_year", year, dtype=pl.Int32))
        .join(units.rename({"year": "_year", "unit": name}), on=["plan", "part", "_year"], how="left")
        .drop("_year")
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


def _timestamps(rng: np.random.Generator, days: pl.Series, order: int | np.ndarray) -> np.ndarray:
    """Wall-clock seconds: the day, a working hour, and the same-day order of registrations."""
    n = len(days)
    return (
        days.to_numpy().astype(np.int64) * 86400
        + _WORKDAY_START
        + np.asarray(order) * 900
        + rng.integers(0, 800, n)
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


def _state_at(versions: pl.DataFrame, changes: pl.DataFrame, value: str, initial: pl.Expr) -> pl.DataFrame:
    """The value of a changing attribute at each version's registration day (as-of join)."""
    right = changes.rename({"date": "reg", value: f"_{value}"}).sort("reg")
    joined = versions.sort("reg").join_asof(
        right, on="reg", by="eid", strategy="backward", check_sortedness=False
    )
    return joined.with_columns(pl.coalesce(pl.col(f"_{value}"), initial).alias(value)).drop(f"_{value}")


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

    versions = _versions(rng, world, seg, annulled, units)
    stop_versions = _stop_versions(rng, stops, units)
    rows = person_rows(rng, world, versions, systems, units)
    holdings = Holdings(systems, seg, versions, stops, stop_versions, users, rows, annulled)
    return world, holdings


def _versions(
    rng: np.random.Generator, world: World, seg: pl.DataFrame, annulled: pl.DataFrame, units: pl.DataFrame
) -> pl.DataFrame:
    """Every registration of every exported service record, holding the record after it."""
    ex = seg.filter(pl.col("in_export"))
    base = ex.select(
        "eid",
        "system",
        "sid",
        "pid",
        "plan",
        "part",
        "code",
        "seg_start",
        "seg_end",
        "t_to",
        "end",
        "planned_end",
        "ends_here",
        "migrated",
        "link",
        "prev_system",
        "prev_sid",
        "sys_decision",
        "first_reg",
    )
    ny = base.select("eid", "system", pl.col("first_reg").alias("reg"), pl.lit(ORDER_NEW).alias("order"))
    prov = (
        world.provider_changes.join(base.select("eid", "system", "seg_start", "seg_end"), on="eid")
        .filter((pl.col("date") > pl.col("seg_start")) & (pl.col("date") <= pl.col("seg_end")))
        .select("eid", "system", pl.col("date").alias("reg"), pl.lit(ORDER_PROVIDER).alias("order"))
    )
    hrs = (
        world.hours_changes.join(base.select("eid", "system", "seg_start", "seg_end"), on="eid")
        .filter((pl.col("date") > pl.col("seg_start")) & (pl.col("date") <= pl.col("seg_end")))
        .select("eid", "system", pl.col("date").alias("reg"), pl.lit(ORDER_HOURS).alias("order"))
    )
    ending = base.filter(pl.col("ends_here") & (pl.col("end") <= SPAN_END) & ~pl.col("planned_end"))
    died = ending.join(world.persons.select("pid", "death"), on="pid", how="left").sort(["system", "eid"])
    lag = np.where(
        died["death"].to_numpy() == died["end"].to_numpy(),
        rng.integers(1, 11, died.height),
        rng.integers(0, 8, died.height),
    )
    end_reg = died.select(
        "eid",
        "system",
        pl.min_horizontal(pl.col("end") + pl.Series(lag, dtype=pl.Int32), "t_to", pl.lit(SPAN_END)).alias(
            "reg"
        ),
        pl.lit(ORDER_END).alias("order"),
    )
    ev = pl.concat([ny, prov, hrs, end_reg]).with_columns(
        pl.col("reg").cast(pl.Int32), pl.col("order").cast(pl.Int32)
    )
    ev = ev.join(base, on=["eid", "system"], how="left")
    ev = ev.with_columns(
        pl.when(pl.col("order") == ORDER_NEW)
        .then(pl.lit("NY"))
        .otherwise(pl.lit("ENDRET"))
        .alias("change_type"),
        pl.col("seg_start").alias("from"),
        pl.when(pl.col("planned_end") | (pl.col("order") == ORDER_END))
        .then(pl.col("end"))
        .otherwise(pl.lit(None, dtype=pl.Int32))
        .alias("to"),
    )
    eps = world.episodes.select("eid", pl.col("provider").alias("org0"), pl.col("hours").alias("hours0"))
    ev = ev.join(eps, on="eid", how="left")
    ev = _state_at(ev, world.provider_changes, "org", pl.col("org0"))
    ev = _state_at(ev, world.hours_changes, "hours", pl.col("hours0"))
    # an end registration fixes the end for every later version of the same record
    ev = ev.sort(["eid", "system", "reg", "order"]).with_columns(
        pl.col("to").forward_fill().over(["eid", "system"])
    )
    ev = ev.with_columns(
        pl.when(pl.col("migrated") & pl.col("link") & (pl.col("order") == ORDER_NEW))
        .then(pl.col("prev_system"))
        .alias("mig_system"),
        pl.when(pl.col("migrated") & pl.col("link") & (pl.col("order") == ORDER_NEW))
        .then(pl.col("prev_sid"))
        .alias("mig_sid"),
        pl.lit("ACTIVE").alias("status"),
    )
    ev = ev.select(
        "system",
        "eid",
        "sid",
        "pid",
        "plan",
        "part",
        "code",
        "reg",
        "order",
        "change_type",
        pl.col("sys_decision").alias("decision"),
        "from",
        "to",
        "org",
        "hours",
        "status",
        "mig_system",
        "mig_sid",
    )
    ann = _annulled_versions(annulled)
    ev = pl.concat([ev, ann.select(ev.columns)])
    ev = ev.with_columns(pl.Series("ts", np.zeros(ev.height, dtype=np.int64)))
    ev = ev.sort(["system", "eid", "reg", "order"])
    ev = ev.with_columns(pl.Series("ts", _timestamps(rng, ev["reg"], ev["order"].to_numpy())))
    return with_unit(ev, units, "reg")


def _annulled_versions(annulled: pl.DataFrame) -> pl.DataFrame:
    base = annulled.select(
        "system",
        "eid",
        "sid",
        "pid",
        "plan",
        "part",
        "code",
        pl.col("reg").alias("decision"),
        pl.col("start").alias("from"),
        pl.lit(None, dtype=pl.Int32).alias("to"),
        pl.lit(None, dtype=pl.Utf8).alias("org"),
        pl.lit(None, dtype=pl.Float64).alias("hours"),
        pl.lit(None, dtype=pl.Utf8).alias("mig_system"),
        pl.lit(None, dtype=pl.Utf8).alias("mig_sid"),
        "reg",
        "annul",
    )
    ny = base.with_columns(
        pl.lit(ORDER_NEW).alias("order"), pl.lit("NY").alias("change_type"), pl.lit("ACTIVE").alias("status")
    )
    cancel = base.with_columns(
        pl.col("annul").alias("reg"),
        pl.lit(ORDER_ANNUL).alias("order"),
        pl.lit("ANNULLERT").alias("change_type"),
        pl.lit("CANCELLED").alias("status"),
    )
    return pl.concat([ny, cancel]).with_columns(pl.col("order").cast(pl.Int32), pl.col("reg").cast(pl.Int32))


def _stop_versions(rng: np.random.Generator, stops: pl.DataFrame, units: pl.DataFrame) -> pl.DataFrame:
    """Stops are registered when they begin and completed when the service resumes (unless planned)."""
    ex = stops.filter(pl.col("in_export"))
    ny = ex.with_columns(
        pl.col("from").alias("reg"),
        pl.lit("NY").alias("change_type"),
        pl.when(pl.col("planned")).then(pl.col("to")).otherwise(pl.lit(None, dtype=pl.Int32)).alias("to_v"),
    )
    done = ex.filter(~pl.col("planned") & (pl.col("to") + 1 <= pl.min_horizontal("t_to", pl.lit(SPAN_END))))
    done = done.with_columns(
        (pl.col("to") + 1).alias("reg"), pl.lit("ENDRET").alias("change_type"), pl.col("to").alias("to_v")
    )
    cols = ["system", "eid", "sid", "stop_id", "pid", "plan", "part", "from", "to_v", "reg", "change_type"]
    ev = pl.concat([ny.select(cols), done.select(cols)]).with_columns(pl.col("reg").cast(pl.Int32))
    ev = ev.sort(["system", "stop_id", "reg", "change_type"], descending=[False, False, False, True])
    ev = ev.with_columns(pl.Series("ts", _timestamps(rng, ev["reg"], ORDER_STOP)))
    return with_unit(ev, units, "reg")


def person_rows(
    rng: np.random.Generator, world: World, versions: pl.DataFrame, systems: pl.DataFrame, units: pl.DataFrame
) -> pl.DataFrame:
    """Person registrations: the first one just before the person's first service record, then a
    new row when a D-nummer is replaced by a fødselsnummer and when a death is registered."""
    first = versions.group_by(["system", "pid"]).agg(pl.col("ts").min().alias("ts"), pl.col("reg").min())
    first = (
        first.join(world.persons, on="pid", how="left")
        .join(systems.select("system", "active_to"), on="system", how="left")
        .sort(["system", "pid"])
    )
    limit = pl.min_horizontal("active_to", pl.lit(SPAN_END))
    new = first.with_columns((pl.col("ts") - 120).alias("ts"), pl.lit(0).alias("kind"))
    repl = first.filter(
        pl.col("dnr").is_not_null()
        & (pl.col("dnr_until") < OPEN)
        & (pl.col("dnr_until") > pl.col("reg"))
        & (pl.col("dnr_until") <= limit)
    )
    repl = repl.with_columns(pl.col("dnr_until").alias("reg"), pl.lit(1).alias("kind"))
    lag = rng.integers(1, 11, first.height)
    dead = first.with_columns((pl.col("death") + pl.Series(lag, dtype=pl.Int32)).alias("death_reg"))
    dead = dead.filter(
        pl.col("death").is_not_null()
        & (pl.col("death_reg") <= limit)
        & (pl.col("death_reg") >= pl.col("reg"))
    )
    dead = dead.with_columns(pl.col("death_reg").alias("reg"), pl.lit(2).alias("kind")).drop("death_reg")
    later = pl.concat([repl, dead]).sort(["system", "pid", "reg", "kind"])
    later = later.with_columns(
        pl.Series("ts", _timestamps(rng, later["reg"], ORDER_PERSON) + 3600 * later["kind"].to_numpy())
    )
    rows = pl.concat([new.select(later.columns), later])
    rows = rows.with_columns(
        # the identifier known at the time of registration
        pl.when(pl.col("dnr").is_not_null() & (pl.col("reg") < pl.col("dnr_until").fill_null(OPEN)))
        .then(pl.col("dnr"))
        .otherwise(pl.col("fnr"))
        .alias("nid"),
        pl.when(pl.col("kind") == 2)
        .then(pl.col("death"))
        .otherwise(pl.lit(None, dtype=pl.Int32))
        .alias("death_v"),
    ).with_columns(
        pl.when(pl.col("nid") == pl.col("dnr")).then(pl.lit("DNR")).otherwise(pl.lit("FNR")).alias("id_type")
    )
    # the death row keeps a later identifier; a death registered after a replacement uses the fnr
    rows = rows.select(
        "system",
        "pid",
        "plan",
        "part",
        "reg",
        "ts",
        "kind",
        "nid",
        "id_type",
        "male",
        "birth",
        "bydel",
        "death_v",
    ).sort(["system", "pid", "ts"])
    return with_unit(rows, units, "reg")
