"""The synthetic world: persons and the services they really had, independent of any source.

Everything here is the ground truth that the renderers later show through imperfect
sources. The model follows the shape of Norwegian care data: most users are old; an old
person's care starts at home (home nursing, practical help, safety alarm, ...), with short
stays in between, often ends in a long-term stay, and death ends every service. Younger
users have longer, steadier allocations (BPA, support contact, housing). All draws are
vectorised over every person of every municipality at once, so the national scale is a
few numpy passes rather than a loop over a million people.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from .dates import OPEN, SPAN_END, SPAN_START, WORLD_START, day
from .ids import person_numbers
from .sources import MunicipalityPlan

YEAR = 365.25
# Arrivals drawn per person wanted over the nine years; and persons over nine years per user
# active on one day. Both measured on this model (demo and national runs).
ARRIVALS_PER_PERSON = 1.68
PERSONS_PER_ACTIVE = 3.45

# (code, probability, probability of ending before the phase ends)
_ELDERLY_HOME = (
    (15, 0.78, 0.25),
    (1, 0.42, 0.35),
    (6, 0.45, 0.12),
    (5, 0.08, 0.4),
    (4, 0.07, 0.4),
    (29, 0.10, 0.1),
    (17, 0.03, 0.4),
    (27, 0.03, 0.3),
    (28, 0.03, 0.3),
    (26, 0.01, 0.3),
    (2, 0.01, 0.5),
    (7, 0.01, 0.5),
    (11, 0.01, 0.4),
)
_YOUNGER = (
    (15, 0.50, 0.4),
    (1, 0.30, 0.4),
    (3, 0.10, 0.2),
    (9, 0.25, 0.4),
    (11, 0.08, 0.3),
    (7, 0.10, 0.3),
    (8, 0.06, 0.3),
    (29, 0.20, 0.2),
    (2, 0.08, 0.5),
    (4, 0.10, 0.3),
    (22, 0.01, 0.5),
    (6, 0.05, 0.2),
    (5, 0.02, 0.4),
    (17, 0.02, 0.4),
)
_SHORT_STAYS = ((18, 0.30, 8.0), (19, 0.25, 21.0), (20, 0.45, 12.0))  # code, share, median days
# hours per week by decision: code -> (median, sigma); codes absent here report no hours
_HOURS = {
    15: (3.5, 0.8),
    1: (2.0, 0.6),
    2: (3.0, 0.6),
    3: (25.0, 0.7),
    4: (12.0, 0.5),
    7: (8.0, 0.6),
    9: (3.0, 0.5),
    11: (10.0, 0.6),
    17: (15.0, 0.5),
    22: (56.0, 0.3),
}
_NO_PROVIDER = (11, 29)
_PROVIDER_CHANGE_CODES = (1, 2, 3, 4, 5, 6, 7, 9, 15, 17, 21)
_STOP_CODES = (1, 2, 3, 4, 5, 6, 9, 15, 17)
SHORT_STAY_CODES = (18, 19, 20, 25)
HOUSING = 29
DETAIL_FROM = day("2015-01-01")  # stops and changes are generated from here on
_DIAGNOSES_OLD = ("F03", "I50", "J44", "E11", "I63", "C34", "M81", "G20", "S72", "N18", "I10", "F32")
_DIAGNOSES_YOUNG = ("F20", "F32", "Q90", "G80", "F84", "G35", "F10", "E10")
_ICPC2 = ("P70", "K77", "R95", "T90", "K90", "L95", "N87", "K86", "P72", "P76")


@dataclass
class World:
    """Persons, episodes and their dated details; day columns are Int32 day numbers."""

    persons: pl.DataFrame  # pid, plan, part, birth, male, fnr, dnr, dnr_until, death, bydel, household
    episodes: (
        pl.DataFrame
    )  # eid, pid, plan, part, code, original_code, decision, start, end, planned_end, ...
    stops: pl.DataFrame  # eid, from, to, planned
    provider_changes: pl.DataFrame  # eid, date, org
    hours_changes: pl.DataFrame  # eid, date, hours
    diagnoses: pl.DataFrame  # pid, system, code, date


def _lognormal_days(rng: np.random.Generator, median: np.ndarray | float, sigma: float, n: int) -> np.ndarray:
    return np.exp(np.log(median) + sigma * rng.standard_normal(n))


def _phase_services(
    rng: np.random.Generator,
    pids: np.ndarray,
    begin: np.ndarray,
    end: np.ndarray,
    table: tuple[tuple[int, float, float], ...],
) -> list[np.ndarray]:
    """Services of one care phase: each code independently, starting soon after the phase begins.

    Every person gets at least one service; a service either lasts until the phase ends
    (death, institution, moving away) or ends earlier when it is no longer needed.
    """
    n = len(pids)
    length = (end - begin + 1).astype(float)
    out_p, out_c, out_s, out_e = [], [], [], []
    taken_any = np.zeros(n, dtype=bool)
    for code, prob, early in table:
        take = rng.random(n) < prob
        offset = np.floor(rng.exponential(0.12 * length)).astype(np.int64)
        start = np.minimum(begin + offset, end)
        cut = start + np.floor(rng.random(n) * (end - start + 1)).astype(np.int64)
        stop = np.where(rng.random(n) < early, cut, end)
        taken_any |= take
        out_p.append(pids[take])
        out_c.append(np.full(take.sum(), code))
        out_s.append(start[take])
        out_e.append(stop[take])
    first = table[0][0]
    lacking = ~taken_any
    out_p.append(pids[lacking])
    out_c.append(np.full(lacking.sum(), first))
    out_s.append(begin[lacking])
    out_e.append(end[lacking])
    return [np.concatenate(x) for x in (out_p, out_c, out_s, out_e)]


def _short_stays(
    rng: np.random.Generator, pids: np.ndarray, begin: np.ndarray, end: np.ndarray
) -> list[np.ndarray]:
    """Short stays (18–20) and municipal emergency beds (25) during the time at home."""
    length = (end - begin + 1).astype(float)
    k = np.minimum(rng.poisson(0.45 * length / YEAR), 5)
    k25 = np.minimum(rng.poisson(0.08 * length / YEAR), 2)
    idx = np.repeat(np.arange(len(pids)), k)
    idx25 = np.repeat(np.arange(len(pids)), k25)
    shares = np.array([s for _, s, _ in _SHORT_STAYS])
    which = rng.choice(len(_SHORT_STAYS), size=len(idx), p=shares / shares.sum())
    codes = np.array([c for c, _, _ in _SHORT_STAYS])[which]
    medians = np.array([m for _, _, m in _SHORT_STAYS])[which]
    dur = np.clip(np.rint(_lognormal_days(rng, medians, 0.6, len(idx))), 1, 90).astype(np.int64)
    start = begin[idx] + np.floor(rng.random(len(idx)) * length[idx]).astype(np.int64)
    dur25 = rng.integers(1, 5, size=len(idx25))
    start25 = begin[idx25] + np.floor(rng.random(len(idx25)) * length[idx25]).astype(np.int64)
    starts = np.concatenate([start, start25])
    ends = np.minimum(starts + np.concatenate([dur, dur25]) - 1, np.concatenate([end[idx], end[idx25]]))
    return [
        np.concatenate([pids[idx], pids[idx25]]),
        np.concatenate([codes, np.full(len(idx25), 25)]),
        starts,
        ends,
    ]


def _drop_overlaps(frame: pl.DataFrame, keys: list[str], start: str, end: str, gap: int) -> pl.DataFrame:
    """Remove rows that start within `gap` days of the previous row with the same keys.

    Two allocations of the same code to the same person must be told apart by start date
    (the ±7-day rule of timeline.md), so they are kept well apart; stops must not overlap.
    """
    frame = frame.sort([*keys, start])
    while True:
        same = pl.all_horizontal([pl.col(k) == pl.col(k).shift(1) for k in keys])
        clash = same & (pl.col(start) <= pl.col(end).shift(1) + gap)
        flagged = frame.with_columns(clash.fill_null(False).alias("_clash"))
        if not flagged["_clash"].any():
            return frame
        frame = flagged.filter(~pl.col("_clash")).drop("_clash")


def _persons(rng: np.random.Generator, plans: list[MunicipalityPlan]) -> dict[str, np.ndarray]:
    counts = np.array([round(p.persons * ARRIVALS_PER_PERSON) for p in plans])
    plan_idx = np.repeat(np.arange(len(plans)), counts)
    n = len(plan_idx)
    part = np.zeros(n, dtype=np.int64)
    for i, p in enumerate(plans):
        sel = plan_idx == i
        part[sel] = rng.choice(len(p.muni.parts), size=int(sel.sum()), p=p.weights())
    arrival = rng.integers(WORLD_START, SPAN_END + 1, size=n)
    elderly = rng.random(n) < 0.72
    age = np.where(
        elderly,
        np.clip(rng.normal(80.0, 7.5, n), 65, 99),
        np.where(rng.random(n) < 0.25, rng.uniform(1, 18, n), rng.uniform(18, 66, n)),
    )
    birth = arrival - np.floor(age * YEAR).astype(np.int64)
    window = np.where(
        elderly, _lognormal_days(rng, 2.2 * YEAR, 0.85, n), _lognormal_days(rng, 5.0 * YEAR, 0.9, n)
    )
    window = np.clip(window, 14, 30 * YEAR).astype(np.int64)
    dies = np.where(elderly, rng.random(n) < 0.75, rng.random(n) < 0.04)
    leave = arrival + window - 1
    too_old = leave > birth + int(104 * YEAR)
    leave = np.where(too_old, birth + int(104 * YEAR), leave)
    dies |= too_old
    institution = elderly & dies & (rng.random(n) < 0.45)
    inst_len = np.clip(rng.gamma(1.5, 2.7 * YEAR / 1.5, n), 30, None).astype(np.int64)
    inst_start = np.where(institution, np.maximum(leave - inst_len + 1, arrival), OPEN)
    home_end = np.where(institution, inst_start - 1, leave)
    male = rng.random(n) < np.where(elderly, 0.4, 0.52)
    keep = (leave >= SPAN_START) & (leave > arrival)
    cols = dict(
        plan=plan_idx,
        part=part,
        arrival=arrival,
        elderly=elderly,
        birth=birth,
        leave=leave,
        dies=dies,
        institution=institution,
        inst_start=inst_start,
        home_end=home_end,
        male=male,
    )
    return {k: v[keep] for k, v in cols.items()}


def _episodes(rng: np.random.Generator, p: dict[str, np.ndarray]) -> pl.DataFrame:
    n = len(p["plan"])
    pid = np.arange(n)
    old, young = p["elderly"], ~p["elderly"]
    home = old & (p["home_end"] >= p["arrival"])
    parts = [
        _phase_services(rng, pid[home], p["arrival"][home], p["home_end"][home], _ELDERLY_HOME),
        _short_stays(rng, pid[home], p["arrival"][home], p["home_end"][home]),
        _phase_services(rng, pid[young], p["arrival"][young], p["leave"][young], _YOUNGER),
    ]
    inst = p["institution"]
    parts.append([pid[inst], np.full(inst.sum(), 21), p["inst_start"][inst], p["leave"][inst]])
    cols = [np.concatenate([x[i] for x in parts]) for i in range(4)]
    end = cols[3].copy()
    # open-ended: anything still running at the end of the span has no end the sources can know
    end = np.where(end > SPAN_END + 400, OPEN, end)
    frame = pl.DataFrame(
        {"pid": cols[0], "code": cols[1], "start": cols[2], "end": end},
        schema={"pid": pl.Int64, "code": pl.Int32, "start": pl.Int32, "end": pl.Int32},
    )
    frame = frame.filter((pl.col("end") >= SPAN_START) & (pl.col("start") <= SPAN_END))
    return _drop_overlaps(frame, ["pid", "code"], "start", "end", 30)


def _attributes(
    rng: np.random.Generator,
    eps: pl.DataFrame,
    plans: list[MunicipalityPlan],
    plan_of_pid: np.ndarray,
    part_of_pid: np.ndarray,
) -> pl.DataFrame:
    """Decision dates, original codes (12/13 in the 3.6 years), hours and first provider."""
    n = eps.height
    code = eps["code"].to_numpy()
    start = eps["start"].to_numpy().astype(np.int64)
    pid = eps["pid"].to_numpy()
    lead = np.where(
        code == 21,
        rng.integers(0, 46, n),
        np.where(np.isin(code, SHORT_STAY_CODES), rng.integers(0, 11, n), rng.integers(0, 22, n)),
    )
    housing_36 = (code == HOUSING) & (start <= day("2018-12-31"))
    original = np.where(housing_36, np.where(rng.random(n) < 0.7, 12, 13), code)
    hours = np.full(n, np.nan)
    for c, (median, sigma) in _HOURS.items():
        sel = code == c
        hours[sel] = np.clip(
            np.round(_lognormal_days(rng, median, sigma, int(sel.sum())) * 2) / 2, 0.5, 160.0
        )
    full_time = (code == 3) & (rng.random(n) < 0.02)
    hours[full_time] = 168.0  # round-the-clock BPA: the top of the valid range
    plan_idx = plan_of_pid[pid]
    n_prov = np.array([len(pl_.providers) for pl_ in plans])[plan_idx]
    prov_idx = np.floor(rng.random(n) * n_prov).astype(np.int64)
    return (
        eps.with_columns(
            pl.Series("plan", plan_idx, dtype=pl.Int32),
            pl.Series("part", part_of_pid[pid], dtype=pl.Int32),
            pl.Series("original_code", original, dtype=pl.Int32),
            pl.Series("decision", start - lead, dtype=pl.Int32),
            pl.Series("planned_end", np.isin(code, SHORT_STAY_CODES)),
            pl.Series("hours", hours).fill_nan(None),
            pl.Series("provider_idx", np.where(np.isin(code, _NO_PROVIDER), -1, prov_idx), dtype=pl.Int32),
        )
        .join(_provider_table(plans), on=["plan", "provider_idx"], how="left")
        .sort("eid")
    )


def _provider_table(plans: list[MunicipalityPlan]) -> pl.DataFrame:
    """(plan, provider_idx) -> organisation number."""
    rows = [(i, j, org) for i, p in enumerate(plans) for j, org in enumerate(p.providers)]
    return pl.DataFrame(
        rows, schema={"plan": pl.Int32, "provider_idx": pl.Int32, "provider": pl.Utf8}, orient="row"
    )


def _dated_events(
    rng: np.random.Generator,
    eps: pl.DataFrame,
    codes: tuple[int, ...],
    rate: float,
    cap: int,
    lo_pad: int,
    hi_pad: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random event days per eligible episode inside [start + lo_pad, min(end, span end) - hi_pad]."""
    sel = eps.filter(pl.col("code").is_in(codes))
    lo = np.maximum(sel["start"].to_numpy().astype(np.int64) + lo_pad, DETAIL_FROM)
    hi = np.minimum(sel["end"].to_numpy().astype(np.int64), SPAN_END) - hi_pad
    length = np.maximum(hi - lo + 1, 0)
    k = np.minimum(rng.poisson(rate * length / YEAR), cap)
    idx = np.repeat(np.arange(sel.height), k)
    when = lo[idx] + np.floor(rng.random(len(idx)) * length[idx]).astype(np.int64)
    return sel["eid"].to_numpy()[idx], when, idx


