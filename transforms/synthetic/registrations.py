"""Registration histories of the services, stops and persons that exported EPJ systems hold.

Both EPJ formats write one version per registration, holding the whole record after it; this
module dates those registrations (working hours, the same-day order below) and files each under
the unit valid on its day, from the segments `segments.build_holdings` cut.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from .dates import OPEN, SPAN_END, years_of
from .municipalities import FIRST_YEAR, LAST_YEAR, YEARS
from .sources import MunicipalityPlan
from .world import World

_WORKDAY_START = 7 * 3600 + 1800  # registrations happen from 07:30 local time
# order of registrations made on the same day: person first, then service, changes, end, stops
ORDER_PERSON, ORDER_NEW, ORDER_PROVIDER, ORDER_HOURS, ORDER_END, ORDER_STOP, ORDER_ANNUL = range(7)


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


def timestamps(rng: np.random.Generator, days: pl.Series, order: int | np.ndarray) -> np.ndarray:
    """Wall-clock seconds: the day, a working hour, and the same-day order of registrations."""
    n = len(days)
    return (
        days.to_numpy().astype(np.int64) * 86400
        + _WORKDAY_START
        + np.asarray(order) * 900
        + rng.integers(0, 800, n)
    )


def _state_at(versions: pl.DataFrame, changes: pl.DataFrame, value: str, initial: pl.Expr) -> pl.DataFrame:
    """The value of a changing attribute at each version's registration day (as-of join)."""
    right = changes.rename({"date": "reg", value: f"_{value}"}).sort("reg")
    joined = versions.sort("reg").join_asof(
        right, on="reg", by="eid", strategy="backward", check_sortedness=False
    )
    return joined.with_columns(pl.coalesce(pl.col(f"_{value}"), initial).alias(value)).drop(f"_{value}")


def service_versions(
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
    ev = ev.with_columns(pl.Series("ts", timestamps(rng, ev["reg"], ev["order"].to_numpy())))
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


def stop_versions(rng: np.random.Generator, stops: pl.DataFrame, units: pl.DataFrame) -> pl.DataFrame:
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
    ev = ev.with_columns(pl.Series("ts", timestamps(rng, ev["reg"], ORDER_STOP)))
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
        pl.Series("ts", timestamps(rng, later["reg"], ORDER_PERSON) + 3600 * later["kind"].to_numpy())
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
