"""XPR 56 messages in bulk: a municipality's days rendered by one Polars expression, validated in batches.

Why: `Xpr56Serializer.serialize` builds, renders and re-checks every element in Python (~0.1 ms per
notification), which made a national nine-year backfill take most of an hour. This module makes the same
bytes for a whole frame of notifications at once, without weakening what a message must pass:

- `suspect_rows` is a prefilter *stricter* than the serializer's rules (plain ASCII text, lower-case GUIDs,
  the code lists, check digits, chain and uniqueness within the frame...). A day with any suspect row is
  not rendered here; the caller gives it to `serialize`, which returns the same bytes or raises
  `MessageInvalid` naming the notification and the rule, exactly as before.
- `render_rows` reproduces `render.render`'s layout (attribute lines, alignment, escaping); the message header,
  contacts and `Kommune` come from `serialize` itself (`MessageFrame`), so they pass every rule.
- `BatchValidator` validates many messages per lxml call against a wrapper schema that imports the
  packaged XPR schema: its root holds a sequence of `Melding`, so each message's identity constraints still
  apply to that message alone. The schema checks the parser's events as they stream by, and no tree is
  built (building it cost as much as the validation). When a batch fails, its messages are validated one
  by one with `Xpr56Serializer.validate`, so the failure is the same `MessageInvalid` that `serialize` raises.

`Xpr56Serializer` offers this as its `FrameWriter` capability (`render_days`, `check_rendered`).
"""

from __future__ import annotations

import functools
import io
import threading
from typing import TYPE_CHECKING

import polars as pl
from lxml import etree

from transforms.submit.serializers.base import MessageInvalid
from transforms.submit.serializers.model import EVENT_KINDS, NIL_GUID, STOP_KINDS, Message
from transforms.submit.serializers.xpr56.schema import PARSER_OPTIONS, SCHEMA_FILE, parser, schema_dir
from transforms.submit.serializers.xpr56.vocabulary import (
    BIRTH_NUMBER_WEIGHTS,
    MAX_TEXT,
    PERSON_ID_TYPE_9032,
    TJENESTETYPE_9151,
)

if TYPE_CHECKING:
    from transforms.submit.serializers.xpr56.serializer import Xpr56Serializer

# A frame holds one row per notification with what `Notification`, `Event` and `Person` hold: the columns of
# `transforms.tables.MESSAGE_FRAME`. `provider_org` is written on TjenesteutforerEndret only (as `message_of`,
# the submission writer's model of a day, does).

DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
BATCH_NAMESPACE = "urn:ktt-backfill:xpr56-batch"
_GUID_LOWER = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_PRINTABLE_ASCII = r"^[ -~]*$"  # no control characters, no non-ASCII: no whitespace or XML-character subtleties
_ORGNR_ASCII = r"^[0-9]{9}$"
_ALIGN_NOTIFICATION = " " * len("  <Notifikasjon ")


# --- the prefilter ----------------------------------------------------------------------------------------

def _year_ok(expr: pl.Expr) -> pl.Expr:
    return expr.is_not_null() & expr.dt.year().is_between(1000, 9999)


def _text_ok(expr: pl.Expr, nonempty: bool = True) -> pl.Expr:
    ok = expr.is_not_null() & expr.str.contains(_PRINTABLE_ASCII)
    return ok & (expr.str.len_bytes() > 0) if nonempty else ok


def _birth_number_ok(fid: pl.Expr) -> pl.Expr:
    """Modulus-11 check digits, as `rules.birth_number_ok`, over a column."""
    digits = [fid.str.slice(i, 1).cast(pl.Int32, strict=False) for i in range(11)]

    def check(weights: tuple[int, ...]) -> pl.Expr:
        rest = pl.sum_horizontal([w * d for w, d in zip(weights, digits, strict=False)]) % 11
        return pl.when(rest == 0).then(0).otherwise(11 - rest)

    ok = fid.str.contains(r"^[0-9]{11}$")
    for weights, position in BIRTH_NUMBER_WEIGHTS:
        ok = ok & (check(weights) == digits[position])
    return ok


