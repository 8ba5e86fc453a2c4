"""One municipality's daily message files from a frame of its notifications (the work a pool process does).

Why a module of its own: the submission writer plans and commits the ledger in the parent process while
up to two processes render, validate and write the files of other municipalities; what they run must be
importable and free of ledger state. Every message is validated against the schema before its file is
written; a message that fails is never written and the job raises `MessageInvalid` naming its first
failing notification and rule (the first failing day of the municipality).

The job asks its serializer whether it renders whole frames (`FrameWriter`); if it does, the days come from
it and are checked in batches, else (and for the days it flags) each day is one `serialize` call.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import gc
import hashlib
import io
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from transforms.core.atomic import Folders
from transforms.core.config import Municipality
from transforms.core.layout import DataRoot
from transforms.submit.serializers import frame_writer, get_serializer
from transforms.submit.serializers.model import Contact, Event, Message, Notification, Person
from transforms.tables import MESSAGE_FRAME

VERSION_OUT = "ktt-backfill 0.1.0"
BATCH_NOTIFICATIONS = 4000  # notifications per schema validation call: a few MB of XML


@dataclass(frozen=True)
class DayFile:
    """A written (or reproduced) day: what `written_days` records."""

    day: dt.date
    n_notifications: int
    first_seq: int
    last_seq: int
    file: str  # relative to the data root
    sha256: str


@dataclass(frozen=True)
class MessageJob:
    """The days of one municipality to write; `expected` (day -> file, sha256) when reproducing them."""

    root: Path
    municipality: Municipality
    frame: pl.DataFrame  # MESSAGE_FRAME
    serializer: str = "xpr56"
    expected: dict[dt.date, tuple[str, str]] | None = None

    def __reduce__(self) -> tuple:
        # to a pool process: the frame as Arrow IPC, less than half the planner's CPU of pickling a DataFrame
        buffer = io.BytesIO()
        self.frame.write_ipc(buffer, compression="uncompressed")
        return _job_from_ipc, (self.root, self.municipality, buffer.getvalue(), self.serializer, self.expected)


def _job_from_ipc(root: Path, municipality: Municipality, frame: bytes, serializer: str,
                  expected: dict[dt.date, tuple[str, str]] | None) -> MessageJob:
    return MessageJob(root, municipality, pl.read_ipc(io.BytesIO(frame)), serializer, expected)


def message_of(municipality: Municipality, rows: pl.DataFrame) -> Message:
    """The model of one day's message (the per-message path; rows in MESSAGE_FRAME's columns)."""
    notifications = []
    for n in rows.iter_rows(named=True):
        event = Event(
            kind=n["event_type"], service_type=n["service_code"], service_id=n["reporting_id"],
            event_date=n["event_date"], registered_at=n["registered_at"], event_guid=n["event_guid"],
            person=Person(patient_guid=n["pasient_guid"], user_no=n["bruker_nr"], fid=n["fid"],
                          type_id=n["id_type"]),
            provider_org=n["provider_org"] if n["event_type"] == "TjenesteutforerEndret" else None,
            stop_id=n["stop_id"],
        )
        notifications.append(Notification(
            guid=n["guid"], previous_guid=n["previous_guid"], sequence_no=n["seq"], status=n["status"],
            notification_time=dt.datetime.combine(n["day"], dt.time()), event=event, ref_guid=n["ref_guid"]))
    return empty_message(municipality, tuple(notifications))


def empty_message(municipality: Municipality, notifications: tuple[Notification, ...] = ()) -> Message:
    return Message(
        kommune_nr=municipality.nr, vendor=municipality.vendor, epj_name=municipality.epj_name,
        epj_version=municipality.epj_version, version_out=VERSION_OUT,
        contacts=tuple(Contact(c.name, c.email, c.type) for c in municipality.contacts),
        notifications=notifications)


def write_messages(job: MessageJob) -> list[DayFile]:
    """Render, validate and write the job's days in day order; raises at the first invalid message."""
    serializer = get_serializer(job.serializer)
    municipality, root = job.municipality, job.root
    frame = MESSAGE_FRAME.conform(job.frame)
    bulk = frame_writer(serializer)
    days = bulk.render_days(frame, empty_message(municipality)) if bulk is not None else per_message_days(frame)
    slow_days = set(days.filter("suspect")["day"].to_list())
    by_day = ({d: f for (d,), f in frame.filter(pl.col("day").is_in(list(slow_days))).group_by("day")}
              if slow_days else {})
    folders = Folders()
    written: list[DayFile] = []
    batch: list[tuple[dt.date, int, int, int, bytes | None]] = []
    size = 0

    def flush() -> None:
        checks = bulk.check_rendered([data for *_, data in batch if data is not None]) if bulk is not None else []
        results = iter(checks)
        ready = []
        for day, n, first, last, data in batch:
            if data is None:  # the per-message path: the serializer's own rules and schema check
                data = serializer.serialize(message_of(municipality, by_day[day].sort("seq")))
            elif (problem := next(results)) is not None:
                raise problem
            ready.append((day, n, first, last, data))
        for day, n, first, last, data in ready:
            written.append(_place(job, root, municipality.nr, day, n, first, last, data, folders))
        batch.clear()

    with folders, no_gc():
        for day, message, n, first, last, suspect in days.select("day", "message", "n", "first_seq", "last_seq",
                                                                 "suspect").iter_rows():
            batch.append((day, n, first, last, None if suspect else message))
            size += n
            if size >= BATCH_NOTIFICATIONS:
                flush()
                size = 0
        flush()
    return written


def per_message_days(frame: pl.DataFrame) -> pl.DataFrame:
    """The days of `frame` as `FrameWriter.render_days` gives them, none rendered: every day is suspect, so
    each becomes one `serialize` call (the path of a serializer that renders no frames)."""
    return (frame.sort("day", "seq").group_by("day", maintain_order=True)
            .agg(n=pl.len(), first_seq=pl.col("seq").min(), last_seq=pl.col("seq").max())
            .with_columns(message=pl.lit(None, pl.Binary), suspect=pl.lit(True)))


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """No cyclic garbage collection while a job or a run makes millions of short-lived tuples (none of them
    in cycles): each full collection would walk every object of the process, the identity map included."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _place(job: MessageJob, root: Path, kommune: str, day: dt.date, n: int, first: int, last: int,
           data: bytes, folders: Folders) -> DayFile:
    digest = hashlib.sha256(data).hexdigest()
    if job.expected is None:
        rel = DataRoot.message_relpath(kommune, day)
        folder, name = rel.rsplit("/", 1)
        folders.write(f"{root}/{folder}", name, data)
        return DayFile(day, n, first, last, rel, digest)
    else:
        recorded_rel, recorded = job.expected[day]
        if digest != recorded:
            raise RuntimeError(f"{recorded_rel}: the ledger no longer reproduces the message it recorded "
                               "(serializer or identity vault changed); not overwriting it")
        path = root / recorded_rel
        if not path.exists() or path.read_bytes() != data:
            folders.write(str(path.parent), path.name, data)
        return DayFile(day, n, first, last, recorded_rel, digest)


def worker_init(parent: int) -> None:
    """In a pool process: die with the parent, so a killed writer leaves no process writing files."""
    with contextlib.suppress(OSError):  # not Linux: the pool's own shutdown has to do
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)
