"""Services the yearly extracts list but the current EPJ export does not stand behind.

An extract is produced by the EPJ of its time. When that EPJ later annuls a service (a
registration for the wrong person, found in an audit) or a later export simply no longer
holds it, the extracts of the years it ran still list it. Such a *phantom* never happened
in the world: the truth has no episode for it, and on the days the EPJ covers, the
reconstruction must not rebuild one from the extracts (timeline.md, "Coverage"). Each
phantom has a start, a provider change, a temporary stop and an end, so every kind of
notification a real service gets is sent about it while the EPJ still holds it.

The phantoms are added to the world and holdings that the renderers draw (never to those
the truth is written from), with their own random generator, so the rest of the world is
drawn exactly as before. `truth/extract_only.parquet` lists every extract that shows one:
the discrepancies reconciliation with the extracts must find.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from .dates import day, to_date, year_end, year_start
from .registrations import (
    ORDER_ANNUL,
    ORDER_END,
    ORDER_NEW,
    ORDER_PROVIDER,
    ORDER_STOP,
    timestamps,
    unit_frame,
    with_unit,
)
from .segments import Holdings
from .sources import MunicipalityPlan
from .world import World

ANNULLED = "annulled_in_epj"
MISSING = "missing_from_epj"


@dataclass(frozen=True)
class PhantomPlan:
    """One phantom: where, which kind, and its dates (ISO strings)."""

    feature: str
    system_letter: str
    kind: str
    code: int
    start: str
    provider_change: str
    stop: tuple[str, str]
    end: str
    annulled: str | None = None  # the day the EPJ annulled it (kind ANNULLED)


# every year a phantom runs is covered by the EPJ on every day, and its extract is readable
PHANTOMS = (
    PhantomPlan("trondheim", "b", ANNULLED, 6, "2022-03-07", "2023-02-01", ("2022-10-03", "2022-10-16"),
                "2023-09-20", annulled="2024-05-13"),
    PhantomPlan("heroy", "a", ANNULLED, 1, "2023-02-06", "2023-11-06", ("2023-05-08", "2023-05-19"),
                "2024-06-14", annulled="2025-03-10"),
    PhantomPlan("drammen", "b", MISSING, 4, "2023-03-06", "2023-12-04", ("2023-06-05", "2023-06-25"),
                "2024-08-30"),
    PhantomPlan("heroy", "a", MISSING, 5, "2023-04-03", "2023-08-07", ("2023-09-04", "2023-09-10"),
                "2024-02-28"),
)
PHANTOM_EID_BASE = 10**12  # far above every real episode id; the truth never joins them
HOURS = 4.0

TRUTH_SCHEMA = {"reporting_kommune": pl.Utf8, "unit": pl.Utf8, "year": pl.Int32, "kind": pl.Utf8,
                "system": pl.Utf8, "service_id": pl.Utf8, "fid": pl.Utf8, "service_code": pl.Utf8,
                "start_date": pl.Date, "end_date": pl.Date, "annulled_on": pl.Date}


@dataclass(frozen=True)
class Phantoms:
    """The world and holdings to render (the phantoms included), and the truth about them."""

    world: World
    holdings: Holdings
    truth: pl.DataFrame  # TRUTH_SCHEMA: one row per extract that lists a phantom


def _next_number(ids: pl.Series, prefix: str) -> int:
    numbers = ids.drop_nulls().filter(ids.drop_nulls().str.starts_with(prefix)).str.slice(len(prefix))
    return int(numbers.cast(pl.Int64, strict=False).max() or 0) + 1


def _person(holdings: Holdings, world: World, system: str, code: int, start: int, end: int,
            rng: np.random.Generator) -> dict:
    """A person the system holds from before the phantom until after it, alive, with no D-nummer, and
    without a service of the phantom's code near its dates (two allocations of one code stay apart)."""
    seg = holdings.segments.filter((pl.col("system") == system) & pl.col("in_export"))
    held = (seg.group_by("pid", "plan", "part").agg(pl.col("first_reg").min(), pl.col("seg_end").max())
            .filter((pl.col("first_reg") < start - 30) & (pl.col("seg_end") > end)))
    persons = world.persons.filter(pl.col("dnr").is_null() & (pl.col("death").is_null() | (pl.col("death") > end)))
    same_code = world.episodes.filter((pl.col("code") == code) & (pl.col("start") <= end + 60)
                                      & (pl.col("end") >= start - 60))
    candidates = (held.join(persons.select("pid"), on="pid").join(same_code.select("pid"), on="pid", how="anti")
                  .sort("pid"))
    if candidates.height == 0:
        raise RuntimeError(f"no person of {system} can carry a phantom service")
    return candidates.row(int(rng.integers(0, candidates.height)), named=True)