def _local_time(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Norwegian local time without offset (aware values converted, naive ones taken as local)."""
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        expr = expr.dt.convert_time_zone("Europe/Oslo").dt.replace_time_zone(None)
    return expr


def suspect_rows(frame: pl.DataFrame) -> pl.Series:
    """True for every row the serializer's rules might reject (and some they accept); `frame` sorted by
    day and sequence number.

    Checked over the whole frame (a superset of one message): unique sequence numbers and GUIDs, the
    chain between consecutive numbers of one day, and references that point at corrections.
    """
    c = pl.col
    kind, status, id_type = c("event_type"), c("status"), c("id_type").cast(pl.Utf8)
    stop_kinds = sorted(STOP_KINDS)
    corrections = frame.filter(status.is_in(["M", "C"]))["guid"]
    # check digits once per number, not per notification (a person has many)
    birth_numbers = frame.select(c("fid").unique()).filter(_birth_number_ok(c("fid")))["fid"]
    registered = _local_time(c("registered_at"), frame.schema["registered_at"])
    ok = (
        status.is_in(["N", "M", "C"])
        & c("guid").str.contains(_GUID_LOWER) & c("previous_guid").str.contains(_GUID_LOWER)
        & pl.when(status == "N").then(c("ref_guid").is_null())
            .otherwise(c("ref_guid").str.contains(_GUID_LOWER) & (c("ref_guid") != c("guid"))
                       & ~c("ref_guid").is_in(corrections.implode()))
        & (c("seq") >= 1) & ((c("seq") == 1) == (c("previous_guid") == NIL_GUID))
        & c("seq").is_unique() & c("guid").is_unique() & c("event_guid").is_unique()
        & pl.when((c("day") == c("day").shift(1)) & (c("seq") == c("seq").shift(1) + 1))
            .then(c("previous_guid") == c("guid").shift(1)).otherwise(True)
        & _year_ok(c("day")) & _year_ok(c("event_date")) & _year_ok(registered)
        & kind.is_in(list(EVENT_KINDS))
        & c("service_code").cast(pl.Utf8).is_in(list(TJENESTETYPE_9151))
        & _text_ok(c("reporting_id"))
        & c("event_guid").str.contains(_GUID_LOWER)
        & pl.when(kind == "TjenesteutforerEndret").then(c("provider_org").str.contains(_ORGNR_ASCII))
            .otherwise(True)
        & pl.when(kind.is_in(stop_kinds)).then(_text_ok(c("stop_id"))).otherwise(c("stop_id").is_null())
        & c("pasient_guid").str.contains(_GUID_LOWER)
        & _text_ok(c("bruker_nr")) & (c("bruker_nr").str.len_chars() <= MAX_TEXT)
        & (c("bruker_nr").str.strip_chars(" ").str.len_bytes() > 0)
        & _text_ok(c("fid"))
        & id_type.is_in(list(PERSON_ID_TYPE_9032))
        & pl.when(id_type.is_in(["1", "2"])).then(c("fid").is_in(birth_numbers.implode())).otherwise(True)
    )
    return frame.select(ok.fill_null(False).not_().alias("suspect"))["suspect"]


# --- rendering --------------------------------------------------------------------------------------------

def _esc(expr: pl.Expr) -> pl.Expr:
    """`render._escape` over a column (the prefilter leaves only &, <, > and \" to escape)."""
    return (expr.str.replace_all("&", "&amp;", literal=True).str.replace_all("<", "&lt;", literal=True)
            .str.replace_all(">", "&gt;", literal=True).str.replace_all('"', "&quot;", literal=True))


# Free text: what the prefilter lets through may hold &, <, > or ". Every other rendered value of a row it
# admits is a code, a number, a date or a GUID (a row it does not admit is never written from this rendering).
_FREE_TEXT = ("reporting_id", "stop_id", "bruker_nr", "fid")
_SPECIAL = '[&<>"]'


def _optional(lead: str, expr: pl.Expr) -> pl.Expr:
    """`lead` + value + closing quote, or null (left out of the row) when the value is null."""
    return pl.concat_str([pl.lit(lead), expr, pl.lit('"')])


def render_rows(frame: pl.DataFrame) -> pl.Series:
    """One `Notifikasjon` element per row, in `render`'s layout (every line ends with a newline).

    One concatenation of literals and values: a null value (an optional attribute left out) drops its own
    piece; a required value is never null in a row the prefilter admits.
    """
    c = pl.col
    special = frame.select(c(name).str.contains(_SPECIAL).any() for name in _FREE_TEXT).row(0)
    text = {name: _esc(c(name)) if needs else c(name) for name, needs in zip(_FREE_TEXT, special, strict=True)}
    kind = c("event_type")
    event_align = kind.replace_strict({k: " " * len(f"    <{k} ") for k in EVENT_KINDS}, default="",
                                      return_dtype=pl.Utf8)
    registered = _local_time(c("registered_at"), frame.schema["registered_at"])
    org = pl.when(kind == "TjenesteutforerEndret").then(c("provider_org"))
    line = "\n" + _ALIGN_NOTIFICATION
    expr = pl.concat_str([
        pl.lit('  <Notifikasjon statusNotifikasjon="'), c("status"),
        pl.lit('" notifikasjonTid="'), c("day").dt.strftime("%Y-%m-%dT00:00:00"),
        pl.lit(f'"{line}notifikasjonGUID="'), c("guid"),
        pl.lit(f'"{line}notifikasjonForrigeGUID="'), c("previous_guid"),
        pl.lit('" notifikasjonLopeNr="'), c("seq").cast(pl.Utf8), pl.lit('"'),
        _optional(f'{line}notifikasjonRef="', c("ref_guid")),
        pl.lit(">\n    <"), kind,
        pl.lit(' tjenesteType="'), c("service_code").cast(pl.Utf8),
        pl.lit('" hendelseRegTid="'), registered.dt.strftime("%Y-%m-%dT%H:%M:%S"),
        pl.lit('" hendelseDato="'), c("event_date").dt.strftime("%Y-%m-%d"),
        pl.lit('"\n'), event_align, pl.lit('tjenesteID="'), text["reporting_id"], pl.lit('"'),
        _optional(' tjenesteOrgNr="', org),
        pl.lit(' hendelseGUID="'), c("event_guid"), pl.lit('"'),
        _optional(' midlertidigStoppID="', text["stop_id"]),
        pl.lit('>\n      <Bruker pasientGUID="'), c("pasient_guid"),
        pl.lit('" brukerNr="'), text["bruker_nr"],
        pl.lit('" fid="'), text["fid"],
        pl.lit('" typeID="'), c("id_type").cast(pl.Utf8),
        pl.lit('"/>\n    </'), kind, pl.lit(">\n  </Notifikasjon>\n"),
    ], ignore_nulls=True)
    return frame.select(expr.alias("xml"))["xml"]


class MessageFrame:
    """The bytes around a municipality's notifications: declaration, `Melding`, contacts and `Kommune`.

    Made by `serialize` of the message without notifications, so the header passes every rule and the
    schema; `error` holds its `MessageInvalid` when it does not (then every day takes the slow path).
    """

    def __init__(self, serializer: Xpr56Serializer, empty: Message):
        self.head = self.tail = ""
        self.error: MessageInvalid | None = None
        try:
            text = serializer.serialize(empty).decode("utf-8")
        except MessageInvalid as exc:
            self.error = exc
            return
        cut = text.index("\n  <") + 1  # the first child element: attribute values never hold a raw newline
        self.head, self.tail = text[:cut], text[cut:]

    def message(self, body: str) -> bytes:
        return (self.head + body + self.tail).encode("utf-8")


# --- batched schema validation ----------------------------------------------------------------------------

_WRAPPER = f"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:npr="http://www.npr.no/xmlstds/56_0_0_ipl"
           targetNamespace="{BATCH_NAMESPACE}" elementFormDefault="qualified">
  <xs:import namespace="http://www.npr.no/xmlstds/56_0_0_ipl" schemaLocation="{SCHEMA_FILE}"/>
  <xs:element name="Batch">
    <xs:complexType><xs:sequence>
      <xs:element ref="npr:Melding" minOccurs="1" maxOccurs="unbounded"/>
    </xs:sequence></xs:complexType>
  </xs:element>
</xs:schema>
"""


@functools.cache
def _batch_schema() -> etree.XMLSchema:
    base = schema_dir().as_posix().rstrip("/") + "/"
    return etree.XMLSchema(etree.parse(io.BytesIO(_WRAPPER.encode("utf-8")), parser(), base_url=base))


_BATCH_LOCK = threading.Lock()  # one validation at a time with the compiled schema (lxml promises no more)


class _NoTree:
    """A parser target that keeps nothing: the schema validates the parser's events, no tree is built."""

    def close(self) -> None:
        return None


def _stream_valid(document: bytes) -> bool:
    """Whether `document` is well-formed and valid against the batch schema (validated while it is parsed).

    Anything the parser or the schema logs, warnings included, counts as not valid: the caller then lets
    `Xpr56Serializer.validate` judge each message.
    """
    streaming = etree.XMLParser(**PARSER_OPTIONS, schema=_batch_schema(), target=_NoTree())
    with _BATCH_LOCK:
        try:
            etree.fromstring(document, streaming)
        except etree.XMLSyntaxError:
            return False
        return len(streaming.error_log) == 0


_BATCH_OPEN = b'<Batch xmlns="' + BATCH_NAMESPACE.encode() + b'">'


class BatchValidator:
    """Validates messages against the packaged schema, many per lxml call."""

    def __init__(self, serializer: Xpr56Serializer):
        self.serializer = serializer

    def check(self, messages: list[bytes]) -> list[MessageInvalid | None]:
        """Per message: None when it is valid, else the `MessageInvalid` that `serialize` would raise."""
        if not messages:
            return []
        if all(m.startswith(DECLARATION) for m in messages):
            skip = len(DECLARATION)
            parts = [_BATCH_OPEN, *(memoryview(m)[skip:] for m in messages), b"</Batch>"]
            if _stream_valid(b"".join(parts)):
                return [None] * len(messages)
        # one by one: the message's own issues, as `serialize` reports them
        results: list[MessageInvalid | None] = []
        for data in messages:
            issues = self.serializer.validate(data)
            results.append(MessageInvalid.from_issue(issues[0], tuple(issues)) if issues else None)
        return results


def day_messages(frame: pl.DataFrame, wrapper: MessageFrame) -> pl.DataFrame:
    """Per day (in day order): its notifications' count and sequence range, whether any of them is
    suspect, and `message`, the bytes of its message (what `wrapper.message` makes of the day's rendered
    notifications, made here for all days at once). A suspect day's `message` is not to be used."""
    ordered = frame.sort("day", "seq")
    rows = ordered.select("day", "seq").with_columns(xml=render_rows(ordered), suspect=suspect_rows(ordered))
    message = pl.concat_str([pl.lit(wrapper.head), pl.col("xml").str.join(""), pl.lit(wrapper.tail)])
    return (rows.group_by("day", maintain_order=True)
            .agg(message=message.cast(pl.Binary), n=pl.len(), first_seq=pl.col("seq").min(),
                 last_seq=pl.col("seq").max(), suspect=pl.col("suspect").any()))
