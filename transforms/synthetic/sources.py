"""Which sources each municipality has: EPJ systems, their switches, and its yearly files.

The three feature municipalities get hand-made setups so that every rule of timeline.md
is exercised at every scale (see `_drammen`, `_trondheim`, `_heroy`); Oslo has one big
split JSONL export; every other municipality gets a random but plausible setup without
gaps, so the national scale looks like a real country rather than a test fixture.
A system without `fmt` is an EPJ whose history was never exported: its ids and user
numbers exist only in the yearly extracts it produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .dates import day, to_date
from .ids import org_numbers
from .municipalities import YEARS, Municipality

FMT_A = "epj-a-csv"
FMT_B = "epj-b-jsonl"
FMT_C = "omsorgsjournal-xml"  # monthly full dumps, read through a mapping file only (render_snapshots)
FIRST_SYSTEM_FROM = day("2003-01-01")  # before WORLD_START, so no service predates every system

_PRODUCTS = (  # (navnEPJ, leverandør, versjon), all invented
    ("Omsorg A", "Leverandør AS", "9.1"),
    ("Omsorg B", "Leverandør AS", "4.2"),
    ("Pleie Pluss", "Testleverandør Helse AS", "2.3"),
    ("Journal Eksempel", "Eksempeldata Sør AS", "7.0"),
    ("Kommunejournal", "Fiktiv Programvare Bø AS", "12.4"),
)


@dataclass(frozen=True)
class SystemPlan:
    """One EPJ system of one municipality; `fmt` None = never exported."""

    system: str
    kommune: str
    fmt: str | None
    product: tuple[str, str, str]
    prefix: str
    active_from: int
    active_to: int | None
    history_from: int | None
    kommuner: tuple[str, ...]
    link_prob: float = 0.0  # share of services migrated INTO this system that carry migratedFrom
    split_events: bool = False

    @property
    def exported(self) -> bool:
        return self.fmt is not None

    @property
    def path(self) -> str:
        return f"raw/epj/{self.kommune}-{self.system}"

    @property
    def user_prefix(self) -> str:
        """epj-b client ids look like 'c-17'; other systems number users 1001, 1002, ..."""
        return "c-" if self.fmt == FMT_B else ""


@dataclass(frozen=True)
class Takeover:
    """From `day` on, `system` holds the records of territory `part`."""

    part: str
    day: int
    system: str


@dataclass
class MunicipalityPlan:
    muni: Municipality
    persons: int
    systems: tuple[SystemPlan, ...]
    takeovers: tuple[Takeover, ...]
    missing: frozenset[tuple[str, int]] = frozenset()
    corrupted: dict[tuple[str, int], str] = field(default_factory=dict)  # (unit, year) -> rule id
    utf8: frozenset[tuple[str, int]] = frozenset()
    bydel: bool = False
    providers: tuple[str, ...] = ()
    feature: str | None = None
    part_weights: tuple[float, ...] | None = None  # share of persons per part; None = first part double
    # other municipalities' systems that held one of this one's parts for a while (a split unit's EPJ)
    borrowed: tuple[SystemPlan, ...] = ()

    def weights(self) -> np.ndarray:
        w = np.array(self.part_weights or [2.0] + [1.0] * (len(self.muni.parts) - 1), dtype=float)
        return w / w.sum()

    def system(self, name: str) -> SystemPlan:
        return next(s for s in (*self.systems, *self.borrowed) if s.system == name)

    def extract_status(self, unit: str, year: int) -> str:
        if (unit, year) in self.missing:
            return "missing"
        return "corrupted" if (unit, year) in self.corrupted else "present"


def _sys(
    nr: str,
    letter: str,
    fmt: str | None,
    product: int,
    prefix: str,
    active_from: str | int,
    active_to: str | None,
    history_from: str | int | None,
    kommuner: tuple[str, ...],
    **kw,
) -> SystemPlan:
    def as_day(v: str | int | None) -> int | None:
        return v if isinstance(v, int) or v is None else day(v)

    return SystemPlan(
        system=f"epj{nr}{letter}",
        kommune=nr,
        fmt=fmt,
        product=_PRODUCTS[product],
        prefix=prefix,
        active_from=as_day(active_from),
        active_to=as_day(active_to),
        history_from=as_day(history_from) if fmt else None,
        kommuner=kommuner,
        **kw,
    )


def _drammen(m: Municipality, persons: int) -> MunicipalityPlan:
    """2020 merger of three units, 2024 renumbering, an a→b switch, a half-year coverage gap.

    0625 and 0711 used EPJs whose history was never exported; their services moved into
    Drammen's old system (a) on 2020-01-01. System a's export only holds history from
    2020-07-01 and the 2020 extract (3005) is missing, so 2020-01-01..2020-06-30 is a gap.
    """
    a = _sys(m.nr, "a", FMT_A, 0, "A", FIRST_SYSTEM_FROM, "2021-03-14", "2020-07-01", ("0602", "3005"))
    b = _sys(m.nr, "b", FMT_B, 1, "B", "2021-03-15", None, "2021-03-15", ("3005", "3301"), link_prob=0.6)
    ne = _sys(m.nr, "x", None, 2, "NE", FIRST_SYSTEM_FROM, "2019-12-31", None, ("0625",))
    sv = _sys(m.nr, "y", None, 3, "SV", FIRST_SYSTEM_FROM, "2019-12-31", None, ("0711",))
    merger, switch = day("2020-01-01"), day("2021-03-15")
    takeovers = (
        Takeover("0602", FIRST_SYSTEM_FROM, a.system),
        Takeover("0602", switch, b.system),
        Takeover("0625", FIRST_SYSTEM_FROM, ne.system),
        Takeover("0625", merger, a.system),
        Takeover("0625", switch, b.system),
        Takeover("0711", FIRST_SYSTEM_FROM, sv.system),
        Takeover("0711", merger, a.system),
        Takeover("0711", switch, b.system),
    )
    return MunicipalityPlan(
        m,
        persons,
        (a, b, ne, sv),
        takeovers,
        missing=frozenset({("3005", 2020)}),
        corrupted={("3005", 2022): "file.unparseable"},
        utf8=frozenset({("0711", 2019)}),
        feature="drammen",
        part_weights=(0.6, 0.3, 0.1),
    )


def _trondheim(m: Municipality, persons: int) -> MunicipalityPlan:
    """2018 Trøndelag renumbering and 2020 merger: Klæbu's own export (a) until its records
    moved into Trondheim's split JSONL export (b) on 2020-01-01, some with migratedFrom."""
    klaebu = _sys(
        m.nr, "a", FMT_A, 3, "K", FIRST_SYSTEM_FROM, "2019-12-31", FIRST_SYSTEM_FROM, ("1662", "5030")
    )
    trd = _sys(
        m.nr,
        "b",
        FMT_B,
        4,
        "T",
        FIRST_SYSTEM_FROM,
        None,
        "2016-01-01",
        ("1601", "5001"),
        link_prob=0.5,
        split_events=True,
    )
    takeovers = (
        Takeover("1601", FIRST_SYSTEM_FROM, trd.system),
        Takeover("1662", FIRST_SYSTEM_FROM, klaebu.system),
        Takeover("1662", day("2020-01-01"), trd.system),
    )
    return MunicipalityPlan(
        m,
        persons,
        (klaebu, trd),
        takeovers,
        corrupted={("5001", 2021): "file.encoding_mismatch"},
        utf8=frozenset({("5030", 2019)}),
        feature="trondheim",
        part_weights=(0.88, 0.12),
    )


