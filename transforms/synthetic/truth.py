"""Ground truth written next to the raw files, as Parquet under `truth/`.

It is test material for the pipeline: the real episodes (with the ids each source used
for them), stops, provider changes, persons, annulled services, the sources that exist,
the coverage gaps the plans create and the planted corruptions. Raw identifiers are
allowed here because every one of them is synthetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from transforms.reference.successions import split_of

from .dates import OPEN, SPAN_END, day, to_date, year_end, year_start, years_of
from .municipalities import YEARS
from .segments import Holdings
from .sources import MunicipalityPlan
from .split_plans import shared_systems
from .textio import Corruption
from .world import World


def _date(expr: pl.Expr) -> pl.Expr:
    """A day number as a date, null beyond the span (still open / not yet happened on 2025-12-31)."""
    return pl.when(expr <= SPAN_END).then(expr).otherwise(None).cast(pl.Date)


def _plan_table(plans: list[MunicipalityPlan]) -> pl.DataFrame:
    return pl.DataFrame(
        {"plan": list(range(len(plans))), "reporting_kommune": [p.muni.nr for p in plans]},
        schema={"plan": pl.Int32, "reporting_kommune": pl.Utf8},
    )


def _present_years(plans: list[MunicipalityPlan]) -> pl.DataFrame:
    """(plan, part, year) for which a readable yearly file holds the part."""
    rows = [
        (i, j, y)
        for i, p in enumerate(plans)
        for j in range(len(p.muni.parts))
        for y in YEARS
        if p.extract_status(p.muni.unit(j, y), y) == "present"
    ]
    return pl.DataFrame(rows, schema={"plan": pl.Int32, "part": pl.Int32, "year": pl.Int32}, orient="row")


def _split_parts(plans: list[MunicipalityPlan]) -> pl.DataFrame:
    """(plan, part, divided_unit, split_from, split_to, split_day, default_kommune): the parts filed under a
    split unit (days split_from..split_to), the day it was divided and the split's default successor."""
    present = {p.muni.nr for p in plans}
    rows = []
    for i, p in enumerate(plans):
        for j in range(len(p.muni.parts)):
            years = [y for y in YEARS if split_of(p.muni.unit(j, y)) is not None]
            if years:
                split = split_of(p.muni.unit(j, years[0]))
                default = split.default if split.default in present else None  # type: ignore[union-attr]
                rows.append((i, j, split.unit, year_start(years[0]), year_end(years[-1]),  # type: ignore[union-attr]
                             day(split.date), default))  # type: ignore[union-attr]
    return pl.DataFrame(rows, orient="row", schema={
        "plan": pl.Int32, "part": pl.Int32, "divided_unit": pl.Utf8, "split_from": pl.Int32, "split_to": pl.Int32,
        "split_day": pl.Int32, "default_kommune": pl.Utf8})


def split_assignments_table(plans: list[MunicipalityPlan], world: World, holdings: Holdings) -> pl.DataFrame:
    """The episodes with records filed under a split unit: the successor that reports them by the rules
    (one that ended before the split goes to the split's default) and the rules that may place their
    records (configuration for an export only one successor configures; else continuation or default)."""
    parts = _split_parts(plans)
    single = {s.system for p in plans for s in p.systems if s.exported and s.system.endswith("t")}
    eps = world.episodes.join(parts, on=["plan", "part"]).filter(
        (pl.col("start") <= pl.col("split_to")) & (pl.col("end") >= pl.col("split_from")))
    in_single = holdings.segments.filter(pl.col("system").is_in(sorted(single)) & pl.col("in_export"))["eid"]
    ended = pl.col("end") < pl.col("split_day")
    persons = world.persons.select("pid", pl.coalesce("fnr", "dnr").alias("fid"))
    return (
        eps.join(persons, on="pid").join(_plan_table(plans), on="plan")
        .with_columns(
            pl.when(ended).then(pl.col("default_kommune")).otherwise(pl.col("reporting_kommune")).alias("kommune"),
            pl.concat_list([
                pl.when(ended).then(pl.lit("default")).otherwise(pl.lit("continuation")),
                pl.when(pl.col("eid").is_in(in_single.implode())).then(pl.lit("configuration")),
            ]).list.drop_nulls().alias("rules"))
        .sort("eid")
        .select(pl.col("eid").alias("truth_episode_id"), "fid", pl.col("code").alias("service_code"),
                _date(pl.col("start")).alias("start_date"), _date(pl.col("end")).alias("end_date"),
                "divided_unit", pl.col("reporting_kommune").alias("piece_of"), "kommune", "rules")
    )


