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
    """The rows of one packaged reference CSV (UTF-8, header row) as dicts of strings; blank lines skipped."""
    text = resources.files(DATA_PACKAGE).joinpath(file_name).read_text(encoding="utf-8")
    return [row for row in csv.DictReader(io.StringIO(text)) if any((v or "").strip() for v in row.values())]
