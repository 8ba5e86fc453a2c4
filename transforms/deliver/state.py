"""Delivery state in the ledger database: the `deliveries` table, the current state of every message,
and how delivery shares the database with the message writer.

The ledger is one DuckDB file that one process at a time may open for writing, under
`ledger/writer.lock`. Opening it costs ~60 ms, and every delivery attempt is recorded before and
after it is made, so delivery cannot open it per write; nor may it hold it for a whole run, or the
daily writer would wait for the registry. So a `LedgerSession` opens the database (under the lock)
at its first state write and keeps it open between writes, and yields it as soon as a writer asks:
a writer waiting for the lock marks `ledger/writer.wanted`, and the session's watchdog (every
0.1 s) or its next write sees the mark, closes the database and lets the lock go between two
writes, never inside one. Network calls run outside the session's mutex, so a writer waits at most
one short write plus a tenth of a second. After yielding, delivery waits for the writer to finish
and reopens; its workers simply block on their next state write meanwhile.

Nothing is lost when either process is killed: each state write is one DuckDB transaction (durable
in its WAL when it returns), the lock is an `flock` that dies with its holder, and a message whose
last row is `sending` (killed mid-request) is in flight: the next run sends the same bytes with the
same `MessageId`, which the registry answers with its first `refId`. An `accepted` outcome is
written together with the next message's `sending` row (one transaction instead of two per
message); until then the message reads as in flight, which is safe for the same reason.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import duckdb
import polars as pl

from transforms.submit.ledger import lock_exclusively, open_ledger, wanted_marker
from transforms.tables import DELIVERIES

T = TypeVar("T")

# A message's current state: the last row of its last attempt; a written message without rows is pending.
STATE_VIEW_SQL = """
CREATE OR REPLACE VIEW delivery_state AS
WITH last AS (
    SELECT kommune, kind, file,
           arg_max(message_id, attempt * 2 + CAST(event <> 'sending' AS INTEGER)) AS message_id,
           max(attempt) AS attempts,
           arg_max(event, attempt * 2 + CAST(event <> 'sending' AS INTEGER)) AS last_event,
           arg_max(http_status, attempt * 2 + CAST(event <> 'sending' AS INTEGER)) AS http_status,
           arg_max(ref_id, attempt * 2 + CAST(event <> 'sending' AS INTEGER)) AS ref_id,
           arg_max(code, attempt * 2 + CAST(event <> 'sending' AS INTEGER)) AS code,
           arg_max(text, attempt * 2 + CAST(event <> 'sending' AS INTEGER)) AS text,
           max(recorded_at) AS last_at,
           min(first_seq) AS first_seq, max(last_seq) AS last_seq, min(day) AS day
    FROM deliveries GROUP BY kommune, kind, file
),
messages AS (
    SELECT kommune, 'stream' AS kind, day, file, first_seq, last_seq, sha256 FROM written_days
    WHERE file IS NOT NULL
    UNION ALL
    SELECT kommune, kind, day, file, first_seq, last_seq, NULL FROM last WHERE kind = 'resend'
)
SELECT m.kommune, m.kind, m.day, m.file, m.first_seq, m.last_seq, m.sha256, l.message_id,
       coalesce(l.attempts, 0) AS attempts,
       CASE WHEN l.last_event IS NULL OR l.last_event = 'failed' THEN 'pending'
            WHEN l.last_event = 'sending' THEN 'in_flight'
            ELSE l.last_event END AS state,
       l.http_status, l.ref_id, l.code, l.text, l.last_at
