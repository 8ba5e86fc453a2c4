"""Delivery's table: every attempt to deliver a message to the registry, recorded before and after it
is made, in the ledger's database (delivery.md, rule 5). The current state of each message is a view
over it (`transforms.deliver.state.STATE_VIEW_SQL`)."""

from __future__ import annotations

import polars as pl

from transforms.tables.model import Column, Table
from transforms.tables.model import required as _required
from transforms.tables.submit import LEDGER_FILE, UTC

DELIVERIES = Table(
    "deliveries",
    "Every delivery attempt of a message: a 'sending' row before the request, its outcome after it.",
    (
        _required("kommune", pl.Utf8, "reporting municipality"),
        _required("kind", pl.Utf8, "'stream' (a day's message from submissions/) or 'resend' (from outbox/)"),
        Column("day", pl.Date, "the day of the message (stream messages)"),
        _required("file", pl.Utf8, "the message file, relative to the data root"),
        _required("first_seq", pl.Int64, "first notifikasjonLopeNr of the message"),
        _required("last_seq", pl.Int64, "last notifikasjonLopeNr of the message"),
        _required("message_id", pl.Utf8, "MessageId: UUID5 of municipality, first sequence number and SHA-256"),
        _required("sha256", pl.Utf8, "SHA-256 of the message bytes sent"),
        _required("run_id", pl.Utf8, "the delivery run that made the attempt"),
        _required("attempt", pl.Int32, "attempt number of the message within its run, from 1"),
        _required("event", pl.Utf8, "sending (before the request), accepted (200), rejected (400), "
                                    "failed (a transient fault: timeout, dropped connection, 5xx, 429, 401)"),
        _required("recorded_at", UTC, "when the row was recorded"),
        _required("transport", pl.Utf8, "kneik-api or directory"),
        Column("http_status", pl.Int32, "the HTTP status of the answer (null: none was received)"),
        Column("ref_id", pl.Utf8, "the registry's refId"),
        Column("code", pl.Utf8, "validationCode or errorCode of the answer, or the client's fault class"),
        Column("text", pl.Utf8, "validationMessage or errorMessage, or the client's fault; never a secret"),
    ),
    path=LEDGER_FILE,
    asset="kpr_delivery",
    reads=("written_days",),
    sort=("kommune", "first_seq", "recorded_at"),
    storage="ledger",
)

DELIVERY_TABLES = (DELIVERIES,)
