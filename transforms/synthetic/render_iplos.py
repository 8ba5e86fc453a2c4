"""Yearly IPLOS extracts: layout 3.6 (2017–2018) and 3.7 (2019–2025), one file per unit and year.

An extract is a state summary taken in January of the following year: every person with
a service active on some day of the year, each service once with its start (as the
producing EPJ holds it: a migrated record starts on the migration date), its end only if
it ended by 31 December, the provider and hours of the end of the year, and (3.7) the
stops overlapping the year. Service and user ids are those of the EPJ that held the
service last in the year, so ids change after an EPJ switch. Every Bruker/Person,
Tjeneste, MidlertidigStopp, Funksjonsvurdering/Vurdering and Diagnose start tag is on a
line of its own, so element line numbers are well defined.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from .dates import year_end
from .iplos_rows import KEYS, YearState, rows_36, rows_37
from .municipalities import YEARS
from .segments import Holdings
from .sources import MunicipalityPlan
from .textio import Corruption, assemble, unmarked, write_bytes
from .world import World

NS37 = "urn:no:iplos:aarsmelding:3.7"

# hook(source_file, layout, rows of the file) -> extra (corrupt) rows, or None
ExtraRows = Callable[[str, str, pl.DataFrame], pl.DataFrame | None]
ByteHook = Callable[[str, str, bytes], bytes]  # (source_file, rule id, clean bytes) -> corrupt bytes


def _iso(d: int) -> str:
    return (np.datetime64("1970-01-01") + np.timedelta64(int(d), "D")).astype(str)


def _no(d: int) -> str:
    y, m, dd = _iso(d).split("-")
    return f"{dd}.{m}.{y}"


def _header(
    layout: str, year: int, unit: str, extract_day: int, product: tuple[str, str, str], encoding: str
) -> str:
    name, vendor, version = product
    if layout == "3.6":
        return (
            f'<?xml version="1.0" encoding="{encoding}"?>\n<IPLOS versjon="3.6">\n'
            f"  <Hode><Aar>{year}</Aar><Kommunenr>{unit}</Kommunenr>"
            f"<Uttaksdato>{_no(extract_day)}</Uttaksdato>"
            f"<Leverandor>{vendor}</Leverandor><System>{name}</System></Hode>\n"
        )
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        f'<IplosMelding xmlns="{NS37}" versjon="3.7" aar="{year}" uttakDato="{_iso(extract_day)}" '
        f'leverandor="{vendor}" navnEPJ="{name}" versjonEPJ="{version}">\n  <Kommune kommuneNr="{unit}">\n'
    )


def _footer(layout: str) -> str:
    return "</IPLOS>\n" if layout == "3.6" else "  </Kommune>\n</IplosMelding>\n"


def _product(plan: MunicipalityPlan, unit: str, year: int) -> tuple[str, str, str]:
    """The EPJ that produced a unit's extract: the one holding its first part on 31 December."""
    part = next(p for j, p in enumerate(plan.muni.parts) if plan.muni.unit(j, year) == unit)
    takes = sorted((t.day, t.system) for t in plan.takeovers if t.part == part and t.day <= year_end(year))
    return plan.system(takes[-1][1]).product


