"""The daily submissions' three checks: messages valid, ledger numbered and chained, replay equal to the events.

Why here and not in the asset: what a check looks at and when it passes is submission logic, and a CLI
command or a test can run it without Dagster. Each check returns a `CheckOutcome` (passed, a few figures,
tables of what failed); `assets/submissions.py` only turns it into an `AssetCheckResult`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from transforms.submit.ledger import integrity_problems
from transforms.submit.replay import repeated_starts, replay_differences
from transforms.submit.serializers import DEFAULT_SERIALIZER, get_serializer


@dataclass(frozen=True)
class Check:
    """A check's name (the asset check's) and what it verifies."""

    name: str
    description: str


SCHEMA_VALID = Check("messages_schema_valid", "every message written in the run validates against XPR(ipl).xsd")
SEQUENCE_AND_CHAIN = Check("ledger_sequence_and_chain",
                           "notifikasjonLopeNr 1..N without holes, GUID chain intact, nothing sent twice")
REPLAY = Check("replay_reproduces_episodes", "N/M/C replayed give exactly the current events; one start per service")
CHECKS = (SCHEMA_VALID, SEQUENCE_AND_CHAIN, REPLAY)


@dataclass(frozen=True)
class CheckOutcome:
    """What one check found: whether it passed, figures (counts), and tables of what failed (rows in order)."""

    check: Check
    passed: bool
    figures: dict[str, int] = field(default_factory=dict)
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)


def written_files(con: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date) -> list[str]:
    """The message files of the days `first`..`last` (relative to the data root), as the ledger records them."""
    rows = con.execute("SELECT file FROM written_days WHERE file IS NOT NULL AND day BETWEEN ? AND ?",
                       [first, last]).fetchall()
    return [rel for (rel,) in rows]


def check_schema(con: duckdb.DuckDBPyConnection, data_root: Path, first: dt.date, last: dt.date,
                 serializer: str = DEFAULT_SERIALIZER) -> CheckOutcome:
    """Every message file of the range read back and validated (the schema and the format's rules).

    Each file is validated again, although it was validated before it was written; `written_days` records
    its SHA-256, with which the bytes could be compared instead.
    """
    files = written_files(con, first, last)
    validator = get_serializer(serializer)
    invalid = []
    for rel in files:
        issues = validator.validate((data_root / rel).read_bytes())
        if issues:
            invalid.append({"file": rel, "first_issue": str(issues[0])})
    return CheckOutcome(SCHEMA_VALID, passed=not invalid, figures={"files_checked": len(files)},
                        tables={"invalid": pl.DataFrame(invalid)})


def check_sequence_and_chain(con: duckdb.DuckDBPyConnection) -> CheckOutcome:
    """The whole ledger: numbering without holes, the GUID chain, no GUID twice, nothing sent twice."""
    problems = integrity_problems(con)
    return CheckOutcome(SEQUENCE_AND_CHAIN, passed=problems.height == 0, tables={"problems": problems})


def check_replay(con: duckdb.DuckDBPyConnection, events: pl.DataFrame) -> CheckOutcome:
    """The ledger's N, M and C replayed against the current events, and one start per service."""
    differences = replay_differences(con, events)
    starts = repeated_starts(con)
    return CheckOutcome(REPLAY, passed=differences.height == 0 and starts.height == 0,
                        figures={"differences": differences.height, "repeated_starts": starts.height},
                        tables={"first": differences})


def submission_checks(con: duckdb.DuckDBPyConnection, data_root: Path, first: dt.date, last: dt.date,
                      events: pl.DataFrame) -> list[CheckOutcome]:
    """The three checks of a run that wrote `first`..`last`, in `CHECKS` order."""
    return [check_schema(con, data_root, first, last), check_sequence_and_chain(con), check_replay(con, events)]