def episodes_table(
    plans: list[MunicipalityPlan], world: World, holdings: Holdings, iplos_ids: pl.DataFrame
) -> pl.DataFrame:
    persons = world.persons.select("pid", pl.coalesce("fnr", "dnr").alias("fid"), "death")
    seg = holdings.segments.sort(["eid", "t_from"])
    epj = (
        seg.filter(pl.col("in_export"))
        .group_by("eid", maintain_order=True)
        .agg(
            pl.concat_str([pl.col("system"), pl.lit(":"), pl.col("sid")]).alias("epj_ids"),
            pl.when(pl.col("migrated").any())
            .then(pl.col("link").filter(pl.col("migrated")).any())
            .alias("migrated_with_link"),
        )
    )
    ids37 = iplos_ids.group_by("eid", maintain_order=True).agg(pl.col("sid").alias("iplos37_ids"))
    eps = world.episodes
    # a service is observable when an export holds it or a readable yearly file covers a year it was active in
    years = (
        eps.select("eid", "plan", "part", "start", "end")
        .with_columns(
            pl.int_ranges(
                pl.max_horizontal(pl.col("start").cast(pl.Date).dt.year(), pl.lit(YEARS[0])),
                pl.min_horizontal(
                    pl.col("end").clip(upper_bound=SPAN_END).cast(pl.Date).dt.year(), pl.lit(YEARS[-1])
                )
                + 1,
                dtype=pl.Int32,
            ).alias("year")
        )
        .explode("year", empty_as_null=True)
    )
    in_files = years.join(_present_years(plans), on=["plan", "part", "year"]).select("eid").unique()
    parts = pl.DataFrame(
        [(i, j, code) for i, p in enumerate(plans) for j, code in enumerate(p.muni.parts)],
        schema={"plan": pl.Int32, "part": pl.Int32, "part_2017": pl.Utf8},
        orient="row",
    )
    # an episode of a split unit's piece that ended before the split is reported by the split's default
    split = split_assignments_table(plans, world, holdings).select(
        pl.col("truth_episode_id").alias("eid"), pl.col("kommune").alias("_split_kommune"))
    out = (
        eps.join(persons, on="pid", how="left")
        .join(_plan_table(plans), on="plan", how="left")
        .join(split, on="eid", how="left")
        .with_columns(pl.when(pl.col("eid").is_in(split["eid"].implode())).then(pl.col("_split_kommune"))
                      .otherwise(pl.col("reporting_kommune")).alias("reporting_kommune"))
        .join(parts, on=["plan", "part"], how="left")
        .join(epj, on="eid", how="left")
        .join(ids37, on="eid", how="left")
        .with_columns(pl.col("eid").is_in(in_files["eid"].implode()).alias("_in_files"))
    )
    return out.sort("eid").select(
        pl.col("eid").alias("truth_episode_id"),
        "reporting_kommune",
        "fid",
        pl.col("code").alias("service_code"),
        "original_code",
        _date(pl.col("start")).alias("start_date"),
        _date(pl.col("end")).alias("end_date"),
        pl.when(pl.col("end") > SPAN_END)
        .then(pl.lit("open"))
        .when(pl.col("end") == pl.col("death"))
        .then(pl.lit("death"))
        .otherwise(pl.lit("ended"))
        .alias("end_reason"),
        pl.col("epj_ids").fill_null(pl.lit([], dtype=pl.List(pl.Utf8))),
        pl.col("iplos37_ids").fill_null(pl.lit([], dtype=pl.List(pl.Utf8))),
        "migrated_with_link",
        pl.col("part_2017").alias("part_unit_2017"),
        pl.col("provider").alias("initial_provider_org"),
        (pl.col("epj_ids").list.len().fill_null(0) > 0).or_(pl.col("_in_files")).alias("observable"),
    )


