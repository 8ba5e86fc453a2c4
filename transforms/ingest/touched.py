"""Which reporting municipalities a change of source files touches (to rebuild only their timelines).

A yearly extract belongs to the municipality its number (valid in the data year) reports under
today (the SSB grouping, `reference/municipality_codes`), so Drammen's 2019 extracts 0602, 0625 and
0711 all touch 3301; an EPJ export file belongs to the municipality whose `[[kommune.epj]]` folder
holds it. A removed file touches the same municipality as when it was there.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from transforms.core.config import load_kommuner
from transforms.core.settings import Settings
from transforms.reference.municipalities import municipality_codes


def municipalities_of_files(settings: Settings, files: Iterable[str]) -> dict[str, str | None]:
    """Per changed source file (relative to the data root): its reporting municipality (None: unknown)."""
    reporting = dict(municipality_codes().select("code", "reporting_kommune").iter_rows())
    folders: list[tuple[str, str]] = []
    if settings.root.kommuner_toml.exists():
        for municipality in load_kommuner(settings.root.kommuner_toml):
            for system in municipality.epj:
                folder = settings.root.relative(settings.root.resolve(system.path)) \
                    if settings.root.resolve(system.path).exists() else system.path.strip("/")
                folders.append((folder.rstrip("/") + "/", municipality.nr))
    out: dict[str, str | None] = {}
    for rel in files:
        parts = PurePosixPath(rel).parts
        if parts[:2] == ("raw", "iplos") and len(parts) == 4:
            out[rel] = reporting.get(PurePosixPath(rel).stem)
        else:
            out[rel] = next((nr for folder, nr in folders if rel.startswith(folder)), None)
    return out


def municipalities_touched(settings: Settings, files: Iterable[str]) -> list[str]:
    """The reporting municipalities whose timelines a change of `files` touches, sorted."""
    return sorted({nr for nr in municipalities_of_files(settings, files).values() if nr is not None})
