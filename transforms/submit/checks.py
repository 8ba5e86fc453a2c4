"""The daily submissions' three checks: messages valid, ledger numbered and chained, replay equal to the events.

Why here and not in the asset: what a check looks at and when it passes is submission logic, and a CLI
command or a test can run it without Dagster. Each check returns a `CheckOutcome` (passed, a few figures,
tables of what failed); `assets/submissions.py` only turns it into an `AssetCheckResult`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from transforms.core.memory import release_memory
from transforms.submit.digests import verify_digests
from transforms.submit.ledger import integrity_problems
from transforms.submit.replay import repeated_starts, replay_differences_streamed, replay_since_recorded
from transforms.submit.serializers import DEFAULT_SERIALIZER, get_serializer
from transforms.tables import EVENTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """A check's name (the asset check's) and what it verifies."""

    name: str
    description: str


SCHEMA_VALID = Check("messages_schema_valid", "every message file of the run is the bytes validated against "
                     "XPR(ipl).xsd when it was written (recorded SHA-256); a sample validated again")
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


def written_files(con: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date) -> pl.DataFrame:
    """The message files of the days `first`..`last` (relative to the data root) with the SHA-256 the writer
    recorded for each (`kommune`, `day`, `file`, `sha256`), as the ledger holds them."""
    return con.execute("SELECT kommune, day, file, sha256 FROM written_days WHERE file IS NOT NULL "
                       "AND day BETWEEN ? AND ? ORDER BY kommune, day", [first, last]).pl()


def check_schema(con: duckdb.DuckDBPyConnection, data_root: Path, first: dt.date, last: dt.date,
                 serializer: str = DEFAULT_SERIALIZER) -> CheckOutcome:
    """Every message file of the range is the very bytes that were validated; a sample is validated again.

    Validity is established where a message is made: the writer validates every message (the schema and
    the format's rules) before it writes it and records the SHA-256 of those validated bytes in
    `written_days` (and the manifest). So each file is hashed and compared with its recorded digest
    (`transforms.submit.digests`, streamed on threads): a file that matches is byte for byte one that
    passed validation, without parsing 900,000 XML documents again. A missing or changed file fails.
    In addition each municipality's first and last file of the range is validated again in full (the
    `files_revalidated` figure, a sample, validated on the hashing's workers), so a validator that no longer
    accepts what the writer made is noticed too; a changed file is validated as well, for the table's first issue.
    """
    files = written_files(con, first, last)
    sample = files.group_by("kommune").agg(pl.col("file").first().alias("a"), pl.col("file").last().alias("b"))
    sampled = sorted({*sample["a"].to_list(), *sample["b"].to_list()})
    verified = verify_digests(data_root, files["file"].to_list(), files["sha256"].to_list(), revalidate=sampled,
                              serializer=serializer)
    validator = get_serializer(serializer)
    revalidate = sorted({*sampled, *verified.changed})
    invalid = {rel: "file missing" for rel in verified.missing}
    for rel in revalidate:
        if rel in invalid:
            continue
        if rel in verified.invalid:
            invalid[rel] = verified.invalid[rel]
            continue
        issues = validator.validate((data_root / rel).read_bytes()) if rel not in sampled else []
        if issues:
            invalid[rel] = str(issues[0])
        elif rel in verified.changed:
            invalid[rel] = "not the bytes that were validated and recorded (SHA-256 differs)"
    table = pl.DataFrame([{"file": rel, "first_issue": issue} for rel, issue in sorted(invalid.items())],
                         schema={"file": pl.String, "first_issue": pl.String})
    return CheckOutcome(SCHEMA_VALID, passed=not invalid, figures={
        "files_checked": verified.checked, "bytes_hashed": verified.bytes, "files_changed": len(verified.changed),
        "files_missing": len(verified.missing), "files_revalidated": len(revalidate)},
        tables={"invalid": table})


def check_sequence_and_chain(con: duckdb.DuckDBPyConnection, since: dt.date | None = None) -> CheckOutcome:
    """Numbering without holes, the GUID chain, no GUID twice, nothing sent twice: of the notifications of days
    from `since` on (a run's, joined to what came before them), or of the whole ledger."""
    problems = integrity_problems(con, since)
    return CheckOutcome(SEQUENCE_AND_CHAIN, passed=problems.height == 0, tables={"problems": problems})


def check_replay(con: duckdb.DuckDBPyConnection, events: Path, since: dt.date | None = None,
                 data_root: Path | None = None) -> CheckOutcome:
    """The ledger's N, M and C replayed against the current events (the `EVENTS` file `events`), a batch of
    municipalities at a time, and one start per service (of the services started from `since` on).

    With `data_root` (the ledger's), from where the last passed replay stood (`replay.ReplayRecord`): only what
    came after it is replayed, and where each municipality now stands is recorded; without, all of it.
    """
    figures = {}
    if data_root is None:
        differences = replay_differences_streamed(con, events)
    else:
        replay = replay_since_recorded(con, events, data_root)
        differences = replay.differences
        figures = {"municipalities_replayed_whole": replay.whole,
                   "municipalities_replayed_since_last_check": replay.since_last,
                   "municipalities_unchanged_since_last_check": replay.unchanged}
    starts = repeated_starts(con, since)
    return CheckOutcome(REPLAY, passed=differences.height == 0 and starts.height == 0,
                        figures={"differences": differences.height, "repeated_starts": starts.height, **figures},
                        tables={"first": differences})


def submission_checks(con: duckdb.DuckDBPyConnection, data_root: Path, first: dt.date, last: dt.date
                      ) -> list[CheckOutcome]:
    """The three checks of a run that wrote `first`..`last`, in `CHECKS` order; each logs its time.

    Numbering, chain and repeated starts are checked for the run's notifications (and where they join the
    ledger), which the runs before checked for theirs; the replay covers every municipality's whole ledger,
    replaying what the last passed replay did not see (`replay.ReplayRecord`).
    """
    log.info("checks of %s..%s: start", first, last)
    outcomes = []
    for check in (lambda: check_schema(con, data_root, first, last), lambda: check_sequence_and_chain(con, first),
                  lambda: check_replay(con, EVENTS.location(data_root), first, data_root)):
        started = time.perf_counter()
        outcome = check()
        release_memory()  # what one check read must not sit under the next one's peak
        log.info("check %s: %.1f s", outcome.check.name, time.perf_counter() - started)
        outcomes.append(outcome)
    return outcomes
