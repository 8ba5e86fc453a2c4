"""Which source files staging last read, and whether `raw/` still holds the same files.

A group is what one ingestion partition reads: `iplos/<year>` (the yearly extracts of a data
year) or `epj` (every configured EPJ export). Its fingerprint is a digest of the relative path,
size and modification time of each file, taken before reading; ingestion records it when the
group is staged, so a sensor can tell new, changed or removed files from what is already staged
without reading a byte of them.

Per file, staging also records (`staging/source_files.json`) the size, modification time and
*reader* fingerprint of what it staged: the reader fingerprint covers everything besides the
bytes that shapes a file's staged rows (its source mapping, the system and municipality it is
configured for, the identifier policy, the pseudonym key), so a file is read again exactly when
it, or the way it is read, changed (`FileState.unchanged`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
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


# Bump when a change of the ingestion code changes what a file stages: every file is then read anew.
READER_VERSION = "2"


def reader_fingerprint(*parts: object) -> str:
    """A digest of what, besides its bytes, shapes a file's staged rows."""
    return hashlib.sha256("\x1f".join(map(str, (READER_VERSION, *parts))).encode()).hexdigest()[:32]


def key_fingerprint(key: bytes) -> str:
    """Which pseudonym key staged a file (a digest of a digest: nothing of the key can be recovered)."""
    return hashlib.sha256(hashlib.sha256(key).digest()).hexdigest()[:16]


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    reader: str

    @classmethod
    def of(cls, path: Path, reader: str) -> FileState:
        stat = path.stat()
        return cls(stat.st_size, stat.st_mtime_ns, reader)


def staged_files(settings: Settings) -> dict[str, FileState]:
    """Per source file (relative path): what was staged from it."""
    path = settings.root.staged_files
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {rel: FileState(v["size"], v["mtime_ns"], v["reader"]) for rel, v in data.items()}


def record_files(settings: Settings, staged: dict[str, FileState], forgotten: Iterable[str] = ()) -> None:
    """Remember what was just staged per file, and forget files whose outputs were removed."""
    current = staged_files(settings)
    for rel in forgotten:
        current.pop(rel, None)
    current.update(staged)
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    data = {rel: {"size": s.size, "mtime_ns": s.mtime_ns, "reader": s.reader,
                  "staged_at": stamp if rel in staged else None} for rel, s in sorted(current.items())}
    old = json.loads(settings.root.staged_files.read_text()) if settings.root.staged_files.exists() else {}
    for rel, entry in data.items():
        if entry["staged_at"] is None:
            entry["staged_at"] = old.get(rel, {}).get("staged_at")
    write_text(settings.root.staged_files, json.dumps(data, indent=1, sort_keys=True))
