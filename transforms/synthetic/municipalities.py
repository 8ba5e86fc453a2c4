"""Municipality numbers over time, as `transforms.reference` has them (SSB's grouping and the
curated succession table).

The generator files every record under the number valid for its part of the territory
on that day, exactly as a municipality's systems did: Drammen's 2019 extracts are
0602/0625/0711, its 2021 extract 3005, its 2024 extract 3301. Per 2024 municipality the
result is a fixed list of territory *parts* (the codes valid in 2017) and the code each
part reported under in every data year 2017–2025 (`reference.unit_succession`). The part
of a split unit that a municipality took is one of its parts: Hitra's part 1613 is the
piece of Snillfjord it took in 2020, filed under 1613, 5012, 5012 and then 5056; Haram's
part 1534 is filed under 1534, then Ålesund 1507 in 2020–2023, then 1580.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import polars as pl

from transforms.reference.municipalities import unit_owners, unit_succession

FIRST_YEAR = 2017
LAST_YEAR = 2025
YEARS = tuple(range(FIRST_YEAR, LAST_YEAR + 1))


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


@cache
def load_municipalities() -> dict[str, Municipality]:
    """All 2024 municipalities, keyed by number, with their parts' codes per data year."""
    owners = unit_owners()
    current = owners.filter(pl.col("code") == pl.col("kommune"))
    names = dict(current.select("kommune", "name").iter_rows())
    in_2017 = owners.filter((pl.col("valid_from").is_null() | (pl.col("valid_from") <= FIRST_YEAR))
                            & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= FIRST_YEAR)))
    chain = {(unit, kommune, year): code for unit, year, code, kommune in unit_succession().iter_rows()}
    result = {}
    for nr in sorted(names):
        parts = tuple(sorted(in_2017.filter(pl.col("kommune") == nr)["code"].to_list()))
        units = tuple(tuple(chain[(part, nr, year)] for year in YEARS) for part in parts)
        result[nr] = Municipality(nr=nr, name=names[nr], parts=parts, units=units)
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