def _provider_changes(
    rng: np.random.Generator, eps: pl.DataFrame, plans: list[MunicipalityPlan]
) -> pl.DataFrame:
    """A new provider organisation on a date: each change differs from the value before it."""
    eligible = eps.filter(pl.col("provider_idx") >= 0)
    eid, when, _ = _dated_events(rng, eligible, _PROVIDER_CHANGE_CODES, 0.06, 3, 1, 0)
    frame = (
        pl.DataFrame({"eid": eid, "date": when}, schema={"eid": pl.Int64, "date": pl.Int32})
        .unique(["eid", "date"])
        .sort(["eid", "date"])
    )
    first = eps.select("eid", "provider_idx", "plan")
    frame = frame.join(first, on="eid", how="left").sort(["eid", "date"])
    n_prov = np.array([len(p.providers) for p in plans])[frame["plan"].to_numpy()]
    step = 1 + np.floor(rng.random(frame.height) * (n_prov - 1)).astype(np.int64)
    frame = frame.with_columns(pl.Series("step", step))
    frame = frame.with_columns(pl.col("step").cum_sum().over("eid").alias("cum"))
    org_idx = (frame["provider_idx"].to_numpy() + frame["cum"].to_numpy()) % n_prov
    orgs = [plans[pi].providers[oi] for pi, oi in zip(frame["plan"].to_list(), org_idx.tolist(), strict=True)]
    return frame.select("eid", "date").with_columns(pl.Series("org", orgs, dtype=pl.Utf8))


