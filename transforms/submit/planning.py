"""Planning a municipality's new days against the ledger: what to send, its numbers and GUIDs, and its persons.

Why a module of its own: this is the submission's bookkeeping, set-based and deterministic (the same
ledger and events give the same plan, numbers and GUIDs, so a rerun writes identical files), apart from
the orchestration of jobs, processes and commits in `writer`. The ledger's state of every sent key comes
from one query (`ACTIVE_SQL`); new events (N), changed content of sent keys (M) and keys that disappeared
(C) follow from joins; numbering continues the municipality's chain; a person keeps one brukerNr for all
years.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

from transforms.submit.events import EVENT_ORDER
from transforms.submit.ledger import NAMESPACE
from transforms.submit.serializers.model import NIL_GUID
from transforms.tables import PLAN

STATUS_RANK = {"M": 1, "C": 2, "N": 3}
FIRST_ALLOCATED_USER_NO = 900_000_001


# The ledger's state of a municipality: per sent event key that is not withdrawn, its last notification's
# content and the GUID of its original (N) notification; `withdrawn_at` is what a withdrawal (C) notification
# gives as registration time (the first day to write, at midnight in the ledger's time zone).
# one municipality's plan: the `PLAN` table's columns but the municipality (a dry run adds it)
PLAN_COLUMNS = tuple(c for c in PLAN.column_names if c != "kommune")

ACTIVE_SQL = """
WITH state AS (
    SELECT event_key,
           arg_max(status, seq) AS last_status,
           arg_max(content_hash, seq) AS last_hash,
           arg_max(guid, seq) FILTER (WHERE status = 'N') AS original_guid,
           arg_max(seq, seq) AS last_seq
    FROM notifications WHERE kommune = $kommune GROUP BY event_key
)
SELECT s.event_key, s.original_guid, s.last_hash, n.event_type, n.reporting_id, n.service_code, n.event_date,
       n.provider_org, n.stop_id, n.person_key, n.content_hash, CAST($first_day::DATE AS TIMESTAMPTZ) AS withdrawn_at