def _heroy(m: Municipality, persons: int) -> MunicipalityPlan:
    """Yearly extracts only until 2022 (old EPJ never exported), then from 2023 a new EPJ whose export is a
    series of monthly full dumps in a format of its own (FMT_C, configured by a mapping file only)."""
    old = _sys(m.nr, "x", None, 2, "H", FIRST_SYSTEM_FROM, "2022-12-31", None, ("1515",))
    new = _sys(m.nr, "a", FMT_C, 0, "E", "2023-01-01", None, "2023-01-01", ("1515",))
    takeovers = (
        Takeover("1515", FIRST_SYSTEM_FROM, old.system),
        Takeover("1515", day("2023-01-01"), new.system),
    )
    return MunicipalityPlan(
        m, persons, (old, new), takeovers, utf8=frozenset({("1515", 2020)}), feature="heroy"
    )


def _oslo(m: Municipality, persons: int) -> MunicipalityPlan:
    """One large JSONL export split in yearly files, history from 2014; districts (bydel) filled in."""
    sys_b = _sys(m.nr, "b", FMT_B, 1, "O", "2002-01-01", None, "2014-01-01", m.all_units(), split_events=True)
    return MunicipalityPlan(
        m,
        persons,
        (sys_b,),
        (Takeover("0301", FIRST_SYSTEM_FROM, sys_b.system),),
        utf8=frozenset({("0301", 2023)}),
        bydel=True,
    )


