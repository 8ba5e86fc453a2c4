"""Submission's tables: the events a message reports, the ledger (the system of record), the manifest
of written files, and the frames handed between planning and writing (submissions.md)."""

from __future__ import annotations

import polars as pl

from transforms.tables.model import Column, Table
from transforms.tables.model import required as _required

UTC = pl.Datetime("us", "UTC")
LEDGER_FILE = "ledger/ledger.duckdb"



_KOMMUNE = _required("kommune", pl.Utf8, "reporting municipality")
_EVENT_KEY = _required("event_key", pl.Utf8, "what the event is about, independent of its content: municipality, "
                                             "reporting id, event type, stop id or change date")
_EVENT_TYPE = _required("event_type", pl.Utf8, "TjenesteStart, TjenesteSlutt, TjenesteutforerEndret, "
                                               "MidlertidigStoppFra or MidlertidigStoppTil")
_REPORTING_ID = _required("reporting_id", pl.Utf8, "tjenesteID of the episode")
_SERVICE_CODE = _required("service_code", pl.Utf8, "tjenesteType, code list 9151")
_EVENT_DATE = _required("event_date", pl.Date, "hendelseDato")
_REGISTERED_AT = _required("registered_at", UTC, "hendelseRegTid: when the fact was registered")
_PROVIDER = Column("provider_org", pl.Utf8, "tjenesteOrgNr (provider changes)")
_STOP_ID = Column("stop_id", pl.Utf8, "the stop's id (stop events)")
_PERSON = _required("person_key", pl.Utf8, "pseudonym of the person")
_CONTENT_HASH = _required("content_hash", pl.Utf8, "hash of what a message says about the event: a sent key "
                                                   "with another hash is corrected (M)")
_DAY = _required("day", pl.Date, "the day whose message carries it")
_STATUS = _required("status", pl.Utf8, "N new, M KorrigerErstatt (replaces ref_guid), C KorrigerAnnuller "
                                       "(withdraws ref_guid)")
_REF_GUID = Column("ref_guid", pl.Utf8, "notifikasjonRef: the original notification an M or C refers to")

EVENTS = Table(
    "events",
    "Every event a daily message reports, derived from the episodes, pseudonymous.",
    (
        _KOMMUNE, _EVENT_KEY, _EVENT_TYPE,
        Column("episode_id", pl.Utf8, "the episode it comes from"),
        _REPORTING_ID, _PERSON,
        Column("user_no", pl.Utf8, "the source's user number"),
        _SERVICE_CODE, _EVENT_DATE,
        Column("day", pl.Date, "the day it is reported on: its date, or 2017-01-01 (the initial load) before it"),
        _REGISTERED_AT, _PROVIDER, _STOP_ID, _CONTENT_HASH,
    ),
    path="timeline/events.parquet",
    asset="service_events",
    reads=("episodes", "stops", "provider_changes"),
    sort=("kommune", "day", "event_key"),
)

NOTIFICATIONS = Table(
    "notifications",
    "Every notification written, numbered 1..N per municipality and chained by GUID: the system of record.",
    (
        _KOMMUNE,
        _required("seq", pl.Int64, "notifikasjonLopeNr, 1..N per municipality without holes"),
        _required("guid", pl.Utf8, "notifikasjonGUID (derived from municipality, event key and number)"),
        _required("previous_guid", pl.Utf8, "notifikasjonForrigeGUID: the municipality's previous notification"),
        _DAY, _STATUS, _REF_GUID, _EVENT_KEY, _CONTENT_HASH,
        _required("event_guid", pl.Utf8, "hendelseGUID: one version of the event"),
        _EVENT_TYPE, _REPORTING_ID, _SERVICE_CODE, _EVENT_DATE, _REGISTERED_AT, _PROVIDER, _STOP_ID, _PERSON,
    ),
    path=LEDGER_FILE,
    asset="daily_submissions",
    reads=("events", "identity_vault"),
    sort=("kommune", "seq"),
    storage="ledger",
    primary_key=("kommune", "seq"),
)