def _hours_changes(rng: np.random.Generator, eps: pl.DataFrame) -> pl.DataFrame:
    eligible = eps.filter(pl.col("hours").is_not_null())
    eid, when, idx = _dated_events(rng, eligible, tuple(_HOURS), 0.1, 3, 1, 0)
    base = eligible.filter(pl.col("code").is_in(tuple(_HOURS)))["hours"].to_numpy()[idx]
    new = np.clip(np.round(base * rng.uniform(0.6, 1.6, len(idx)) * 2) / 2, 0.5, 160.0)
    return (
        pl.DataFrame(
            {"eid": eid, "date": when, "hours": new},
            schema={"eid": pl.Int64, "date": pl.Int32, "hours": pl.Float64},
        )
        .unique(["eid", "date"], keep="first")
        .sort(["eid", "date"])
    )


def _stops(rng: np.random.Generator, eps: pl.DataFrame) -> pl.DataFrame:
    """Temporary stops (hospital stays, holidays): days to weeks, never overlapping, inside the service."""
    eid, when, idx = _dated_events(rng, eps, _STOP_CODES, 0.2, 6, 3, 2)
    sel = eps.filter(pl.col("code").is_in(_STOP_CODES))
    end = sel["end"].to_numpy().astype(np.int64)[idx]
    dur = np.clip(np.rint(_lognormal_days(rng, 10.0, 0.8, len(idx))), 1, 120).astype(np.int64)
    to = np.minimum(when + dur - 1, end - 1)
    frame = pl.DataFrame(
        {"eid": eid, "from": when, "to": to, "planned": rng.random(len(idx)) < 0.3},
        schema={"eid": pl.Int64, "from": pl.Int32, "to": pl.Int32, "planned": pl.Boolean},
    )
    frame = frame.filter(pl.col("to") >= pl.col("from"))
    return _drop_overlaps(frame, ["eid"], "from", "to", 1)


