"""The ledger: the system of record for every notification written, and its single writer.

It numbers notifications 1..N per municipality without holes, chains them by GUID,
remembers which persons got which brukerNr, and which days were written with which
file and checksum. One process writes at a time per data root (an exclusive lock on
`ledger/writer.lock`); a second writer waits for it up to a timeout, then stops with
a message naming the lock and its holder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl

from transforms.core import duck
from transforms.core.layout import DataRoot
from transforms.tables import LEDGER_TABLES

NAMESPACE = uuid.UUID("5b0f6f0e-6a3c-5d8e-9c1b-4b7470626b74")  # ktt-backfill's own UUID5 namespace

# The ledger's DDL, from the table registry. A notification GUID is the UUID5 of (municipality, event key,
# sequence number), so the primary key makes it unique; `integrity_problems` checks that it is. (A UNIQUE index
# on it tripled the cost of every insert and made the ledger, not the messages, the bottleneck of a national
# backfill; ledgers created with it keep it.)
SCHEMA_SQL = "".join(table.create_sql() for table in LEDGER_TABLES)


class LedgerBusy(RuntimeError):
    """Another process holds the writer lock."""


class DayOrderError(RuntimeError):
    """A day was asked for before an earlier day was written."""


def deterministic_guid(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(str(p) for p in parts)))


def wanted_marker(data_root: Path) -> Path:
    """Present while a message writer waits for the lock: delivery, which holds it between its short
    state writes, lets go when it sees this (`transforms.deliver.state`)."""
    return DataRoot(data_root).ledger / "writer.wanted"


def lock_exclusively(handle, data_root: Path, timeout: float, announce: bool, poll: float = 0.2) -> None:
    """`flock` the open lock file exclusively, waiting up to `timeout` seconds (LedgerBusy after it); an
    `announce`d waiter marks `writer.wanted` while it waits."""
    wanted = wanted_marker(data_root)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise LedgerBusy(f"the ledger of {data_root} is being written by another process ({holder}); "
                                     f"lock {handle.name} not released within {timeout:.0f} s") from None
                if announce and not wanted.exists():
                    wanted.touch()
                time.sleep(0.05 if announce else poll)
    finally:
        if announce:
            wanted.unlink(missing_ok=True)


@contextlib.contextmanager
def writer_lock(data_root: Path, timeout: float = 60.0, announce: bool = True) -> Iterator[None]:
    """Hold the exclusive writer lock; wait up to `timeout` seconds for another writer to finish.

    A waiting writer that `announce`s itself marks `writer.wanted`, so that delivery yields the lock
    at its next state write instead of keeping the writer out for a whole delivery run.
    """
    path = DataRoot(data_root).writer_lock
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        lock_exclusively(handle, data_root, timeout, announce)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {dt.datetime.now().isoformat(timespec='seconds')}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


# every ledger connection's DuckDB memory: the writer's planning process runs beside two pool processes, and the
# whole tree of a national backfill stays under 4 GiB only if the ledger's buffers do (beyond it DuckDB evicts
# and spills); the default limit let a national ledger's connection grow to 6 GB, and 2 GB put the planning
# process alone at 2.9 GB in a national backfill (1 GB: 2.3 GB, in the same time)
LEDGER_MEMORY_LIMIT = "1GB"


def open_ledger(data_root: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    path = DataRoot(data_root).ledger_db
    if read_only and not path.exists():
        con = duck.connect()
        con.execute(SCHEMA_SQL)
        return con
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duck.connect(str(path), read_only=read_only, memory_limit=LEDGER_MEMORY_LIMIT)
    if not read_only:
        con.execute(SCHEMA_SQL)
    return con


def last_written_days(con: duckdb.DuckDBPyConnection) -> dict[str, dt.date]:
    return dict(con.execute("SELECT kommune, max(day) FROM written_days GROUP BY kommune").fetchall())


def status_table(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per municipality: last written day, last sequence number, notifications by status, files."""
    return con.execute("""
        SELECT d.kommune, max(d.day) AS last_written_day, count(d.file) AS message_files,
               coalesce(max(n.last_seq), 0) AS last_seq,
               coalesce(max(n.new), 0) AS new_n, coalesce(max(n.replaced), 0) AS replaced_m,
               coalesce(max(n.withdrawn), 0) AS withdrawn_c
        FROM written_days d
        LEFT JOIN (SELECT kommune, max(seq) AS last_seq, count(*) FILTER (WHERE status = 'N') AS new,
                          count(*) FILTER (WHERE status = 'M') AS replaced,
                          count(*) FILTER (WHERE status = 'C') AS withdrawn
                   FROM notifications GROUP BY kommune) n USING (kommune)
        GROUP BY d.kommune ORDER BY d.kommune""").pl()


# a key is sent new (N) again only after it was withdrawn (C): a service annulled and then revived (a changed
# override, a corrected source) is reported anew, anything else would be a second copy
REPEATED_SQL = """
        SELECT kommune, min(seq), 'repeated', count(*) || ' N notifications of ' || event_key
               || ' while an earlier one is not withdrawn'
        FROM (SELECT kommune, seq, status, event_key,
                     lag(status) OVER (PARTITION BY kommune, event_key ORDER BY seq) AS previous_status
              FROM {notifications})
        WHERE status = 'N' AND previous_status IS NOT NULL AND previous_status <> 'C'
        GROUP BY kommune, event_key"""

