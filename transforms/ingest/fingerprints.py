"""Which source files staging last read, and whether `raw/` still holds the same files.

A group is what one ingestion partition reads: `iplos/<year>` (the yearly extracts of a data
year) or `epj` (every configured EPJ export). Its fingerprint is a digest of the relative path,
size and modification time of each file, taken before reading; ingestion records it when the
group is staged, so a sensor can tell new, changed or removed files from what is already staged
without reading a byte of them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from transforms.core.atomic import write_text
from transforms.core.config import load_kommuner
from transforms.core.settings import FIRST_DATA_YEAR, LAST_DATA_YEAR, Settings

EPJ_GROUP = "epj"


def iplos_group(year: int) -> str:
    return f"iplos/{year}"


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def iplos_files(settings: Settings, year: int) -> list[Path]:
    return _files(settings.root.iplos_year(year))


def epj_files(settings: Settings) -> list[Path]:
    config = settings.root.kommuner_toml
    folders = [settings.root.path / s.path for m in load_kommuner(config) for s in m.epj] if config.exists() else []
    return sorted(f for folder in folders for f in _files(folder))


def group_files(settings: Settings) -> dict[str, list[Path]]:
    """The files each group's ingestion reads, by group."""
    groups = {iplos_group(year): iplos_files(settings, year) for year in range(FIRST_DATA_YEAR, LAST_DATA_YEAR + 1)}
    groups[EPJ_GROUP] = epj_files(settings)
    return groups


def fingerprint(settings: Settings, files: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(settings.data_root)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def current_fingerprints(settings: Settings) -> dict[str, str]:
    return {group: fingerprint(settings, files) for group, files in group_files(settings).items()}


def staged_fingerprints(settings: Settings) -> dict[str, str]:
    path = settings.root.staged_sources
    return json.loads(path.read_text()) if path.exists() else {}


def record_staged(settings: Settings, fingerprints: dict[str, str]) -> None:
    """Remember what the groups just staged looked like (atomic replace of staging/sources.json)."""
    merged = {**staged_fingerprints(settings), **fingerprints}
    write_text(settings.root.staged_sources, json.dumps(merged, indent=1, sort_keys=True))


def changed_groups(settings: Settings) -> dict[str, str]:
    """Groups whose files differ from what was last staged (new, changed or removed), with their fingerprint.

    A group with no files that was never staged is not a change.
    """
    staged = staged_fingerprints(settings)
    empty = fingerprint(settings, [])
    return {group: fp for group, fp in current_fingerprints(settings).items()
            if fp != staged.get(group, empty)}
