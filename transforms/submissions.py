"""Daily submissions: plan each day's notifications against the ledger, write the messages.

For a municipality and a range of days, days already in the ledger are reproduced
from it byte for byte; the days after are planned in one set-based query: new events
(N), changed content of sent keys (M) and keys that disappeared (C), the last two and
any late registrations going to the first day not yet written. Files are written
atomically before the ledger commits them: a run killed half-way leaves no ledger
rows for unwritten days, and the rerun writes identical files (everything is
deterministic), so nothing is lost, doubled or renumbered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from transforms.config import Municipality, load_kommuner
from transforms.events import EVENT_ORDER
from transforms.identity import Pseudonymizer, read_vault
from transforms.keys import Keys
from transforms.ledger import (
    DayOrderError,
    deterministic_guid,
    last_written_days,
    open_ledger,
    writer_lock,
)
from transforms.quarantine import mask_identifiers
from transforms.serializers import MessageInvalid, get_serializer
from transforms.serializers.model import NIL_GUID, Contact, Event, Message, Notification, Person
from transforms.settings import Settings

VERSION_OUT = "ktt-backfill 0.1.0"
STATUS_RANK = {"M": 1, "C": 2, "N": 3}
FIRST_ALLOCATED_USER_NO = 900_000_001

PLAN_SQL = """
WITH state AS (
    SELECT event_key,
           arg_max(status, seq) AS last_status,
           arg_max(content_hash, seq) AS last_hash,
           arg_max(guid, seq) FILTER (WHERE status = 'N') AS original_guid,
           arg_max(seq, seq) AS last_seq
    FROM notifications WHERE kommune = $kommune GROUP BY event_key
), active AS (
    SELECT s.*, n.event_type, n.reporting_id, n.service_code, n.event_date, n.provider_org, n.stop_id,
           n.person_key, n.content_hash
    FROM state s JOIN notifications n ON n.kommune = $kommune AND n.seq = s.last_seq
    WHERE s.last_status <> 'C'
), current AS (
    SELECT * FROM events WHERE kommune = $kommune
)
SELECT 'N' AS status, NULL AS ref_guid, greatest(c.day, $first_day::DATE) AS day, c.event_key, c.content_hash,
       c.event_type, c.reporting_id, c.service_code, c.event_date, c.registered_at, c.provider_org, c.stop_id,
       c.person_key, c.user_no
FROM current c LEFT JOIN active a USING (event_key)
WHERE a.event_key IS NULL AND c.day <= $last_day::DATE
UNION ALL
SELECT 'M', a.original_guid, $first_day::DATE, c.event_key, c.content_hash, c.event_type, c.reporting_id,
       c.service_code, c.event_date, c.registered_at, c.provider_org, c.stop_id, c.person_key, c.user_no
FROM current c JOIN active a USING (event_key)
WHERE c.content_hash <> a.last_hash
UNION ALL
SELECT 'C', a.original_guid, $first_day::DATE, a.event_key, a.content_hash, a.event_type, a.reporting_id,
       a.service_code, a.event_date, CAST($first_day::DATE AS TIMESTAMPTZ), a.provider_org, a.stop_id,
       a.person_key, NULL
