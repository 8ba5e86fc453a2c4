"""What every reader shares: its context, the whole-file rejection, record-level handling."""

from __future__ import annotations

from dataclasses import dataclass

from transforms.ingest.quarantine import Rejection


class FileRejected(Exception):
    """The file as a whole cannot be read; the orchestrator quarantines it and goes on."""

    def __init__(self, rule_id: str, message: str):
        super().__init__(message)
        self.rejection = Rejection(rule_id, message)


@dataclass(frozen=True)
class ReadContext:
    """What a reader needs to know beyond the file itself."""

    allow_synthetic_ids: bool
    # yearly extracts: the data year and unit the file is filed under
    year: int | None = None
    unit: str | None = None
    # EPJ exports: the configured system and the municipality it reports for
    system: str | None = None
    reporting_kommune: str | None = None
