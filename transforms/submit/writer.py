"""Daily submissions: plan each day's notifications against the ledger, write the messages.

For a municipality and a range of days, days already in the ledger are reproduced
from it byte for byte; the days after are planned set-based (`transforms.submit.planning`), the
ledger's state of every sent key (one query) against the current events: new events (N), changed
content of sent keys (M) and keys that disappeared (C), the last two and any late registrations going
to the first day not yet written. Files are written atomically before the ledger commits them: a run
killed half-way leaves no ledger rows for unwritten days, and the rerun writes identical files
(everything is deterministic), so nothing is lost, doubled or renumbered.

Throughput: the parent process plans, numbers and commits one municipality at a time
(one transaction each, in municipality order) while up to two pool processes render,
validate and write the files of the municipalities planned next (`transforms.submit.messages`).
A municipality is committed only after all of its files are written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from transforms.core.atomic import remove_stale_temporaries, write_parquet
from transforms.core.config import Municipality, load_kommuner
from transforms.core.settings import Settings
from transforms.ingest.quarantine import mask_identifiers
from transforms.privacy.identity import Pseudonymizer, read_vault
from transforms.privacy.keys import Keys
from transforms.submit.events import MunicipalityEvents
from transforms.submit.ledger import DayOrderError, last_written_days, open_ledger, writer_lock
from transforms.submit.messages import (
    VERSION_OUT,
    DayFile,
    MessageJob,
    message_of,
    no_gc,
    worker_init,
    write_messages,
)
from transforms.submit.planning import ACTIVE_SQL, assign_persons, number_plan, plan_notifications
from transforms.submit.quiet import PlannedAgainst, events_state, quiet_municipalities, settled_municipalities
from transforms.submit.serializers import MessageInvalid, get_serializer
from transforms.tables import EVENTS, IDENTITY_VAULT, MANIFEST, MESSAGE_FRAME, WRITTEN_DAYS

__all__ = ["VERSION_OUT", "SubmissionReport", "SubmissionWriter", "write_manifest"]

CHECKPOINT_THRESHOLD = "1GB"
QUIET_PLAN = pl.DataFrame(schema={"status": pl.String})  # a quiet municipality's plan: no notification
JOB_ROWS = 100_000  # notifications per pool job at most (whole days): bounds a job's memory, not its speed
POOL_MIN_ROWS = 20_000  # a municipality job this large starts the process pool (starting it costs ~1 s)


@dataclass
class SubmissionReport:
    days_written: int = 0
    days_reproduced: int = 0
    files: int = 0
    notifications: dict[str, int] = field(default_factory=lambda: {"N": 0, "M": 0, "C": 0})
    municipalities: int = 0


# `written_days` without the municipality: what a municipality's job returns, one row per day
DAY_ROW_SCHEMA = {name: dtype for name, dtype in WRITTEN_DAYS.schema.items() if name != "kommune"}


def _day_rows(days: list[DayFile], first: dt.date, last: dt.date) -> pl.DataFrame:
    """`written_days` of a range (without the municipality): the written days, then the days without a message."""
    written = pl.DataFrame([(d.day, d.n_notifications, d.first_seq, d.last_seq, d.file, d.sha256) for d in days],
                           schema=DAY_ROW_SCHEMA, orient="row")
    empty = (pl.date_range(first, last, eager=True).alias("day").to_frame()
             .join(written, on="day", how="anti", maintain_order="left")
             .with_columns(n_notifications=pl.lit(0, pl.Int64)))
    return pl.concat([written, empty], how="diagonal")


class _Inline(Executor):
    """Runs a job in this process when it is submitted (small runs: no pool to start)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to whoever takes the result, as a pool would
            future.set_exception(exc)
        return future


@dataclass
class _Pending:
    """A municipality handed to jobs: days to reproduce, and new days to commit once their files exist."""

    kommune: str
    reproduced: Future | None = None
    written: list[Future] | None = None  # the parts of the new days, in day order
    first: dt.date | None = None  # of the new days, with their plan
    last: dt.date | None = None
    plan: pl.DataFrame | None = None


