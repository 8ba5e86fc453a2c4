"""The packaged reference files (`transforms/reference/data/`), read as rows of strings.

Each file has exactly one loader in this package (`codes`, `municipalities`); they all read
through here, so the encoding and the package path are stated once.
"""

from __future__ import annotations

import csv
import io
from importlib import resources

DATA_PACKAGE = "transforms.reference.data"


def reference_rows(file_name: str) -> list[dict[str, str]]:
    """The rows of one packaged reference CSV (UTF-8, header row) as dicts of strings; blank lines and lines
    starting with `#` (a curated file's header: what it is and its sources) skipped."""
    text = resources.files(DATA_PACKAGE).joinpath(file_name).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    rows = csv.DictReader(io.StringIO("\n".join(lines)))
    return [row for row in rows if any((v or "").strip() for v in row.values())]