FROM state s JOIN notifications n ON n.kommune = $kommune AND n.seq = s.last_seq
WHERE s.last_status <> 'C'
"""


def plan_notifications(active: pl.DataFrame, current: pl.DataFrame, first: dt.date, last: dt.date) -> pl.DataFrame:
    """What to send (`PLAN_COLUMNS`, unnumbered) given the ledger's state (`ACTIVE_SQL`) and the current events.

    New keys up to `last` are N notifications on their own day, or on `first` when that is later (late
    registrations); sent keys with other content are M, sent keys gone are C, both on `first`.
    """
    c = pl.col
    sent = active.select("event_key", "original_guid", "last_hash")
    first_day = pl.lit(first, pl.Date)
    new = (current.join(sent, on="event_key", how="anti").filter(c("day") <= last)
           .with_columns(status=pl.lit("N"), ref_guid=pl.lit(None, pl.Utf8), day=pl.max_horizontal("day", first_day)))
    changed = (current.join(sent, on="event_key", how="inner").filter(c("content_hash") != c("last_hash"))
               .with_columns(status=pl.lit("M"), ref_guid=c("original_guid"), day=first_day))
    gone = (active.join(current.select("event_key"), on="event_key", how="anti")
            .with_columns(status=pl.lit("C"), ref_guid=c("original_guid"), day=first_day, user_no=pl.lit(None, pl.Utf8),
                          registered_at=c("withdrawn_at").cast(current.schema["registered_at"])))
    return pl.concat([part.select(PLAN_COLUMNS) for part in (new, changed, gone)])


# deterministic_guid over a column: the SHA-1 of UUID5 (namespace bytes, then the name) in DuckDB, its text
# (version and variant bits set, as str(uuid.uuid5(...))) in Polars; the column's order is kept
HASH_SQL = "SELECT sha1(unhex($namespace) || encode(name)) AS h FROM guid_names"
_VARIANT = {f"{n:x}": "89ab"[n % 4] for n in range(16)}


def deterministic_guids(con: duckdb.DuckDBPyConnection, names: pl.Series) -> pl.Series:
    """`ledger.deterministic_guid` of many names at once (each name the '|'-joined parts)."""
    con.register("guid_names", pl.DataFrame({"name": names}).to_arrow())
    try:
        hashes = con.execute(HASH_SQL, {"namespace": NAMESPACE.hex}).pl()
    finally:
        con.unregister("guid_names")
    return hashes.select(_uuid5_text(pl.col("h")).alias(names.name))[names.name]


def _uuid5_text(sha1_hex: pl.Expr) -> pl.Expr:
    """The 8-4-4-4-12 text of a UUID5 from the 40 hex digits of its SHA-1."""
    h = sha1_hex.str
    return pl.concat_str([h.slice(0, 8), pl.lit("-"), h.slice(8, 4), pl.lit("-5"), h.slice(13, 3), pl.lit("-"),
                          h.slice(16, 1).replace_strict(_VARIANT, return_dtype=pl.Utf8), h.slice(17, 3),
                          pl.lit("-"), h.slice(20, 12)])


def number_plan(con: duckdb.DuckDBPyConnection, kommune: str, plan: pl.DataFrame) -> pl.DataFrame:
    """Sequence numbers, GUIDs and the chain, continuing the municipality's ledger."""
    last_seq, last_guid = con.execute(
        "SELECT coalesce(max(seq), 0), coalesce(arg_max(guid, seq), ?) FROM notifications WHERE kommune = ?",
        [NIL_GUID, kommune]).fetchone()
    plan = plan.with_columns(
        pl.col("status").replace_strict(STATUS_RANK, return_dtype=pl.Int8).alias("_status"),
        pl.col("event_type").replace_strict(EVENT_ORDER, return_dtype=pl.Int8).alias("_type"),
    ).sort("day", "_status", "event_date", "_type", "event_key").drop("_status", "_type")
    plan = plan.with_columns(seq=pl.int_range(last_seq + 1, last_seq + 1 + plan.height, dtype=pl.Int64))
    names = pl.concat([
        plan.select(name=pl.concat_str([pl.lit(kommune), "event_key", pl.col("seq").cast(pl.Utf8)], separator="|")),
        plan.select(name=pl.concat_str([pl.lit(kommune), "event_key", "content_hash", "status",
                                        pl.col("seq").cast(pl.Utf8)], separator="|"))])["name"]
    guids = deterministic_guids(con, names)  # both kinds in one query: the notification's, then the event's
    return plan.with_columns(guid=guids.head(plan.height), event_guid=guids.tail(plan.height)).with_columns(
        previous_guid=pl.col("guid").shift(1, fill_value=last_guid)).select(
        *plan.columns, "guid", "previous_guid", "event_guid")


def assign_persons(con: duckdb.DuckDBPyConnection, kommune: str, plan: pl.DataFrame) -> pl.DataFrame:
    """The municipality's persons, known and new (person_key, bruker_nr, pasient_guid): one brukerNr per
    person for all years, never reused.

    A person keeps the source's user number when no other person has it in the
    municipality; otherwise (two EPJs, or merged municipalities, numbered their users
    independently) the person gets the next number of a reserved range.
    """
    known = con.execute("SELECT person_key, bruker_nr, pasient_guid FROM persons WHERE kommune = ?",
                        [kommune]).pl()
    newcomers = (plan.join(known, on="person_key", how="anti")
                 .sort("seq").unique("person_key", keep="first", maintain_order=True))
    if newcomers.height == 0:
        return known
    taken = set(known["bruker_nr"].to_list())
    allocated = con.execute("SELECT count(*) FROM persons WHERE kommune = ? AND TRY_CAST(bruker_nr AS BIGINT) >= ?",
                            [kommune, FIRST_ALLOCATED_USER_NO]).fetchone()[0]
    numbers = []
    for user_no in newcomers["user_no"].to_list():
        number = user_no if user_no and user_no not in taken else None
        while number is None or number in taken:
            number = str(FIRST_ALLOCATED_USER_NO + allocated)
            allocated += 1
        taken.add(number)
        numbers.append(number)
    frame = newcomers.select(pl.lit(kommune).alias("kommune"), "person_key",
                             pl.Series("bruker_nr", numbers, dtype=pl.Utf8))
    names = frame.select(pasient_guid=pl.concat_str([pl.lit("pasient"), "kommune", "person_key"],
                                                     separator="|"))["pasient_guid"]
    frame = frame.with_columns(deterministic_guids(con, names))
    con.register("persons_frame", frame.to_arrow())
    con.execute("INSERT INTO persons SELECT * FROM persons_frame")
    con.unregister("persons_frame")
    return pl.concat([known, frame.drop("kommune")])