def persons_table(plans: list[MunicipalityPlan], world: World) -> pl.DataFrame:
    p = world.persons.join(_plan_table(plans), on="plan", how="left")
    replaced = pl.col("dnr").is_not_null() & pl.col("fnr").is_not_null()
    return p.sort("pid").select(
        pl.coalesce("fnr", "dnr").alias("fid"),
        pl.when(replaced)
        .then(pl.concat_list([pl.col("dnr")]))
        .otherwise(pl.lit([], dtype=pl.List(pl.Utf8)))
        .alias("previous_ids"),
        pl.when(replaced).then(_date(pl.col("dnr_until"))).alias("id_replaced_on"),
        "reporting_kommune",
        pl.col("birth").cast(pl.Date).dt.year().alias("birth_year"),
        pl.when(pl.col("male")).then(pl.lit(1)).otherwise(pl.lit(2)).cast(pl.Int32).alias("sex"),
        _date(pl.col("death")).alias("death_date"),
    )


def sources_table(plans: list[MunicipalityPlan]) -> pl.DataFrame:
    rows = []
    for p in plans:
        for year in YEARS:
            for unit in p.muni.units_in_year(year):
                status = p.extract_status(unit, year)
                rows.append(
                    {
                        "reporting_kommune": p.muni.nr,
                        "kind": "iplos",
                        "unit": unit,
                        "year": year,
                        "layout": "3.6" if year <= 2018 else "3.7",
                        "status": status,
                        "encoding": None
                        if status == "missing"
                        else (
                            "UTF-8"
                            if (unit, year) in p.utf8
                            or p.corrupted.get((unit, year)) == "file.encoding_mismatch"
                            else "ISO-8859-1"
                        ),
                        "rule_id": p.corrupted.get((unit, year)),
                        "path": f"raw/iplos/{year}/{unit}.xml",
                        "system": None,
                        "format": None,
                        "active_from": None,
                        "active_to": None,
                        "history_from": None,
                        "kommuner": None,
                    }
                )
        for s in p.systems:
            rows.append(
                {
                    "reporting_kommune": p.muni.nr,
                    "kind": "epj",
                    "unit": None,
                    "year": None,
                    "layout": None,
                    "status": "present" if s.exported else "not_exported",
                    "encoding": None,
                    "rule_id": None,
                    "path": s.path if s.exported else None,
                    "system": s.system,
                    "format": s.fmt,
                    "active_from": to_date(s.active_from),
                    "active_to": to_date(s.active_to) if s.active_to else None,
                    "history_from": to_date(s.history_from) if s.history_from is not None else None,
                    "kommuner": list(s.kommuner),
                }
            )
    schema = {
        "reporting_kommune": pl.Utf8,
        "kind": pl.Utf8,
        "unit": pl.Utf8,
        "year": pl.Int32,
        "layout": pl.Utf8,
        "status": pl.Utf8,
        "encoding": pl.Utf8,
        "rule_id": pl.Utf8,
        "path": pl.Utf8,
        "system": pl.Utf8,
        "format": pl.Utf8,
        "active_from": pl.Date,
        "active_to": pl.Date,
        "history_from": pl.Date,
        "kommuner": pl.List(pl.Utf8),
    }
    return pl.DataFrame(rows, schema=schema)


