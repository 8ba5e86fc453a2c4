"""Scale definitions: which municipalities a generated world holds and how many people.

Every scale contains the three feature municipalities (Drammen, Trondheim, Herøy) whose
sources are set up to exercise every rule of timeline.md, so a test at any scale finds
every feature; the scales differ in the other municipalities and in size. `small` adds the
split municipalities' successors: Narvik and Hamarøy (Tysfjord, 2020), Ålesund and Haram
(Ålesund 1507, 2024); `national` has every municipality, the six successors included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FEATURE_MUNICIPALITIES = ("3301", "5001", "1515")  # Drammen, Trondheim, Herøy (Møre og Romsdal)


@dataclass(frozen=True)
class Scale:
    """Sizes are persons with a service on some day of 2017–2025 (nine years)."""

    name: str
    description: str
    persons: dict[str, int] = field(default_factory=dict)  # kommunenr -> persons over nine years
    national: bool = False
    national_active_per_day: int = 0  # national scale: service users active on one day, all of Norway


_DEMO = {"3301": 750, "5001": 850, "1515": 400}

SCALES: dict[str, Scale] = {
    "demo": Scale("demo", "3 feature municipalities, about 2,000 persons", dict(_DEMO)),
    "small": Scale(
        "small",
        "9 municipalities, about 11,000 persons: with Tysfjord's 2020 split (Narvik, Hamarøy) and the 2024 "
        "Ålesund/Haram split",
        {"3301": 2200, "5001": 2800, "1515": 600, "4601": 2400, "1508": 1400, "3101": 600, "1580": 400,
         "1806": 700, "1875": 300},
    ),
    "oslo": Scale(
        "oslo", "Oslo with about 45,000 persons plus the demo municipalities", {"0301": 45_000, **_DEMO}
    ),
    "national": Scale(
        "national",
        "all 357 municipalities, about 350,000 users active on any day",
        national=True,
        national_active_per_day=350_000,
    ),
}
