"""A source file's outputs found by listing their folder, not by `Path.glob`.

Staging looks for a file's parts (`<table>-<slug>-*.parquet`) before reading it and again when it
commits: some 40,000 distinct patterns in a national ingestion. `Path.glob` compiles a regular
expression for each distinct pattern (about 0.3 ms; its cache holds a few hundred), which cost the
main process 5 s of planning before any worker started and each worker ~2 ms per small extract. A
folder listing with a prefix and suffix test finds the same files.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path


def matching(pattern: Path) -> list[Path]:
    """The files `pattern.parent.glob(pattern.name)` finds, in listing order, in every folder the parent
    matches when it holds wildcards itself (`system=*`: a file whose EPJ system is no longer configured
    under that path has its parts in some system's folder). A name with one `*` (and no other wildcard)
    is matched by prefix and suffix; any other name goes to `glob`."""
    if glob.has_magic(str(pattern.parent)):
        return [found for folder in sorted(glob.glob(str(pattern.parent)))
                for found in matching(Path(folder) / pattern.name)]
    name = pattern.name
    prefix, star, suffix = name.partition("*")
    if glob.has_magic(prefix) or glob.has_magic(suffix) or not prefix:
        return list(pattern.parent.glob(name))
    if not star:
        return [pattern] if pattern.exists() else []
    try:
        names = os.listdir(pattern.parent)
    except (FileNotFoundError, NotADirectoryError):
        return []
    shortest = len(prefix) + len(suffix)
    return [pattern.parent / n for n in names if len(n) >= shortest and n.startswith(prefix) and n.endswith(suffix)]