# present while a writer runs (under the writer's lock): a run that finds it was preceded by one that was killed
# or failed, and only then is the tree searched for its temporary files (two seconds at national scale)
RUNNING_MARKER = ".writer-running"


class PersonsWithoutIdentity(LookupError):
    """Notifications to write name persons whose identity the writer cannot find.

    Why it happens: a person the ledger has sent keeps being named (a cancellation of their services needs
    them) after their identity left the identity vault, when the sources were staged again with another key
    file, or without `KTT_ALLOW_SYNTHETIC_IDS=1` on synthetic test data (the identifiers are quarantined and
    never reach the vault); or the ledger lacks the person's row. Named by pseudonym and count, never by
    identifier."""

    def __init__(self, kommune: str, not_in_vault: list[str], not_in_ledger: list[str]):
        self.kommune, self.not_in_vault, self.not_in_ledger = kommune, not_in_vault, not_in_ledger
        parts = []
        if not_in_vault:
            parts.append(f"{len(not_in_vault)} not in the identity vault (staging/identity_vault), e.g. "
                         f"{', '.join(not_in_vault[:3])}: their identifiers were not staged with this key file. "
                         "Check the staging quarantine for their records (rules id.*, e.g. id.synthetic_not_allowed: "
                         "set KTT_ALLOW_SYNTHETIC_IDS=1 for synthetic test data) and KTT_KEY_FILE, then run "
                         "`ktt ingest` again")
        if not_in_ledger:
            parts.append(f"{len(not_in_ledger)} without a person row in the ledger (ledger/ledger.duckdb, "
                         f"table persons), e.g. {', '.join(not_in_ledger[:3])}: see `ktt ledger status`")
        super().__init__(f"municipality {kommune}: the notifications to write name persons the writer cannot "
                         "identify; " + "; ".join(parts))

    def __str__(self) -> str:  # LookupError (like KeyError) would quote the message
        return str(self.args[0])