FROM messages m LEFT JOIN last l USING (kommune, kind, file)
"""
INSERT_SQL = f"INSERT INTO deliveries ({', '.join(DELIVERIES.column_names)}) VALUES "


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DELIVERIES.create_sql())
    con.execute(STATE_VIEW_SQL)


def state_frame(con: duckdb.DuckDBPyConnection, where: str = "TRUE", params: Sequence = ()) -> pl.DataFrame:
    """Rows of `delivery_state` (every written message), in delivery order."""
    return con.execute(f"SELECT * FROM delivery_state WHERE {where} ORDER BY kommune, kind DESC, first_seq, file",
                       list(params)).pl()


def read_state(data_root: Path, where: str = "TRUE", params: Sequence = ()) -> pl.DataFrame:
    """The state of the messages, read under the writer lock (a delivery in progress yields it)."""
    with LedgerSession(data_root, announce=True) as session:
        return session.run(lambda con: state_frame(con, where, params))


def _literal(value: object) -> str:
    """A value as a DuckDB literal. Delivery writes its rows as literals: with Python parameters, DuckDB tries
    to import pandas once per value (a search of sys.path each time), which cost more than the commit."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        return f"TIMESTAMPTZ '{value.isoformat()}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def insert_rows(con: duckdb.DuckDBPyConnection, rows: Sequence[Sequence]) -> None:
    """Rows in `DELIVERIES` column order, in one transaction."""
    if rows:
        con.execute(INSERT_SQL + ", ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows))


class _Pending:
    __slots__ = ("done", "error", "rows")

    def __init__(self, rows: list[Sequence]):
        self.rows, self.done, self.error = rows, False, None


class LedgerSession:
    """The ledger database for delivery's state writes: opened under the writer lock at the first write,
    kept open between writes, yielded to a waiting message writer (see the module docstring).

    `announce`: a short reader (`ktt delivery status`, the asset's checks) asks a running delivery to
    yield, as a writer does; a delivery run itself never does.
    """

    def __init__(self, data_root: Path, lock_timeout: float = 3600.0, announce: bool = False,
                 watch_interval: float = 0.1):
        self.data_root = Path(data_root)
        self.lock_path = self.data_root / "ledger" / "writer.lock"
        self.wanted = wanted_marker(self.data_root)
        self.lock_timeout, self.announce, self.watch_interval = lock_timeout, announce, watch_interval
        self._mutex = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._handle = None
        self._closed = threading.Event()
        self._watchdog: threading.Thread | None = None
        self.yields = 0  # how often a writer was let in
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()

    # --- the lock and the database ----------------------------------------------------------------
    def _acquire(self) -> None:
        if not self.announce:
            # a writer asked: let it take the lock first (it removes its mark once it holds the lock)
            deadline = time.monotonic() + 60
            while self.wanted.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.lock_path.open("a+")
        try:
            lock_exclusively(handle, self.data_root, self.lock_timeout, self.announce, poll=0.05)
        except BaseException:
            handle.close()
            raise
        self._handle = handle
        try:
            self._con = open_ledger(self.data_root)
            self._con.execute("SET threads = 1")
            ensure_schema(self._con)
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def _watch(self) -> None:
        while not self._closed.wait(self.watch_interval):
            if self._con is not None and self.wanted.exists():
                with self._mutex:
                    if self._con is not None:
                        self._release()
                        self.yields += 1

    # --- use ---------------------------------------------------------------------------------------
    def run(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """`work(con)` with the database open (opened, or reopened after a writer, as needed)."""
        with self._mutex:
            return self._run_locked(work)

    def _run_locked(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        if self._con is None:
            self._acquire()
        assert self._con is not None
        result = work(self._con)
        if not self.announce and self.wanted.exists():
            self._release()
            self.yields += 1
        return result

    def record(self, rows: Sequence[Sequence]) -> None:
        """Insert `rows` durably before returning. Group commit: the rows of every thread waiting meanwhile
        go into one transaction (a commit costs milliseconds; municipalities delivered side by side share it)."""
        entry = _Pending(list(rows))
        with self._queue_lock:
            self._queue.append(entry)
        with self._mutex:
            if not entry.done:  # no thread took it into its transaction meanwhile: lead one
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    self._run_locked(lambda con: insert_rows(con, [row for e in batch for row in e.rows]))
                except BaseException as exc:
                    for e in batch:
                        e.error = exc
                finally:
                    for e in batch:
                        e.done = True
        if entry.error is not None:
            raise entry.error

    def __enter__(self) -> LedgerSession:
        if not self.announce:
            self._watchdog = threading.Thread(target=self._watch, name="ledger-yield", daemon=True)
            self._watchdog.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        if self._watchdog is not None:
            self._watchdog.join()
        with self._mutex:
            self._release()


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