FROM active a LEFT JOIN current c USING (event_key)
WHERE c.event_key IS NULL
"""


@dataclass
class SubmissionReport:
    days_written: int = 0
    days_reproduced: int = 0
    files: int = 0
    notifications: dict[str, int] = field(default_factory=lambda: {"N": 0, "M": 0, "C": 0})
    municipalities: int = 0


def message_path(data_root: Path, kommune: str, day: dt.date) -> Path:
    return data_root / "submissions" / f"kommune={kommune}" / f"{day.year}" / f"{day.isoformat()}.xml"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


class SubmissionWriter:
    """Writes one data root's daily messages; holds the ledger lock while it lives."""

    def __init__(self, settings: Settings, keys: Keys, serializer: str = "xpr56"):
        self.settings = settings
        self.root = settings.data_root
        self.serializer = get_serializer(serializer)
        self.municipalities = {m.nr: m for m in load_kommuner(settings.config_dir / "kommuner.toml")}
        vault_path = self.root / "identity" / "vault.bin"
        vault = read_vault([vault_path] if vault_path.exists() else [], keys.vault_key)
        self.identities = {k: (f, t) for k, f, t in vault.select("person_key", "fid", "id_type").iter_rows()}
        self.pseudonym_key = keys.pseudonym_key
        self._events: pl.DataFrame | None = None

    @property
    def events(self) -> pl.DataFrame:
        if self._events is None:
            path = self.root / "timeline" / "events.parquet"
            if not path.exists():
                raise FileNotFoundError(f"{path} not found: materialize service_events (or run `ktt backfill`) first")
            self._events = pl.read_parquet(path)
        return self._events

    def run(self, first_day: dt.date, last_day: dt.date, kommuner: list[str] | None = None,
            progress: Callable[[str, int], None] | None = None, lock_timeout: float = 60.0) -> SubmissionReport:
        report = SubmissionReport()
        targets = sorted(kommuner or self.municipalities)
        unknown = [k for k in targets if k not in self.municipalities]
        if unknown:
            raise ValueError(f"municipalities not in config/kommuner.toml: {', '.join(unknown)}")
        with writer_lock(self.root, lock_timeout), open_ledger(self.root) as con:
            # temporary files of a writer that was killed; the rerun writes the same bytes again
            for stale in (self.root / "submissions").glob("**/.*.tmp"):
                stale.unlink()
            con.register("events", self.events.to_arrow())
            last = last_written_days(con)
            first_missing = {k: (last[k] + dt.timedelta(days=1)) if k in last else self.settings.cutoff_date
                             for k in targets}
            late = [k for k in targets if first_day > first_missing[k]]
            if late:
                k = late[0]
                raise DayOrderError(
                    f"municipality {k}: cannot write {first_day} before {first_missing[k]} is written "
                    f"(first missing day {first_missing[k]}; start the range there)")
            for kommune in targets:
                report.municipalities += 1
                reproduce_to = min(last_day, first_missing[kommune] - dt.timedelta(days=1))
                if first_day <= reproduce_to:
                    report.days_reproduced += self._reproduce(con, kommune, first_day, reproduce_to)
                new_first = max(first_day, first_missing[kommune])
                if new_first <= last_day:
                    self._write_new(con, kommune, new_first, last_day, report)
                if progress:
                    progress(kommune, 1)
            write_manifest(con, self.root)
        return report

    # --- new days -------------------------------------------------------------------
    def _write_new(self, con: duckdb.DuckDBPyConnection, kommune: str, first: dt.date, last: dt.date,
                   report: SubmissionReport) -> None:
        plan = con.execute(PLAN_SQL, {"kommune": kommune, "first_day": first, "last_day": last}).pl()
        plan = self._number(con, kommune, plan)
        persons = self._assign_persons(con, kommune, plan)
        municipality = self.municipalities[kommune]
        day_rows = []
        for notes in plan.partition_by("day", maintain_order=True):
            day = notes["day"][0]
            data = self.serialize(municipality, notes, persons)
            path = message_path(self.root, kommune, day)
            _write_atomic(path, data)
            day_rows.append((kommune, day, notes.height, int(notes["seq"].min()), int(notes["seq"].max()),
                             path.relative_to(self.root).as_posix(), hashlib.sha256(data).hexdigest()))
            report.files += 1
        written = {r[1] for r in day_rows}
        day_rows += [(kommune, d, 0, None, None, None, None) for d in _days(first, last) if d not in written]
        con.execute("BEGIN TRANSACTION")
        try:
            if plan.height:
                con.register("plan_frame", plan.to_arrow())
                con.execute("""
                    INSERT INTO notifications SELECT $kommune, seq, guid, previous_guid, day, status, ref_guid,
                        event_key, content_hash, event_guid, event_type, reporting_id, service_code, event_date,
                        registered_at, provider_org, stop_id, person_key FROM plan_frame""", {"kommune": kommune})
                con.unregister("plan_frame")
            days_frame = pl.DataFrame(day_rows, orient="row", schema={
                "kommune": pl.Utf8, "day": pl.Date, "n_notifications": pl.Int64, "first_seq": pl.Int64,
                "last_seq": pl.Int64, "file": pl.Utf8, "sha256": pl.Utf8})
            con.register("days_frame", days_frame.to_arrow())
            con.execute("INSERT INTO written_days SELECT * FROM days_frame")
            con.unregister("days_frame")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        report.days_written += len(day_rows)
        for status, n in plan.group_by("status").len().iter_rows():
            report.notifications[status] += n

    def _number(self, con: duckdb.DuckDBPyConnection, kommune: str, plan: pl.DataFrame) -> pl.DataFrame:
        """Sequence numbers, GUIDs and the chain, continuing the municipality's ledger."""
        last_seq, last_guid = con.execute(
            "SELECT coalesce(max(seq), 0), coalesce(arg_max(guid, seq), ?) FROM notifications WHERE kommune = ?",
            [NIL_GUID, kommune]).fetchone()
        plan = plan.with_columns(
            pl.col("status").replace_strict(STATUS_RANK, return_dtype=pl.Int8).alias("_status"),
            pl.col("event_type").replace_strict(EVENT_ORDER, return_dtype=pl.Int8).alias("_type"),
        ).sort("day", "_status", "event_date", "_type", "event_key").drop("_status", "_type")
        plan = plan.with_columns(seq=pl.int_range(last_seq + 1, last_seq + 1 + plan.height, dtype=pl.Int64))
        guids = [deterministic_guid(kommune, key, seq) for key, seq in plan.select("event_key", "seq").iter_rows()]
        event_guids = [deterministic_guid(kommune, key, digest, status, seq) for key, digest, status, seq in
                       plan.select("event_key", "content_hash", "status", "seq").iter_rows()]
        return plan.with_columns(
            guid=pl.Series(guids, dtype=pl.Utf8),
            previous_guid=pl.Series([last_guid, *guids[:-1]] if guids else [], dtype=pl.Utf8),
            event_guid=pl.Series(event_guids, dtype=pl.Utf8),
        )

    def _assign_persons(self, con: duckdb.DuckDBPyConnection, kommune: str, plan: pl.DataFrame
                        ) -> dict[str, tuple[str, str]]:
        """brukerNr and pasientGUID per person: one number per person for all years, never reused.

        A person keeps the source's user number when no other person has it in the
        municipality; otherwise (two EPJs, or merged municipalities, numbered their users
        independently) the person gets the next number of a reserved range.
        """
        known = {k: (n, g) for k, n, g in con.execute(
            "SELECT person_key, bruker_nr, pasient_guid FROM persons WHERE kommune = ?", [kommune]).fetchall()}
        taken = {n for n, _ in known.values()}
        newcomers = (plan.filter(~pl.col("person_key").is_in(list(known)))
                     .sort("seq").unique("person_key", keep="first", maintain_order=True))
        allocated = con.execute("SELECT count(*) FROM persons WHERE kommune = ? AND TRY_CAST(bruker_nr AS BIGINT) >= ?",
                                [kommune, FIRST_ALLOCATED_USER_NO]).fetchone()[0]
        rows = []
        for person_key, user_no in newcomers.select("person_key", "user_no").iter_rows():
            number = user_no if user_no and user_no not in taken else None
            while number is None or number in taken:
                number = str(FIRST_ALLOCATED_USER_NO + allocated)
                allocated += 1
            taken.add(number)
            guid = deterministic_guid("pasient", kommune, person_key)
            known[person_key] = (number, guid)
            rows.append((kommune, person_key, number, guid))
        if rows:
            frame = pl.DataFrame(rows, orient="row", schema={"kommune": pl.Utf8, "person_key": pl.Utf8,
                                                             "bruker_nr": pl.Utf8, "pasient_guid": pl.Utf8})
            con.register("persons_frame", frame.to_arrow())
            con.execute("INSERT INTO persons SELECT * FROM persons_frame")
            con.unregister("persons_frame")
        return known

    # --- messages -------------------------------------------------------------------
    def serialize(self, municipality: Municipality, notes: pl.DataFrame,
                   persons: dict[str, tuple[str, str]]) -> bytes:
        notifications = []
        for n in notes.iter_rows(named=True):
            fid, id_type = self.identities[n["person_key"]]
            user_no, patient_guid = persons[n["person_key"]]
            event = Event(
                kind=n["event_type"], service_type=n["service_code"], service_id=n["reporting_id"],
                event_date=n["event_date"], registered_at=n["registered_at"], event_guid=n["event_guid"],
                person=Person(patient_guid=patient_guid, user_no=user_no, fid=fid, type_id=id_type),
                provider_org=n["provider_org"] if n["event_type"] == "TjenesteutforerEndret" else None,
                stop_id=n["stop_id"],
            )
            notifications.append(Notification(
                guid=n["guid"], previous_guid=n["previous_guid"], sequence_no=n["seq"], status=n["status"],
                notification_time=dt.datetime.combine(n["day"], dt.time()), event=event, ref_guid=n["ref_guid"]))
        message = Message(
            kommune_nr=municipality.nr, vendor=municipality.vendor, epj_name=municipality.epj_name,
            epj_version=municipality.epj_version, version_out=VERSION_OUT,
            contacts=tuple(Contact(c.name, c.email, c.type) for c in municipality.contacts),
            notifications=tuple(notifications))
        try:
            return self.serializer.serialize(message)
        except MessageInvalid as exc:
            # a schema message may quote an attribute value; the failure is logged, identifiers must not be
            tag = Pseudonymizer(self.pseudonym_key).tag
            raise MessageInvalid(exc.rule, mask_identifiers(exc.detail, tag), exc.notification_guid,
                                 exc.sequence_no) from None

    def _reproduce(self, con: duckdb.DuckDBPyConnection, kommune: str, first: dt.date, last: dt.date) -> int:
        """Rewrite already-written days from the ledger; the bytes must equal the recorded checksum."""
        days = con.execute("SELECT day, file, sha256 FROM written_days WHERE kommune = ? AND day BETWEEN ? AND ? "
                           "AND file IS NOT NULL ORDER BY day", [kommune, first, last]).fetchall()
        if not days:
            return 0
        notes = con.execute("""
            SELECT n.*, NULL AS user_no FROM notifications n
            WHERE kommune = ? AND day BETWEEN ? AND ? ORDER BY seq""", [kommune, first, last]).pl()
        persons = {k: (n, g) for k, n, g in con.execute(
            "SELECT person_key, bruker_nr, pasient_guid FROM persons WHERE kommune = ?", [kommune]).fetchall()}
        by_day = {d: frame for (d,), frame in notes.group_by("day")}
        for day, rel, digest in days:
            data = self.serialize(self.municipalities[kommune], by_day[day], persons)
            if hashlib.sha256(data).hexdigest() != digest:
                raise RuntimeError(f"{rel}: the ledger no longer reproduces the message it recorded "
                                   "(serializer or identity vault changed); not overwriting it")
            path = self.root / rel
            if not path.exists() or path.read_bytes() != data:
                _write_atomic(path, data)
        return len(days)


def write_manifest(con: duckdb.DuckDBPyConnection, data_root: Path) -> Path:
    frame = con.execute("""SELECT kommune, day, n_notifications, first_seq, last_seq, file, sha256
                           FROM written_days WHERE file IS NOT NULL ORDER BY kommune, day""").pl()
    path = data_root / "submissions" / "manifest.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)
    return path