def render_iplos(
    root: Path,
    plans: list[MunicipalityPlan],
    world: World,
    holdings: Holdings,
    seed: int,
    extra: ExtraRows,
    corrupt_bytes: ByteHook,
) -> tuple[int, list[Corruption], pl.DataFrame]:
    """Write every yearly file; returns (files written, planted corruptions, 3.7 ids seen per episode).

    A split unit's file holds the pieces of several plans (Snillfjord's 5012 those of Heim, Hitra and
    Orkland): it is written once, after every plan's rows, with the header of the first plan that has it.
    """
    plan_of_eid = world.episodes.select("eid", "plan")
    plan_of_pid = world.persons.select("pid", "plan")
    tables = {
        "episodes": world.episodes,
        "persons": world.persons,
        "stops": world.stops.join(plan_of_eid, on="eid"),
        "provider_changes": world.provider_changes.join(plan_of_eid, on="eid"),
        "hours_changes": world.hours_changes.join(plan_of_eid, on="eid"),
        "diagnoses": world.diagnoses.join(plan_of_pid, on="pid"),
        "segments": holdings.segments,
        "h_stops": holdings.stops,
        # by the person's plan: a system borrowed by another plan holds that plan's persons too
        "users": holdings.users.join(plan_of_pid, on="pid"),
    }
    # one partition per municipality up front: filtering national-size tables per file would dominate
    parted = {k: v.partition_by("plan", as_dict=True, maintain_order=True) for k, v in tables.items()}
    holders: dict[tuple[int, str], list[int]] = {}
    for i, plan in enumerate(plans):
        for year in YEARS:
            for unit in plan.muni.units_in_year(year):
                holders.setdefault((year, unit), []).append(i)
    pending: dict[tuple[int, str], list[_FileRows]] = {}
    files, marks, seen = 0, [], []
    for i, plan in enumerate(plans):
        mine = {k: parted[k].get((i,), tables[k].clear()) for k in tables}
        w = {
            k: mine[k]
            for k in ("episodes", "persons", "stops", "provider_changes", "hours_changes", "diagnoses")
        }
        h = {"segments": mine["segments"], "stops": mine["h_stops"], "users": mine["users"].drop("plan")}
        for year in YEARS:
            rng = np.random.default_rng([seed, int(plan.muni.nr), year])
            state = YearState(year, w, h, rng, plan)
            layout = "3.6" if year <= 2018 else "3.7"
            rows = unmarked(rows_36(state) if layout == "3.6" else rows_37(state))
            by_unit = rows.partition_by("unit", as_dict=True, maintain_order=True)
            for unit in plan.muni.units_in_year(year):
                services = state.services.filter(pl.col("unit") == unit).select("eid", "sid")
                part = _FileRows(by_unit.get((unit,), rows.clear()), services, state.extract_day)
                pending.setdefault((year, unit), []).append(part)
                if len(pending[(year, unit)]) < len(holders[(year, unit)]):
                    continue
                written, found, ids = _write_extract(root, plans[holders[(year, unit)][0]], year, unit, layout,
                                                     pending.pop((year, unit)), extra, corrupt_bytes)
                files += written
                marks += found
                seen += ids
    ids = pl.concat(seen) if seen else pl.DataFrame(schema={"eid": pl.Int64, "sid": pl.Utf8})
    return files, marks, ids.unique().sort(["eid", "sid"])


@dataclass(frozen=True)
class _FileRows:
    """One plan's share of a yearly file."""

    rows: pl.DataFrame
    services: pl.DataFrame  # eid, sid of its 3.7 services
    extract_day: int


def _write_extract(root: Path, plan: MunicipalityPlan, year: int, unit: str, layout: str, parts: list[_FileRows],
                   extra: ExtraRows, corrupt_bytes: ByteHook) -> tuple[int, list[Corruption], list[pl.DataFrame]]:
    """Write one yearly file from the plans' shares; `plan` (the first holder) gives header and status."""
    status = plan.extract_status(unit, year)
    if status == "missing":
        return 0, [], []
    relative = f"raw/iplos/{year}/{unit}.xml"
    unit_rows = pl.concat([p.rows for p in parts]) if len(parts) > 1 else parts[0].rows
    more = extra(relative, layout, unit_rows)
    if more is not None:
        unit_rows = pl.concat([unit_rows, more.select(unit_rows.columns)])
    encoding = "UTF-8" if (unit, year) in plan.utf8 else "ISO-8859-1"
    body, found = assemble(unit_rows, KEYS, 4, relative)
    text = _header(layout, year, unit, parts[0].extract_day, _product(plan, unit, year), encoding) + body
    text += _footer(layout)
    data = text.encode("utf-8" if encoding == "UTF-8" else "iso-8859-1")
    ids = []
    if status == "corrupted":
        data = corrupt_bytes(relative, plan.corrupted[(unit, year)], data)
        found = []
    elif layout == "3.7":
        ids = [p.services for p in parts]
    write_bytes(root, relative, data)
    return 1, found, ids
