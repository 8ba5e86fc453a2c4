"""Municipality numbers over time, derived from SSB's grouping (read by `transforms.reference`).

The generator files every record under the number valid for its part of the territory
on that day, exactly as a municipality's systems did: Drammen's 2019 extracts are
0602/0625/0711, its 2021 extract 3005, its 2024 extract 3301. SSB's grouping gives
validity years only for retired codes ("Drammen (2020-2023)"); the start year of a
current code is inferred (see `_current_code_start`). The result is, per 2024
municipality, a fixed list of territory *parts* (the codes valid in 2017) and the code
each part reported under in every data year 2017–2025.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from transforms.reference.municipalities import ssb_grouping

FIRST_YEAR = 2017
LAST_YEAR = 2025
YEARS = tuple(range(FIRST_YEAR, LAST_YEAR + 1))

# Counties created by the reforms: a current code with one of these prefixes cannot be older.
_COUNTY_START = {
    "50": 2018,
    "30": 2020,
    "34": 2020,
    "38": 2020,
    "42": 2020,
    "46": 2020,
    "54": 2020,
    "31": 2024,
    "32": 2024,
    "33": 2024,
    "39": 2024,
    "40": 2024,
    "55": 2024,
    "56": 2024,
}
_OPEN_END = 9999


@dataclass(frozen=True)
class Municipality:
    """A 2024 municipality with the code history of each part of its territory."""

    nr: str
    name: str
    parts: tuple[str, ...]
    # units[i][year - FIRST_YEAR] = the code part i reported under in that year
    units: tuple[tuple[str, ...], ...]

    def unit(self, part_index: int, year: int) -> str:
        """Code valid for one part in one data year (years outside 2017–2025 are clamped)."""
        year = min(max(year, FIRST_YEAR), LAST_YEAR)
        return self.units[part_index][year - FIRST_YEAR]

    def units_in_year(self, year: int) -> tuple[str, ...]:
        """The distinct codes, i.e. yearly files, of one data year."""
        return tuple(sorted({u[year - FIRST_YEAR] for u in self.units}))

    def all_units(self) -> tuple[str, ...]:
        """Every code any part used in 2017–2025."""
        return tuple(sorted({code for u in self.units for code in u}))


def _norm_name(name: str) -> str:
    """Name root used to follow a code to its successor ('Trondheim (-2017)' ~ 'Trondheim - Tråante')."""
    name = re.sub(r"\s*\(.*?\)", "", name)
    return name.split(" - ")[0].strip().lower()


def _current_code_start(code: str, name: str, retired: dict[str, tuple[int, int, str]]) -> int:
    """First year a code without validity parentheses was in use.

    A code retired in 2023 means the current code is a 2024 renumbering; a retired code of
    the same name means the current one replaced it; otherwise a code of a county created
    by a reform starts with that county (and after any retired code of the same county),
    and an old-county code has existed throughout.
    """
    if any(end == 2023 for _, end, _ in retired.values()):
        return 2024
    same_name = [end for _, end, nm in retired.values() if _norm_name(nm) == _norm_name(name)]
    if same_name:
        return max(same_name) + 1
    county_start = _COUNTY_START.get(code[:2])
    if county_start is None:
        return 0
    same_county = [end for c, (_, end, _) in retired.items() if c[:2] == code[:2] and end >= county_start]
    return max([county_start, *[end + 1 for end in same_county]])


def _build(group: str, name: str, rows: list[dict]) -> Municipality:
    """Parts and per-year codes of one group from its rows of `ssb_grouping()`."""
    retired: dict[str, tuple[int, int, str]] = {}
    current: list[tuple[str, str]] = []
    for row in rows:
        if row["current"]:
            current.append((row["code"], row["name"]))
        else:
            retired[row["code"]] = (row["valid_from"] or 0, row["valid_to"], row["name"])
    validity = dict(retired)
    for code, label in current:
        validity[code] = (_current_code_start(code, label, retired), _OPEN_END, label)
    by_year = {y: sorted(c for c, (s, e, _) in validity.items() if s <= y <= e) for y in YEARS}
    # A group whose predecessors SSB files under "Rest" has no code in early years: the
    # grouping names no predecessor, so the generator files those years under the first code used.
    first = next(codes for codes in by_year.values() if codes)
    for y in YEARS:
        if not by_year[y]:
            by_year[y] = first
        else:
            break
    parts = tuple(by_year[FIRST_YEAR])
    chains: list[list[str]] = [[p] for p in parts]
    for y in YEARS[1:]:
        codes, prev_codes = by_year[y], set(by_year[y - 1])
        new_codes = [c for c in codes if c not in prev_codes]
        for chain in chains:
            prev = chain[-1]
            if prev in codes:
                chain.append(prev)
                continue
            named = [c for c in new_codes if _norm_name(validity[c][2]) == _norm_name(validity[prev][2])]
            chain.append((named or new_codes or codes)[0])
    return Municipality(nr=group, name=name, parts=parts, units=tuple(tuple(c) for c in chains))


@cache
def load_municipalities() -> dict[str, Municipality]:
    """All 2024 municipalities (numeric groups that contain their own code), keyed by number."""
    groups: dict[str, tuple[str, list[dict]]] = {}
    for row in ssb_grouping().iter_rows(named=True):
        groups.setdefault(row["group_code"], (row["group_name"], []))[1].append(row)
    result = {}
    for group in sorted(groups):
        name, rows = groups[group]
        if group.isdigit() and any(row["code"] == group for row in rows):
            result[group] = _build(group, name, rows)
    return result


# Approximate 2024 populations (thousands) of the largest municipalities; the national scale
# sizes these by population and draws the rest from a heavy-tailed (log-normal) spread.
_LARGE_POPULATIONS = {
    "0301": 717,
    "4601": 291,
    "5001": 214,
    "1103": 149,
    "3201": 130,
    "4204": 116,
    "3301": 104,
    "3203": 98,
    "3205": 93,
    "3107": 84,
    "1108": 83,
    "5501": 78,
    "3907": 66,
    "3207": 63,
    "3905": 58,
    "1508": 58,
    "3105": 58,
    "4003": 55,
    "1804": 53,
    "3103": 51,
    "3909": 48,
}


def national_sizes(
    rng, municipalities: dict[str, Municipality], active_per_day: int, persons_per_active: float
) -> dict[str, int]:
    """Persons over nine years per municipality so that about `active_per_day` users are active daily."""
    import numpy as np

    codes = sorted(municipalities)
    drawn = np.clip(rng.lognormal(mean=np.log(5.5), sigma=1.0, size=len(codes)), 0.2, 45.0)
    population = {c: float(_LARGE_POPULATIONS.get(c, d)) for c, d in zip(codes, drawn, strict=True)}
    total = sum(population.values())
    return {c: max(20, round(population[c] / total * active_per_day * persons_per_active)) for c in codes}