WRITTEN_DAYS = Table(
    "written_days",
    "Every day written per municipality, with its file and checksum (a day without notifications has no file).",
    (
        _KOMMUNE, _DAY,
        _required("n_notifications", pl.Int64, "notifications in the day's message"),
        Column("first_seq", pl.Int64, "first sequence number of the message"),
        Column("last_seq", pl.Int64, "last sequence number of the message"),
        Column("file", pl.Utf8, "the message file, relative to the data root"),
        Column("sha256", pl.Utf8, "SHA-256 of the file's bytes"),
    ),
    path=LEDGER_FILE,
    asset="daily_submissions",
    sort=("kommune", "day"),
    storage="ledger",
    primary_key=("kommune", "day"),
)

PERSONS = Table(
    "persons",
    "Every person reported per municipality: one brukerNr for all years, never reused, and the pasientGUID.",
    (
        _KOMMUNE, _PERSON,
        _required("bruker_nr", pl.Utf8, "brukerNr reported: the source's number, or one of a reserved range "
                                        "where two persons' numbers collide"),
        _required("pasient_guid", pl.Utf8, "pasientGUID, stable per person and municipality"),
    ),
    path=LEDGER_FILE,
    asset="daily_submissions",
    sort=("kommune", "person_key"),
    storage="ledger",
    primary_key=("kommune", "person_key"),
    unique=(("kommune", "bruker_nr"),),
)

MANIFEST = Table(
    "manifest",
    "Every message file written, per municipality and day, with its sequence range and SHA-256.",
    (
        _KOMMUNE, _DAY,
        _required("n_notifications", pl.Int64, "notifications in the message"),
        Column("first_seq", pl.Int64, "first sequence number"),
        Column("last_seq", pl.Int64, "last sequence number"),
        Column("file", pl.Utf8, "the message file, relative to the data root"),
        Column("sha256", pl.Utf8, "SHA-256 of the file's bytes"),
    ),
    path="submissions/manifest.parquet",
    asset="daily_submissions",
    reads=("written_days",),
    sort=("kommune", "day"),
)

PLAN = Table(
    "plan",
    "What a run would send, before numbering: new events (N), changed content of sent keys (M), keys gone (C). "
    "Written by a dry run (`ktt backfill --dry-run`, the backfill_plan asset); the real run plans the same frame.",
    (
        Column("kommune", pl.Utf8, "reporting municipality"),
        _STATUS, _REF_GUID, _DAY, _EVENT_KEY, _CONTENT_HASH, _EVENT_TYPE, _REPORTING_ID, _SERVICE_CODE,
        _EVENT_DATE, _REGISTERED_AT, _PROVIDER, _STOP_ID, _PERSON,
        Column("user_no", pl.Utf8, "the source's user number (null for a withdrawal)"),
    ),
    path="dry_run/plan.parquet",
    asset="backfill_plan",
    reads=("events", "notifications"),
    sort=("kommune", "day", "status", "event_key"),
)

MESSAGE_FRAME = Table(
    "message_frame",
    "The numbered notifications of one municipality with what their Bruker says: what a message is made of.",
    (
        _DAY,
        _required("seq", pl.Int64, "notifikasjonLopeNr"),
        _required("guid", pl.Utf8, "notifikasjonGUID"),
        _required("previous_guid", pl.Utf8, "notifikasjonForrigeGUID"),
        _STATUS, _REF_GUID, _EVENT_TYPE, _SERVICE_CODE, _REPORTING_ID, _EVENT_DATE, _REGISTERED_AT, _PROVIDER,
        _STOP_ID,
        _required("event_guid", pl.Utf8, "hendelseGUID"),
        _required("pasient_guid", pl.Utf8, "pasientGUID"),
        _required("bruker_nr", pl.Utf8, "brukerNr"),
        _required("fid", pl.Utf8, "the person's identifier (from the vault; never written to Parquet)"),
        _required("id_type", pl.Int32, "typeID, code list 9032"),
    ),
    path="",
    asset=None,
    sort=("day", "seq"),
    storage="frame",
)

LEDGER_TABLES = (NOTIFICATIONS, WRITTEN_DAYS, PERSONS)