def gaps_table(plans: list[MunicipalityPlan]) -> pl.DataFrame:
    """Coverage gaps by the rule of timeline.md: no exported EPJ history and no readable extract."""
    rows = []
    for p in plans:
        for unit in p.muni.all_units():
            days = np.concatenate(
                [np.arange(year_start(y), year_end(y) + 1) for y in YEARS if unit in p.muni.units_in_year(y)]
            )
            covered = np.zeros(len(days), dtype=bool)
            for s in p.systems:
                if s.exported and unit in s.kommuner:
                    hi = s.active_to if s.active_to is not None else OPEN
                    covered |= (days >= max(s.active_from, s.history_from or OPEN)) & (days <= hi)
            for s, units, first, last in shared_systems(p):
                if unit in units:
                    hi = last if last is not None else OPEN
                    covered |= (days >= max(first, s.history_from or OPEN)) & (days <= hi)
            years = years_of(days)
            for y in np.unique(years):
                if p.extract_status(unit, int(y)) == "present":
                    covered |= years == y
            gap = days[~covered]
            if len(gap) == 0:
                continue
            breaks = np.flatnonzero(np.diff(gap) != 1)
            firsts = np.concatenate([[gap[0]], gap[breaks + 1]])
            lasts = np.concatenate([gap[breaks], [gap[-1]]])
            rows += [
                (p.muni.nr, unit, to_date(a), to_date(b), int(b - a + 1))
                for a, b in zip(firsts, lasts, strict=True)
            ]
    return pl.DataFrame(
        rows,
        schema={
            "reporting_kommune": pl.Utf8,
            "unit": pl.Utf8,
            "first_day": pl.Date,
            "last_day": pl.Date,
            "days": pl.Int32,
        },
        orient="row",
    )


def _provider_changes(world: World, holdings: Holdings) -> pl.DataFrame:
    """Changes, flagged by whether an EPJ export registered them (else only yearly files show them)."""
    seg = holdings.segments.select("eid", "seg_start", "seg_end", "in_export")
    return (
        world.provider_changes.join(seg, on="eid")
        .filter((pl.col("date") > pl.col("seg_start")) & (pl.col("date") <= pl.col("seg_end")))
        .sort(["eid", "date"])
        .select(
            pl.col("eid").alias("truth_episode_id"),
            _date(pl.col("date")).alias("change_date"),
            pl.col("org").alias("provider_org"),
            pl.col("in_export").alias("in_epj_export"),
        )
    )


def write_truth(
    root: Path,
    plans: list[MunicipalityPlan],
    world: World,
    holdings: Holdings,
    iplos_ids: pl.DataFrame,
    corruptions: list[Corruption],
    extra: dict[str, pl.DataFrame] | None = None,
) -> dict[str, int]:
    """Write every truth table (and `extra` ones, by name); returns row counts per table."""
    out = root / "truth"
    out.mkdir(parents=True, exist_ok=True)
    persons = world.persons.select("pid", pl.coalesce("fnr", "dnr").alias("fid"))
    tables = {
        "episodes": episodes_table(plans, world, holdings, iplos_ids),
        "stops": holdings.stops.sort(["eid", "from"]).select(
            pl.col("eid").alias("truth_episode_id"),
            pl.concat_str([pl.col("system"), pl.lit(":"), pl.col("stop_id")]).alias("stop_id"),
            _date(pl.col("from")).alias("from_date"),
            _date(pl.col("to")).alias("to_date"),
            pl.col("in_export").alias("in_epj_export"),
        ),
        "provider_changes": _provider_changes(world, holdings),
        "persons": persons_table(plans, world),
        "annulled": holdings.annulled.join(persons, on="pid", how="left")
        .join(_plan_table(plans), on="plan")
        .sort(["system", "sid"])
        .select(
            "system",
            pl.col("sid").alias("service_id"),
            "reporting_kommune",
            "fid",
            pl.col("code").alias("service_code"),
            _date(pl.col("reg")).alias("registered"),
            _date(pl.col("annul")).alias("annulled"),
        ),
        "sources": sources_table(plans),
        "split_assignments": split_assignments_table(plans, world, holdings),
        "gaps": gaps_table(plans),
        "corruptions": pl.DataFrame(
            [(c.source_file, c.line, c.record_kind, c.rule_id, c.description) for c in corruptions],
            schema={
                "source_file": pl.Utf8,
                "line": pl.Int64,
                "record_kind": pl.Utf8,
                "rule_id": pl.Utf8,
                "description": pl.Utf8,
            },
            orient="row",
        ).sort(["source_file", "line", "rule_id"], nulls_last=True),
        **(extra or {}),
    }
    for name, frame in tables.items():
        frame.write_parquet(out / f"{name}.parquet", compression="zstd", statistics=True)
    return {name: frame.height for name, frame in tables.items()}