class SubmissionWriter:
    """Writes one data root's daily messages; holds the ledger lock while it lives.

    `workers`: processes that render, validate and write files beside the planning process; None
    starts up to two (as many as there are CPUs) once a municipality is large enough to repay it, 0
    or 1 keeps everything in this process. The pool is spawned, so like any multiprocessing pool it
    imports the caller's main module: a script that runs the writer needs the `__main__` guard.
    """

    def __init__(self, settings: Settings, keys: Keys, serializer: str = "xpr56", workers: int | None = None):
        self.settings = settings
        self.root = settings.data_root
        self.serializer_name = serializer
        self.serializer = get_serializer(serializer)
        self.municipalities = {m.nr: m for m in load_kommuner(settings.root.kommuner_toml)}
        vault = read_vault(settings.root.files(IDENTITY_VAULT), keys.vault_key)
        # one row per person (the last, as before), sorted: `_message_frame` finds a person by binary search
        self.identities = (vault.select("person_key", "fid", "id_type")
                           .unique("person_key", keep="last", maintain_order=True).sort("person_key"))
        self.pseudonym_key = keys.pseudonym_key
        self.workers = workers
        self._pool: Executor | None = None

    def run(self, first_day: dt.date, last_day: dt.date, kommuner: list[str] | None = None,
            progress: Callable[[str, int], None] | None = None, lock_timeout: float = 60.0) -> SubmissionReport:
        report = SubmissionReport()
        targets = sorted(kommuner or self.municipalities)
        unknown = [k for k in targets if k not in self.municipalities]
        if unknown:
            raise ValueError(f"municipalities not in config/kommuner.toml: {', '.join(unknown)}")
        with writer_lock(self.root, lock_timeout), open_ledger(self.root) as con, no_gc():
            # a checkpoint also writes the tables' indexes out: one per 16 MB of log (the default) doubled the
            # cost of the commits of a backfill; the log stays durable, the checkpoint comes when this closes
            con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
            # one municipality at a time is too little work to share between threads: with the pool's
            # processes busy on the other cores, a second DuckDB thread only added CPU time to the commits
            con.execute("SET threads = 1")
            running = self.settings.root.submissions / RUNNING_MARKER
            if running.exists():  # the last writer did not finish: its temporaries go, the rerun rewrites them
                remove_stale_temporaries(self.settings.root.submissions)
            running.parent.mkdir(parents=True, exist_ok=True)
            running.touch()
            last = last_written_days(con)
            first_missing = {k: (last[k] + dt.timedelta(days=1)) if k in last else self.settings.cutoff_date
                             for k in targets}
            late = [k for k in targets if first_day > first_missing[k]]
            if late:
                k = late[0]
                raise DayOrderError(
                    f"municipality {k}: cannot write {first_day} before {first_missing[k]} is written "
                    f"(first missing day {first_missing[k]}; start the range there)")
            events_path = EVENTS.location(self.root)
            if not events_path.exists():
                raise FileNotFoundError(f"{events_path} not found: materialize service_events (or run "
                                        "`ktt backfill`) first")
            new_days = {k: (max(first_day, first_missing[k]), last_day) for k in targets
                        if max(first_day, first_missing[k]) <= last_day}
            planned, state = PlannedAgainst(self.root), events_state(events_path)
            quiet = quiet_municipalities(events_path, planned, new_days)
            settled = settled_municipalities(events_path, planned, new_days)
            planned.forget()  # until this run ends: a run killed half-way leaves no record
            events = MunicipalityEvents(events_path, only=set(new_days) - quiet)
            pending: deque[_Pending] = deque()
            try:
                for kommune in targets:
                    report.municipalities += 1
                    item = _Pending(kommune)
                    reproduce_to = min(last_day, first_missing[kommune] - dt.timedelta(days=1))
                    if first_day <= reproduce_to:
                        job = self._reproduce_job(con, kommune, first_day, reproduce_to)
                        item.reproduced = self._submit(job) if job is not None else None
                    new_first = max(first_day, first_missing[kommune])
                    if kommune in quiet:  # nothing to send: the days are recorded without a message
                        item.plan, item.first, item.last = QUIET_PLAN, new_first, last_day
                        item.written = [_Inline().submit(list)]
                    elif new_first <= last_day:
                        frame = events.take(kommune)  # read one municipality at a time, let it go once planned
                        item.plan, job = self._plan_new(con, kommune, new_first, last_day, frame, kommune in settled)
                        item.first, item.last, item.written = new_first, last_day, self._submit_parts(job)
                    pending.append(item)
                    # keep the pool busy with the next municipality while this one is committed
                    while len(pending) > self._depth():
                        self._finish(con, pending.popleft(), report, progress)
                while pending:
                    self._finish(con, pending.popleft(), report, progress)
            finally:
                for p in pending:
                    for future in (p.reproduced, *(p.written or ())):
                        if future is not None:
                            future.cancel()
                if self._pool is not None:
                    self._pool.shutdown(wait=True, cancel_futures=True)
                    self._pool = None
            con.execute("RESET threads")  # no pool any more: the checkpoint when this closes may use every core
            write_manifest(con, self.root)
            planned.record(sorted(new_days), state)
            running.unlink()
        return report

    # --- jobs -------------------------------------------------------------------------
    def _depth(self) -> int:
        return 3 if isinstance(self._pool, ProcessPoolExecutor) else 0

    def _submit_parts(self, job: MessageJob) -> list[Future]:
        """The job in parts of whole days, about JOB_ROWS notifications each: a large municipality's nine years
        (Oslo's half a million notifications) as one job made the frame, its copy for the pool and the
        pool process's rendering as large as the whole municipality."""
        if job.frame.height <= JOB_ROWS:
            return [self._submit(job)]
        per_day = job.frame.group_by("day", maintain_order=True).len()
        part = ((per_day["len"].cum_sum() - per_day["len"]) // JOB_ROWS).alias("part")
        parts = job.frame.join(per_day.select("day", part), on="day", how="left", maintain_order="left")
        return [self._submit(dataclasses.replace(job, frame=frame.drop("part")))
                for frame in parts.partition_by("part", maintain_order=True)]

    def _submit(self, job: MessageJob) -> Future:
        if self._pool is None:
            size = self.workers if self.workers is not None else min(2, len(os.sched_getaffinity(0)))
            if multiprocessing.current_process().daemon:  # a daemonic process may not start a pool
                size = 0
            if size > 1 and (self.workers is not None or job.frame.height >= POOL_MIN_ROWS):
                context = multiprocessing.get_context("spawn")  # no fork of a process running DuckDB/Polars threads
                self._pool = ProcessPoolExecutor(size, mp_context=context, initializer=worker_init,
                                                 initargs=(os.getpid(),))
            elif self.workers is not None or job.frame.height >= POOL_MIN_ROWS:
                self._pool = _Inline()
        return (self._pool or _Inline()).submit(write_messages, job)

    def _finish(self, con: duckdb.DuckDBPyConnection, item: _Pending, report: SubmissionReport,
                progress: Callable[[str, int], None] | None) -> None:
        if item.reproduced is not None:
            report.days_reproduced += len(self._result(item.reproduced))
        if item.written is not None:
            self._commit(con, item, [day for part in item.written for day in self._result(part)], report)
        if progress:
            progress(item.kommune, 1)

    def _result(self, future: Future) -> list[DayFile]:
        try:
            return future.result()
        except MessageInvalid as exc:
            # a schema message may quote an attribute value; the failure is logged, identifiers must not be
            tag = Pseudonymizer(self.pseudonym_key).tag
            raise MessageInvalid(exc.rule, mask_identifiers(exc.detail, tag), exc.notification_guid,
                                 exc.sequence_no) from None

    # --- new days -------------------------------------------------------------------
    def _plan_new(self, con: duckdb.DuckDBPyConnection, kommune: str, first: dt.date, last: dt.date,
                  events: pl.DataFrame, settled: bool = False) -> tuple[pl.DataFrame, MessageJob]:
        """`settled`: planned against these very events before (`quiet.py`), so every event dated before
        `first` is in the ledger as it is now: the new days' events alone make the plan, all of them N."""
        mine = events.filter(pl.col("kommune") == kommune)
        if settled:
            active = con.execute(ACTIVE_SQL, {"kommune": None, "first_day": first}).pl()  # no rows, its columns
            mine = mine.filter(pl.col("day") >= first)
        else:
            active = con.execute(ACTIVE_SQL, {"kommune": kommune, "first_day": first}).pl()
        plan = plan_notifications(active, mine, first, last)
        plan = number_plan(con, kommune, plan)
        persons = assign_persons(con, kommune, plan)
        job = MessageJob(self.root, self.municipalities[kommune], self._message_frame(kommune, plan, persons),
                         self.serializer_name)
        return plan, job

    def _commit(self, con: duckdb.DuckDBPyConnection, item: _Pending, days: list[DayFile],
                report: SubmissionReport) -> None:
        """One transaction per municipality, after every one of its files is written."""
        kommune, plan = item.kommune, item.plan
        assert plan is not None and item.first is not None and item.last is not None
        report.files += len(days)
        days_frame = _day_rows(days, item.first, item.last)
        con.execute("BEGIN TRANSACTION")
        try:
            if plan.height:
                con.register("plan_frame", plan.to_arrow())
                con.execute("""
                    INSERT INTO notifications SELECT $kommune, seq, guid, previous_guid, day, status, ref_guid,
                        event_key, content_hash, event_guid, event_type, reporting_id, service_code, event_date,
                        registered_at, provider_org, stop_id, person_key FROM plan_frame""", {"kommune": kommune})
                con.unregister("plan_frame")
            con.register("days_frame", days_frame.to_arrow())
            con.execute("INSERT INTO written_days SELECT $kommune, * FROM days_frame", {"kommune": kommune})
            con.unregister("days_frame")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        report.days_written += days_frame.height
        for status, n in plan.group_by("status").len().iter_rows():
            report.notifications[status] += n

    # --- messages -------------------------------------------------------------------
    def _message_frame(self, kommune: str, notes: pl.DataFrame, persons: pl.DataFrame) -> pl.DataFrame:
        """The notifications with what their `Bruker` says (a person missing from either: `PersonsWithoutIdentity`).

        The national identity table is searched for each person once, not joined: a join would hash all of it
        for every municipality.
        """
        people = notes.select(pl.col("person_key").unique(maintain_order=True)).join(
            persons, on="person_key", how="left", maintain_order="left")
        keys, ids = people["person_key"], self.identities
        at = ids["person_key"].search_sorted(keys).clip(upper_bound=max(ids.height - 1, 0))
        found = ids[at] if ids.height else ids.clear(keys.len())
        not_in_vault, not_in_ledger = keys.ne_missing(found["person_key"]), people["pasient_guid"].is_null()
        if (not_in_vault | not_in_ledger).any():
            raise PersonsWithoutIdentity(kommune, keys.filter(not_in_vault).to_list(),
                                         keys.filter(not_in_ledger).to_list())
        people = people.with_columns(fid=found["fid"], id_type=found["id_type"])
        frame = notes.join(people, on="person_key", how="left", maintain_order="left")
        return MESSAGE_FRAME.conform(frame.select(MESSAGE_FRAME.column_names))

    def serialize(self, municipality: Municipality, notes: pl.DataFrame, persons: pl.DataFrame) -> bytes:
        """One message of the given notifications (the resend's path); identifiers masked in a failure."""
        try:
            frame = self._message_frame(municipality.nr, notes, persons)
            return self.serializer.serialize(message_of(municipality, frame))
        except MessageInvalid as exc:
            tag = Pseudonymizer(self.pseudonym_key).tag
            raise MessageInvalid(exc.rule, mask_identifiers(exc.detail, tag), exc.notification_guid,
                                 exc.sequence_no) from None

    def _reproduce_job(self, con: duckdb.DuckDBPyConnection, kommune: str, first: dt.date, last: dt.date
                       ) -> MessageJob | None:
        """Already-written days from the ledger; the job checks the bytes against the recorded checksum."""
        days = con.execute("SELECT day, file, sha256 FROM written_days WHERE kommune = ? AND day BETWEEN ? AND ? "
                           "AND file IS NOT NULL ORDER BY day", [kommune, first, last]).fetchall()
        if not days:
            return None
        notes = con.execute("SELECT * FROM notifications WHERE kommune = ? AND day BETWEEN ? AND ? ORDER BY seq",
                            [kommune, first, last]).pl()
        persons = con.execute("SELECT person_key, bruker_nr, pasient_guid FROM persons WHERE kommune = ?",
                              [kommune]).pl()
        return MessageJob(self.root, self.municipalities[kommune], self._message_frame(kommune, notes, persons),
                          self.serializer_name, expected={d: (rel, digest) for d, rel, digest in days})


def write_manifest(con: duckdb.DuckDBPyConnection, data_root: Path) -> Path:
    """`MANIFEST`: every day with a message file, from the ledger (the files' system of record)."""
    frame = con.execute("""SELECT kommune, day, n_notifications, first_seq, last_seq, file, sha256
                           FROM written_days WHERE file IS NOT NULL ORDER BY kommune, day""").pl()
    path = MANIFEST.location(data_root)
    write_parquet(MANIFEST.conform(frame), path)
    return path
