"""From the message model to attribute values, checked by the rules before anything is rendered.

Why a module of its own: `serialize` must refuse a bad message with a `MessageInvalid` that names the
notification and the rule in the model's terms (a `date` where a `datetime` belongs, a character XML
cannot hold) rather than a schema error about rendered bytes. Here every value of the model is turned into
the text the format writes (Norwegian local time without offset, codes in decimal) and passed through the
rules (`rules.Rules` with `structure` on), notifications in sequence order.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from transforms.submit.serializers.base import MessageInvalid
from transforms.submit.serializers.model import Contact, Event, Message, Notification
from transforms.submit.serializers.xpr56.rules import EventData, Problem, Rules
from transforms.submit.serializers.xpr56.vocabulary import MESSAGE_TYPE, NOT_XML, OSLO, VERSION


class _Invalid(Exception):
    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule


def _text_value(value: object, name: str, code: bool = False) -> str | None:
    if value is None:
        return None
    if isinstance(value, uuid.UUID) or (code and isinstance(value, int) and not isinstance(value, bool)):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise _Invalid("type", f"{name} is a {type(value).__name__}, expected {'a code' if code else 'a string'}")
    bad = NOT_XML.search(text)
    if bad:
        raise _Invalid("xml-characters", f"{name} contains a character XML cannot hold (U+{ord(bad.group()):04X})")
    return text


def _date_value(value: object, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise _Invalid("type", f"{name} is a {type(value).__name__}, expected a date")
    return value.isoformat()


def _timestamp_value(value: object, name: str) -> str | None:
    """Norwegian local time without offset: aware values are converted, naive ones taken as local."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            value = value.astimezone(OSLO)
        return value.replace(tzinfo=None, microsecond=0).isoformat(timespec="seconds")
    if isinstance(value, dt.date):
        return f"{value.isoformat()}T00:00:00"
    raise _Invalid("type", f"{name} is a {type(value).__name__}, expected a datetime or a date")


def _attrs(*pairs: tuple[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in pairs if v is not None}


def _header_attrs(m: Message) -> dict[str, str]:
    return _attrs(("versjon", VERSION), ("meldingstype", MESSAGE_TYPE),
                  ("leverandor", _text_value(m.vendor, "leverandor")),
                  ("navnEPJ", _text_value(m.epj_name, "navnEPJ")),
                  ("versjonEPJ", _text_value(m.epj_version, "versjonEPJ")),
                  ("versjonUt", _text_value(m.version_out, "versjonUt")))


def _notification_attrs(n: Notification) -> dict[str, str]:
    if isinstance(n.sequence_no, bool) or not isinstance(n.sequence_no, int):
        raise _Invalid("type", f"sequence_no is a {type(n.sequence_no).__name__}, expected an int")
    return _attrs(("statusNotifikasjon", _text_value(n.status, "statusNotifikasjon")),
                  ("notifikasjonTid", _timestamp_value(n.notification_time, "notifikasjonTid")),
                  ("notifikasjonGUID", _text_value(n.guid, "notifikasjonGUID")),
                  ("notifikasjonForrigeGUID", _text_value(n.previous_guid, "notifikasjonForrigeGUID")),
                  ("notifikasjonLopeNr", str(n.sequence_no)),
                  ("notifikasjonRef", _text_value(n.ref_guid, "notifikasjonRef")))


def _event_data(e: Event) -> EventData:
    if not isinstance(e, Event):
        raise _Invalid("one-event", f"a notification holds exactly one Event; found {type(e).__name__}")
    kind = _text_value(e.kind, "kind") or ""
    attrs = _attrs(("tjenesteType", _text_value(e.service_type, "tjenesteType", code=True)),
                   ("hendelseRegTid", _timestamp_value(e.registered_at, "hendelseRegTid")),
                   ("hendelseDato", _date_value(e.event_date, "hendelseDato")),
                   ("tjenesteID", _text_value(e.service_id, "tjenesteID")),
                   ("tjenesteOrgNr", _text_value(e.provider_org, "tjenesteOrgNr")),
                   ("hendelseGUID", _text_value(e.event_guid, "hendelseGUID")),
                   ("midlertidigStoppID", _text_value(e.stop_id, "midlertidigStoppID")))
    p = e.person
    bruker = None if p is None else _attrs(
        ("pasientGUID", _text_value(p.patient_guid, "pasientGUID")),
        ("brukerNr", _text_value(p.user_no, "brukerNr")),
        ("fid", _text_value(p.fid, "fid")),
        ("typeID", _text_value(p.type_id, "typeID", code=True)),
        ("bydel", _text_value(p.district, "bydel")))
    return EventData(kind, attrs, bruker)


def _contact_attrs(c: Contact) -> dict[str, str]:
    return _attrs(("kontPerson", _text_value(c.name, "kontPerson")),
                  ("meldEpost1", _text_value(c.email, "meldEpost1")),
                  ("typeKontaktperson", _text_value(c.type, "typeKontaktperson", code=True)))


def _first(problems: Iterable[Problem]) -> Problem | None:
    return next(iter(problems), None)


def _label(value: object) -> str | None:
    return None if value is None else str(value)


# what a message is rendered from: the attribute values of `Melding`, of each notification with its event,
# of each contact, and of `Kommune`
MessageParts = tuple[dict[str, str], list[tuple[dict[str, str], EventData]], list[dict[str, str]], dict[str, str]]


def checked_parts(message: Message) -> MessageParts:
    """The attribute values of every element, after the rules; raises `MessageInvalid` at the first problem."""
    rules = Rules(structure=True)

    def fail(problem: Problem | _Invalid, n: Notification | None = None) -> MessageInvalid:
        message_text = problem.message if isinstance(problem, Problem) else str(problem)
        if n is None:
            return MessageInvalid(problem.rule, message_text)
        seq = n.sequence_no if isinstance(n.sequence_no, int) else None
        return MessageInvalid(problem.rule, message_text, _label(n.guid), seq)

    try:
        header = _header_attrs(message)
        kommune = _attrs(("kommuneNr", _text_value(message.kommune_nr, "kommuneNr")))
    except _Invalid as exc:
        raise fail(exc) from None
    if problem := _first(rules.header(header)):
        raise fail(problem)

    notifications = list(message.notifications)
    for n in notifications:
        if not isinstance(n, Notification):
            raise MessageInvalid("type", f"notifications hold Notification objects, found {type(n).__name__}")
        if isinstance(n.sequence_no, bool) or not isinstance(n.sequence_no, int):
            raise fail(_Invalid("type", f"sequence_no is a {type(n.sequence_no).__name__}, expected an int"), n)
    parts = []
    for n in sorted(notifications, key=lambda x: x.sequence_no):
        try:
            attrs, event = _notification_attrs(n), _event_data(n.event)
        except _Invalid as exc:
            raise fail(exc, n) from None
        if problem := _first(rules.notification(attrs, [event])):
            raise fail(problem, n)
        parts.append((attrs, event))

    contacts = []
    for c in message.contacts:
        try:
            attrs = _contact_attrs(c)
        except _Invalid as exc:
            raise fail(exc) from None
        if problem := _first(rules.contact(attrs)):
            raise fail(problem)
        contacts.append(attrs)
    if problem := _first([*rules.kommune(kommune), *rules.finish()]):
        raise fail(problem)
    return header, parts, contacts, kommune