def _generic(m: Municipality, persons: int, rng: np.random.Generator) -> MunicipalityPlan:
    """A plausible setup: one system for all parts, history from some day, a switch in a third
    of the municipalities; every yearly file present, so there is no gap."""
    fmts = (FMT_A, FMT_B)
    fmt1 = fmts[int(rng.integers(0, 2))]
    history = (
        FIRST_SYSTEM_FROM if rng.random() < 0.4 else int(rng.integers(FIRST_SYSTEM_FROM, day("2019-12-31")))
    )
    switch: int | None = None
    if rng.random() < 0.35:
        switch = int(rng.integers(day("2018-02-01"), day("2025-06-30")))
        if to_date(switch).month == 1:
            switch += 31  # keep switches out of January, when yearly extracts are taken
        history = min(history, switch - 1)
    big = persons > 20_000
    first = _sys(
        m.nr,
        "a",
        fmt1,
        int(rng.integers(0, len(_PRODUCTS))),
        "A",
        FIRST_SYSTEM_FROM,
        None if switch is None else switch - 1,
        history,
        m.all_units(),
        split_events=big and fmt1 == FMT_B,
    )
    systems = [first]
    takeovers = [Takeover(p, FIRST_SYSTEM_FROM, first.system) for p in m.parts]
    if switch is not None:
        fmt2 = fmts[int(rng.integers(0, 2))]
        link = float((0.0, 0.5, 0.9, 1.0)[int(rng.integers(0, 4))])
        second = _sys(
            m.nr,
            "b",
            fmt2,
            int(rng.integers(0, len(_PRODUCTS))),
            "B",
            switch,
            None,
            switch,
            m.all_units(),
            link_prob=link,
            split_events=big and fmt2 == FMT_B,
        )
        systems.append(second)
        takeovers += [Takeover(p, switch, second.system) for p in m.parts]
    utf8 = frozenset((u, y) for y in YEARS for u in m.units_in_year(y) if rng.random() < 0.08)
    return MunicipalityPlan(m, persons, tuple(systems), tuple(takeovers), utf8=utf8)


def plan_municipalities(
    sizes: dict[str, int], municipalities: dict[str, Municipality], rng: np.random.Generator
) -> list[MunicipalityPlan]:
    """Plans in kommunenummer order, each with its own provider organisations; the parts of split units
    held as the split municipalities held them (`split_plans`)."""
    from .split_plans import haram, plan_split_parts

    special = {"3301": _drammen, "5001": _trondheim, "1515": _heroy, "0301": _oslo, "1580": haram}
    plans = []
    used_orgs: set[str] = set()
    for nr in sorted(sizes):
        m = municipalities[nr]
        plan = special[nr](m, sizes[nr]) if nr in special else _generic(m, sizes[nr], rng)
        plan.providers = tuple(org_numbers(rng, int(np.clip(sizes[nr] // 300, 3, 40)), used_orgs))
        plans.append(plan)
    return plan_split_parts(plans)