def plant_phantoms(seed: int, plans: list[MunicipalityPlan], world: World, holdings: Holdings) -> Phantoms:
    """Add `PHANTOMS` (those whose municipality is in the plans) to what the renderers draw."""
    rng = np.random.default_rng([seed, 13])
    units = unit_frame(plans)
    features = {p.feature: i for i, p in enumerate(plans) if p.feature}
    episodes, changes, w_stops, segments, versions, h_stops, stop_versions, truth = ([] for _ in range(8))
    sids = pl.concat([holdings.segments["sid"], holdings.annulled["sid"]])
    for n, spec in enumerate(p for p in PHANTOMS if p.feature in features):
        plan_no = features[spec.feature]
        plan = plans[plan_no]
        system = plan.system(f"epj{plan.muni.nr}{spec.system_letter}")
        start, end, change = day(spec.start), day(spec.end), day(spec.provider_change)
        stop_from, stop_to = (day(d) for d in spec.stop)
        who = _person(holdings, world, system.system, spec.code, start, end, rng)
        eid = PHANTOM_EID_BASE + n
        sid = f"{system.prefix}-{_next_number(sids, system.prefix + '-'):06d}"
        sids = pl.concat([sids, pl.Series([sid])])
        stop_prefix = "P-" if system.fmt == "epj-b-jsonl" else "S-"
        system_stops = holdings.stops.filter(pl.col("system") == system.system)["stop_id"]
        stop_id = f"{stop_prefix}{_next_number(system_stops, stop_prefix) + n}"
        orgs = plan.providers[:2]
        decision = start - 5
        base = {"eid": eid, "pid": who["pid"], "plan": plan_no, "part": who["part"], "code": spec.code}
        episodes.append({**base, "original_code": spec.code, "decision": decision, "start": start, "end": end,
                         "planned_end": False, "hours": HOURS, "provider": orgs[0]})
        changes.append({"eid": eid, "date": change, "org": orgs[1]})
        w_stops.append({"eid": eid, "from": stop_from, "to": stop_to, "planned": False})
        segments.append({**base, "system": system.system, "sid": sid, "seg_start": start, "seg_end": end,
                         "sys_decision": decision, "first_reg": decision, "in_export": spec.kind == ANNULLED})
        h_stops.append({**base, "system": system.system, "sid": sid, "stop_id": stop_id, "from": stop_from,
                        "to": stop_to, "planned": False})
        if spec.kind == ANNULLED:
            record = {**base, "system": system.system, "sid": sid, "decision": decision, "from": start,
                      "hours": HOURS, "status": "ACTIVE", "mig_system": None, "mig_sid": None}
            versions += [
                {**record, "reg": decision, "order": ORDER_NEW, "change_type": "NY", "to": None, "org": orgs[0]},
                {**record, "reg": change, "order": ORDER_PROVIDER, "change_type": "ENDRET", "to": None,
                 "org": orgs[1]},
                {**record, "reg": end + 2, "order": ORDER_END, "change_type": "ENDRET", "to": end, "org": orgs[1]},
                {**record, "reg": day(spec.annulled), "order": ORDER_ANNUL, "change_type": "ANNULLERT", "to": end,
                 "org": orgs[1], "status": "CANCELLED"},
            ]
            stop = {**base, "system": system.system, "sid": sid, "stop_id": stop_id, "from": stop_from}
            stop_versions += [{**stop, "to_v": None, "reg": stop_from, "change_type": "NY"},
                              {**stop, "to_v": stop_to, "reg": stop_to + 1, "change_type": "ENDRET"}]
        for year in range(to_date(start).year, to_date(end).year + 1):
            if not (year_start(year) <= end and start <= year_end(year)):
                continue
            truth.append({"reporting_kommune": plan.muni.nr, "unit": plan.muni.unit(who["part"], year),
                          "year": year, "kind": spec.kind, "system": system.system, "service_id": sid,
                          "pid": who["pid"], "service_code": str(spec.code), "start_date": to_date(start),
                          "end_date": to_date(end),
                          "annulled_on": to_date(day(spec.annulled)) if spec.annulled else None})
    if not episodes:
        return Phantoms(world, holdings, pl.DataFrame(schema=TRUTH_SCHEMA))
    rendered_world = replace(
        world,
        episodes=_append(world.episodes, episodes),
        provider_changes=_append(world.provider_changes, changes),
        stops=_append(world.stops, w_stops),
    )
    rendered = replace(
        holdings,
        segments=_append(holdings.segments, segments),
        versions=_append(holdings.versions, _timed(rng, versions, units, "order")),
        stops=_append(holdings.stops, h_stops),
        stop_versions=_append(holdings.stop_versions, _timed(rng, stop_versions, units, ORDER_STOP)),
    )
    fids = world.persons.select("pid", pl.coalesce("fnr", "dnr").alias("fid"))
    table = (pl.DataFrame(truth).join(fids, on="pid", how="left")
             .select(list(TRUTH_SCHEMA)).cast(TRUTH_SCHEMA).sort("reporting_kommune", "service_id", "year"))
    return Phantoms(rendered_world, rendered, table)


def _timed(rng: np.random.Generator, rows: list[dict], units: pl.DataFrame, order: str | int) -> pl.DataFrame:
    """Registration rows with their wall-clock time and the unit valid on their day."""
    if not rows:
        return pl.DataFrame()
    frame = pl.DataFrame(rows).with_columns(pl.col("reg").cast(pl.Int32), pl.col("plan", "part").cast(pl.Int32))
    order_of = frame["order"].to_numpy() if isinstance(order, str) else order
    frame = frame.with_columns(pl.Series("ts", timestamps(rng, frame["reg"], order_of)))
    return with_unit(frame, units, "reg")


def _append(frame: pl.DataFrame, rows: list[dict] | pl.DataFrame) -> pl.DataFrame:
    """`frame` with the phantom rows, in its own schema (columns a phantom has no value for stay null)."""
    extra = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(rows)
    if extra.height == 0:
        return frame
    extra = extra.select([c for c in frame.columns if c in extra.columns])
    return pl.concat([frame, extra.cast({c: frame.schema[c] for c in extra.columns})], how="diagonal")