def build_world(plans: list[MunicipalityPlan], rng: np.random.Generator) -> World:
    """Draw every person and service of every planned municipality."""
    p = _persons(rng, plans)
    eps = _episodes(rng, p)
    # persons without a service in the span (all ended before 2017) are not part of the world
    alive = np.zeros(len(p["plan"]), dtype=bool)
    alive[eps["pid"].to_numpy()] = True
    new_pid = np.cumsum(alive) - 1
    p = {k: v[alive] for k, v in p.items()}
    eps = eps.with_columns(pl.Series("pid", new_pid[eps["pid"].to_numpy()], dtype=pl.Int64))
    eps = eps.sort(["pid", "start", "code"]).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("eid"))
    eps = _attributes(rng, eps, plans, p["plan"], p["part"])
    n = len(p["plan"])
    death = np.where(p["dies"] & (p["leave"] <= SPAN_END), p["leave"], -1)
    # deaths end every service still running (the institution and home phases already end there)
    eps = eps.with_columns(pl.Series("death", death[eps["pid"].to_numpy()], dtype=pl.Int32))
    eps = eps.with_columns(
        pl.when((pl.col("death") >= 0) & (pl.col("end") > pl.col("death")))
        .then(pl.col("death"))
        .otherwise(pl.col("end"))
        .alias("end")
    ).drop("death")
    has_dnr = rng.random(n) < 0.015
    dnr_until = np.where(rng.random(n) < 0.8, p["arrival"] + rng.integers(-200, 700, n), OPEN)
    dnr_until = np.where(has_dnr & (dnr_until <= SPAN_END), dnr_until, np.where(has_dnr, OPEN, -1))
    used: set[str] = set()
    birth = p["birth"]
    fnr_needed = ~has_dnr | (dnr_until < OPEN)
    fnr = np.full(n, None, dtype=object)
    fnr[fnr_needed] = person_numbers(
        rng, birth[fnr_needed], p["male"][fnr_needed], np.zeros(int(fnr_needed.sum()), dtype=bool), used
    )
    dnr = np.full(n, None, dtype=object)
    dnr[has_dnr] = person_numbers(
        rng, birth[has_dnr], p["male"][has_dnr], np.ones(int(has_dnr.sum()), bool), used
    )
    bydel_on = np.array([pl_.bydel for pl_ in plans])[p["plan"]]
    bydel = np.where(bydel_on, np.char.add("0301", np.char.zfill(rng.integers(1, 16, n).astype(str), 2)), "")
    household = rng.choice([1, 2, 3], size=n, p=[0.55, 0.4, 0.05])
    persons = pl.DataFrame(
        {
            "pid": np.arange(n),
            "plan": p["plan"],
            "part": p["part"],
            "birth": birth,
            "male": p["male"],
            "elderly": p["elderly"],
            "arrival": p["arrival"],
            "fnr": pl.Series(fnr.tolist(), dtype=pl.Utf8),
            "dnr": pl.Series(dnr.tolist(), dtype=pl.Utf8),
            "dnr_until": dnr_until,
            "death": death,
            "bydel": bydel,
            "household": household,
        }
    ).with_columns(
        pl.col("pid").cast(pl.Int64),
        pl.col("plan", "part", "birth", "dnr_until", "death", "arrival", "household").cast(pl.Int32),
    )
    persons = persons.with_columns(pl.col("death", "dnr_until").replace(-1, None))
    k = rng.choice([0, 1, 2], size=n, p=[0.3, 0.45, 0.25])
    didx = np.repeat(np.arange(n), k)
    young = ~p["elderly"][didx]
    dcode = np.where(
        young,
        np.array(_DIAGNOSES_YOUNG)[rng.integers(0, len(_DIAGNOSES_YOUNG), len(didx))],
        np.array(_DIAGNOSES_OLD)[rng.integers(0, len(_DIAGNOSES_OLD), len(didx))],
    )
    icpc = rng.random(len(didx)) < 0.15
    dcode = np.where(icpc, np.array(_ICPC2)[rng.integers(0, len(_ICPC2), len(didx))], dcode)
    diagnoses = pl.DataFrame(
        {
            "pid": didx,
            "system": np.where(icpc, "ICPC2", "ICD10"),
            "code": dcode,
            "date": p["arrival"][didx] - rng.integers(0, 700, len(didx)),
        },
        schema={"pid": pl.Int64, "system": pl.Utf8, "code": pl.Utf8, "date": pl.Int32},
    ).unique(["pid", "code"], keep="first", maintain_order=True)
    return World(
        persons=persons,
        episodes=eps,
        stops=_stops(rng, eps),
        provider_changes=_provider_changes(rng, eps, plans),
        hours_changes=_hours_changes(rng, eps),
        diagnoses=diagnoses,
    )