# numbering, chain and repeated N of a batch of municipalities ({kommuner}), the whole ledger's a batch at a time
BATCH_SQL = """
        WITH batch AS (
            SELECT * FROM notifications WHERE kommune IN ({kommuner})
        ), ordered AS (
            SELECT kommune, seq, guid, previous_guid,
                   lag(seq) OVER w AS prev_seq, lag(guid) OVER w AS prev_guid
            FROM batch WINDOW w AS (PARTITION BY kommune ORDER BY seq)
        )
        SELECT kommune, seq, 'numbering' AS problem,
               'expected ' || coalesce(prev_seq + 1, 1) || ', found ' || seq AS detail
        FROM ordered WHERE seq <> coalesce(prev_seq + 1, 1)
        UNION ALL
        SELECT kommune, seq, 'chain', 'previous GUID ' || previous_guid || ' is not ' ||
               coalesce(prev_guid, '00000000-0000-0000-0000-000000000000')
        FROM ordered WHERE previous_guid <> coalesce(prev_guid, '00000000-0000-0000-0000-000000000000')
        UNION ALL
{repeated}"""

# a GUID used twice anywhere in the ledger: the GUIDs' 64-bit hashes counted first (a table of integers, not of
# 7.5 M strings, which outgrew the ledger's memory limit at national scale), then the few candidates compared
GUID_SQL = """
        WITH repeated_hashes AS (SELECT hash(guid) AS h FROM notifications GROUP BY 1 HAVING count(*) > 1)
        SELECT min(kommune) AS kommune, min(seq) AS seq, 'guid' AS problem,
               count(*) || ' notifications have GUID ' || guid AS detail
        FROM notifications WHERE hash(guid) IN (SELECT h FROM repeated_hashes)
        GROUP BY guid HAVING count(*) > 1"""

INTEGRITY_BATCH_NOTIFICATIONS = 1_000_000


def _whole_ledger_problems(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """`integrity_problems` of the whole ledger, a batch of municipalities (about a million notifications) at
    a time: in one pass, its windows over a national ledger outgrew the ledger's memory limit."""
    sizes = con.execute("SELECT kommune, count(*) FROM notifications GROUP BY 1 ORDER BY 1").fetchall()
    queries, batch, filled = [], [], 0
    for i, (kommune, n) in enumerate(sizes):
        batch.append(kommune)
        filled += n
        if filled >= INTEGRITY_BATCH_NOTIFICATIONS or i == len(sizes) - 1:
            members = ", ".join(duck.sql_literal(k) for k in batch)
            queries.append(BATCH_SQL.format(kommuner=members,
                                            repeated=REPEATED_SQL.format(notifications="batch")))
            batch, filled = [], 0
    parts = [con.execute(sql).pl() for sql in [*queries, GUID_SQL]]
    return pl.concat(parts, how="vertical_relaxed").sort("kommune", "seq", maintain_order=True)


def integrity_problems(con: duckdb.DuckDBPyConnection, since: dt.date | None = None) -> pl.DataFrame:
    """Holes or repeats in numbering, broken GUID chains, GUIDs used twice, a key sent new (N) while sent.

    `since`: only the notifications of days from `since` on (a run's), each municipality's joined to the one
    before them, and the keys and GUIDs they use against the whole ledger; the earlier part was checked by
    the runs that wrote it. None (or a `since` no earlier notification precedes) checks the whole ledger, a
    batch of municipalities at a time.
    """
    first = con.execute("SELECT min(day) FROM notifications").fetchone()[0]
    if since is None or first is None or since <= first:
        return _whole_ledger_problems(con)
    return con.execute("""
        WITH firsts AS (
            SELECT kommune, min(seq) AS first_seq FROM notifications
            WHERE CAST($since AS DATE) IS NULL OR day >= CAST($since AS DATE) GROUP BY kommune
        ), scope AS (
            SELECT n.kommune, n.seq, n.guid, n.previous_guid, n.event_key, n.seq >= f.first_seq AS in_run
            FROM notifications n JOIN firsts f ON f.kommune = n.kommune AND n.seq >= f.first_seq - 1
        ), ordered AS (
            SELECT kommune, seq, guid, previous_guid, in_run,
                   lag(seq) OVER w AS prev_seq, lag(guid) OVER w AS prev_guid
            FROM scope WINDOW w AS (PARTITION BY kommune ORDER BY seq)
        )
        SELECT kommune, seq, 'numbering' AS problem,
               'expected ' || coalesce(prev_seq + 1, 1) || ', found ' || seq AS detail
        FROM ordered WHERE in_run AND seq <> coalesce(prev_seq + 1, 1)
        UNION ALL
        SELECT kommune, seq, 'chain', 'previous GUID ' || previous_guid || ' is not ' ||
               coalesce(prev_guid, '00000000-0000-0000-0000-000000000000')
        FROM ordered WHERE in_run AND previous_guid <> coalesce(prev_guid, '00000000-0000-0000-0000-000000000000')
        UNION ALL
        SELECT min(kommune), min(seq), 'guid', count(*) || ' notifications have GUID ' || guid
        FROM notifications SEMI JOIN (SELECT guid FROM scope WHERE in_run) USING (guid)
        GROUP BY guid HAVING count(*) > 1
        UNION ALL
{repeated}
        ORDER BY 1, 2""".format(repeated=REPEATED_SQL.format(notifications=(
        "notifications SEMI JOIN (SELECT kommune, event_key FROM scope WHERE in_run) USING (kommune, event_key)"))),
        {"since": since}).pl()
