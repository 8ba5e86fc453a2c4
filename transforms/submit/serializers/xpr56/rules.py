"""The rules of the format beyond its schema, over the attribute values of one message in document order.

Why a module of its own: the same rules judge a message twice, before rendering (the model's values,
`attributes.checked_parts`, where they also repeat the schema's per-element requirements so that the
first problem is named in the model's terms) and after (bytes parsed back, `rule_issues`, as
`Xpr56Serializer.validate` reports them). What they add to the schema: the code lists (9151 service types,
9032 person id types, 8471 contact types, 7316 notification statuses are plain `string` types in the
schema), exactly one event per notification, a reference (`notifikasjonRef`) exactly on M/C
notifications, sequence numbers and the chain of previous GUIDs within the message, unique
`hendelseGUID`s, IPLOS contacts of type 16 and 17, one four-digit `kommuneNr`, nine-digit organisation
numbers, check digits of birth and D numbers, and the local-time timestamp form.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

from lxml import etree

from transforms.submit.serializers.base import ValidationIssue
from transforms.submit.serializers.model import EVENT_KINDS, NIL_GUID, STOP_KINDS
from transforms.submit.serializers.xpr56.vocabulary import (
    BIRTH_NUMBER_WEIGHTS,
    CONTACT_TYPE_8471,
    DATE_FORM,
    GUID_FORM,
    KOMMUNENR_FORM,
    LOPENR_FORM,
    MAX_TEXT,
    NAMESPACE,
    ORGNR_FORM,
    PERSON_ID_TYPE_9032,
    REQUIRED_CONTACT_TYPES,
    STATUS_7316,
    TIMESTAMP_FORM,
    TJENESTETYPE_9151,
    XSD_DATE_LIKE,
    local_name,
    qualified,
    sequence_no,
)


class Problem(NamedTuple):
    """One broken rule, and where in a notification it is (for the line `validate` reports)."""

    rule: str
    message: str
    part: str = "notification"  # where in a notification: "notification", "event", "bruker"
    event: int = 0  # which of the notification's event elements (for the line of a problem)


class EventData(NamedTuple):
    """An event element's attribute values and its `Bruker`'s, from the model or from parsed bytes."""

    kind: str
    attrs: dict[str, str]
    bruker: dict[str, str] | None
    line: int | None = None
    bruker_line: int | None = None


def birth_number_ok(number: str) -> bool:
    """Modulus-11 check digits of a fødselsnummer or D-nummer (also of the synthetic test range)."""
    if not re.fullmatch(r"\d{11}", number):
        return False
    digits = [int(c) for c in number]
    for weights, position in BIRTH_NUMBER_WEIGHTS:
        check = 11 - sum(w * d for w, d in zip(weights, digits, strict=False)) % 11
        if check == 11:
            check = 0
        if check != digits[position]:
            return False
    return True


class Rules:
    """The rules beyond the schema, applied in document order over one message.

    With `structure` on (when checking a model before rendering) they also repeat, with clearer
    messages, what the schema requires per element (required and forbidden attributes, GUID and
    value forms), so the first problem found is reported in the model's terms.
    """

    def __init__(self, structure: bool):
        self.structure = structure
        self.statuses: dict[str, str] = {}  # notification GUID -> status, in this message
        self.event_guids: set[str] = set()
        self.last: tuple[int, str] | None = None  # (sequence number, GUID) of the previous notification
        self.contact_types: set[str] = set()
        self.contacts = 0
        self.kommuner = 0

    def header(self, a: dict[str, str]) -> Iterator[Problem]:
        for name in ("leverandor", "navnEPJ", "versjonEPJ", "versjonUt"):
            yield from self._text(a, name, "header-text", required=True)

    def notification(self, a: dict[str, str], events: list[EventData]) -> Iterator[Problem]:
        guid = a.get("notifikasjonGUID")
        status = a.get("statusNotifikasjon")
        lopenr = a.get("notifikasjonLopeNr")
        previous = a.get("notifikasjonForrigeGUID")
        ref = a.get("notifikasjonRef")
        if self.structure:
            for name in ("notifikasjonGUID", "notifikasjonForrigeGUID", "notifikasjonRef"):
                if a.get(name) is not None and not GUID_FORM.fullmatch(a[name]):
                    yield Problem("guid-format", f"{name} {a[name]!r} is not a GUID (8-4-4-4-12 hex digits)")
        if lopenr is not None and not LOPENR_FORM.fullmatch(lopenr):
            yield Problem("lopenr-format", f"notifikasjonLopeNr {lopenr!r} is not a positive integer")
        if status is not None and status not in STATUS_7316:
            extra = " (T KorrigerSuppler is not to be used yet)" if status == "T" else ""
            yield Problem("code-list-7316", f"statusNotifikasjon {status!r} is not N, M or C{extra}")
        yield from self._timestamp(a, "notifikasjonTid")
        # corrections: M and C point at the original (N) notification they replace or annul
        if status in ("M", "C") and not ref:
            yield Problem("ref-required", f"a {STATUS_7316[status]} ({status}) notification needs notifikasjonRef, "
                          "the GUID of the original notification it corrects")
        if status == "N" and ref is not None:
            yield Problem("ref-forbidden", "an Original (N) notification must not carry notifikasjonRef")
        if ref is not None and guid is not None and ref.lower() == guid.lower():
            yield Problem("ref-self", "notifikasjonRef points at the notification itself")
        if ref is not None and self.statuses.get(ref.lower(), "N") != "N":
            yield Problem("ref-target-original", f"notifikasjonRef {ref} points at a {self.statuses[ref.lower()]} "
                          "notification; it must point at the original (N) one")
        # identity, order and chain within the message
        if guid is not None and guid.lower() in self.statuses:
            yield Problem("guid-unique", f"notifikasjonGUID {guid} occurs twice in the message")
        seq = sequence_no(lopenr)
        if seq is not None:
            if self.last is not None and seq <= self.last[0]:
                yield Problem("lopenr-order", f"notifikasjonLopeNr {seq} does not follow {self.last[0]}: "
                              "sequence numbers are unique and increasing")
            if previous is not None:
                nil = previous == NIL_GUID
                if seq == 1 and not nil:
                    yield Problem("forrige-guid", f"the first notification (sequence no 1) has "
                                  f"notifikasjonForrigeGUID {NIL_GUID}, not {previous}")
                elif seq != 1 and nil:
                    yield Problem("forrige-guid", f"notifikasjonForrigeGUID {NIL_GUID} is only for sequence no 1")
                elif self.last is not None and seq == self.last[0] + 1 and previous.lower() != self.last[1].lower():
                    yield Problem("forrige-guid", f"notifikasjonForrigeGUID {previous} is not the GUID of "
                                  f"notification {self.last[0]} ({self.last[1]})")
        if guid is not None:
            self.statuses[guid.lower()] = status or "?"
            if seq is not None:
                self.last = (seq, guid)
        # exactly one event (the schema allows none, or one of each kind in its order); elements that are no
        # event at all are the schema's to report when checking bytes
        known = [e for e in events if e.kind in EVENT_KINDS or self.structure]
        if len(known) != 1:
            found = ", ".join(e.kind for e in known) or "none"
            yield Problem("one-event", f"a notification holds exactly one event ({', '.join(EVENT_KINDS)}); "
                          f"found {found}")
        for index, event in enumerate(events):
            if event.kind in EVENT_KINDS:
                yield from (p._replace(event=index) for p in self._event(event))
            elif self.structure:
                yield Problem("event-kind", f"unknown event {event.kind!r}; one of {', '.join(EVENT_KINDS)}",
                              "event", index)

    def _event(self, event: EventData) -> Iterator[Problem]:
        kind, a = event.kind, event.attrs
        code = a.get("tjenesteType")
        if code is not None and code not in TJENESTETYPE_9151:
            yield Problem("code-list-9151", f"{kind}: tjenesteType {code!r} is not a code of code list 9151 "
                          "(IPLOS tjenestetype)", "event")
        if self.structure:
            for name in ("tjenesteType", "tjenesteID", "hendelseDato", "hendelseRegTid", "hendelseGUID"):
                if a.get(name) is None:
                    yield Problem("required", f"{kind}: {name} is required", "event")
        if a.get("tjenesteID") == "":
            yield Problem("tjenesteID", f"{kind}: tjenesteID is empty", "event")
        org = a.get("tjenesteOrgNr")
        if kind == "TjenesteutforerEndret" and not org and (self.structure or org == ""):
            yield Problem("orgnr-required", "TjenesteutforerEndret requires tjenesteOrgNr, the organisation "
                          "number of the new provider", "event")
        elif org is not None and not ORGNR_FORM.fullmatch(org):
            yield Problem("orgnr-format", f"{kind}: tjenesteOrgNr {org!r} is not a nine-digit organisation number",
                          "event")
        stop = a.get("midlertidigStoppID")
        if kind in STOP_KINDS:
            if stop == "" or (stop is None and self.structure):
                yield Problem("stop-id-required", f"{kind} requires midlertidigStoppID, the id that links "
                              "MidlertidigStoppFra and MidlertidigStoppTil", "event")
        elif stop is not None and self.structure:
            yield Problem("stop-id-forbidden", f"{kind} has no midlertidigStoppID (only the two stop events do)",
                          "event")
        date = a.get("hendelseDato")
        if date is not None and not DATE_FORM.fullmatch(date) and (self.structure or XSD_DATE_LIKE.fullmatch(date)):
            yield Problem("date-format", f"{kind}: hendelseDato {date!r} is not a date YYYY-MM-DD", "event")
        yield from (p._replace(part="event", message=f"{kind}: {p.message}")
                    for p in self._timestamp(a, "hendelseRegTid"))
        event_guid = a.get("hendelseGUID")
        if event_guid is not None:
            if self.structure and not GUID_FORM.fullmatch(event_guid):
                yield Problem("guid-format", f"{kind}: hendelseGUID {event_guid!r} is not a GUID", "event")
            if event_guid.lower() in self.event_guids:
                yield Problem("event-guid-unique", f"{kind}: hendelseGUID {event_guid} occurs twice in the message "
                              "(a correction carries a new one)", "event")
            self.event_guids.add(event_guid.lower())
        if event.bruker is not None:
            yield from (p._replace(part="bruker") for p in self._bruker(event.bruker))
        elif self.structure:
            yield Problem("required", f"{kind}: Bruker is required", "event")

    def _bruker(self, b: dict[str, str]) -> Iterator[Problem]:
        if self.structure:
            for name in ("pasientGUID", "brukerNr", "fid", "typeID"):
                if b.get(name) is None:
                    yield Problem("required", f"Bruker: {name} is required")
            if b.get("pasientGUID") is not None and not GUID_FORM.fullmatch(b["pasientGUID"]):
                yield Problem("guid-format", f"Bruker: pasientGUID {b['pasientGUID']!r} is not a GUID")
            district = b.get("bydel")
            if district is not None and not 1 <= len(district) <= 6:
                yield Problem("bydel-format", f"Bruker: bydel {district!r} is not 1 to 6 characters")
        yield from (p._replace(message=f"Bruker: {p.message}") for p in self._text(b, "brukerNr", "brukerNr"))
        fid, type_id = b.get("fid"), b.get("typeID")
        if fid == "":
            yield Problem("fid", "Bruker: fid is empty")
        if type_id is not None and type_id not in PERSON_ID_TYPE_9032:
            yield Problem("code-list-9032", f"Bruker: typeID {type_id!r} is not a code of code list 9032 "
                          "(type personidentifikasjon)")
        elif type_id in ("1", "2") and fid is not None and not birth_number_ok(fid):
            yield Problem("fid-check-digits", f"Bruker: fid is not a valid {PERSON_ID_TYPE_9032[type_id]} "
                          f"(typeID {type_id}): eleven digits with valid check digits")

    def contact(self, a: dict[str, str]) -> Iterator[Problem]:
        self.contacts += 1
        yield from self._text(a, "kontPerson", "contact-text", required=self.structure)
        yield from self._text(a, "meldEpost1", "contact-text", required=self.structure)
        code = a.get("typeKontaktperson")
        if code is not None:
            self.contact_types.add(code)
            if code not in CONTACT_TYPE_8471:
                yield Problem("code-list-8471", f"Kontaktperson: typeKontaktperson {code!r} is not a code of "
                              "code list 8471")

    def kommune(self, a: dict[str, str]) -> Iterator[Problem]:
        self.kommuner += 1
        if self.kommuner == 2:
            yield Problem("kommune-count", "a message reports for exactly one municipality (one Kommune)")
        nr = a.get("kommuneNr")
        if nr is not None and not KOMMUNENR_FORM.fullmatch(nr):
            yield Problem("kommune-nr", f"Kommune: kommuneNr {nr!r} is not a four-digit municipality number")

    def finish(self) -> Iterator[Problem]:
        if self.contacts and not all(t in self.contact_types for t in REQUIRED_CONTACT_TYPES):
            missing = [t for t in REQUIRED_CONTACT_TYPES if t not in self.contact_types]
            yield Problem("contact-iplos-types", "an IPLOS message has at least one contact of type 16 (IPLOS "
                          "kontaktperson) and one of type 17 (IPLOS innsendingsansvarlig); missing "
                          + ", ".join(missing))
        if self.structure and not self.contacts:
            yield Problem("contact-required", "a message has at least one Kontaktperson")
        if self.structure and not self.kommuner:
            yield Problem("kommune-count", "a message has one Kommune")

    def _text(self, a: dict[str, str], name: str, rule: str, required: bool = False) -> Iterator[Problem]:
        value = a.get(name)
        if value is None:
            if required and self.structure:
                yield Problem(rule, f"{name} is required")
        elif not value.strip():
            yield Problem(rule, f"{name} is empty")
        elif len(value) > MAX_TEXT:
            yield Problem(rule, f"{name} is longer than {MAX_TEXT} characters")

    def _timestamp(self, a: dict[str, str], name: str) -> Iterator[Problem]:
        value = a.get(name)
        if value is not None and not TIMESTAMP_FORM.fullmatch(value) and (self.structure or
                                                                       XSD_DATE_LIKE.fullmatch(value)):
            yield Problem("datetime-format", f"{name} {value!r} is not YYYY-MM-DDTHH:MM:SS (Norwegian local "
                          "time, no offset, no fraction)")


def rule_issues(root: etree._Element) -> list[ValidationIssue]:
    """The rules' problems of a parsed message, each with its line and notification (`validate`'s half
    beside the schema's)."""
    if root.tag != qualified("Melding"):
        return []  # the schema reports the root
    rules = Rules(structure=False)
    issues = [ValidationIssue(root.sourceline, p.message, rule=p.rule) for p in rules.header(dict(root.attrib))]
    for child in root:
        tag = child.tag if isinstance(child.tag, str) else None
        if tag == qualified("Notifikasjon"):
            attrs = dict(child.attrib)
            events = []
            for e in child:
                if not isinstance(e.tag, str):
                    continue
                bruker = next((b for b in e if b.tag == qualified("Bruker")), None)
                kind = local_name(e) if e.tag.startswith(f"{{{NAMESPACE}}}") else e.tag
                events.append(EventData(kind, dict(e.attrib), None if bruker is None else dict(bruker.attrib),
                                        e.sourceline, None if bruker is None else bruker.sourceline))
            guid, seq = attrs.get("notifikasjonGUID"), sequence_no(attrs.get("notifikasjonLopeNr"))
            for p in rules.notification(attrs, events):
                line = child.sourceline
                if p.part != "notification" and p.event < len(events):
                    event = events[p.event]
                    line = event.bruker_line if p.part == "bruker" and event.bruker_line else event.line
                issues.append(ValidationIssue(line, p.message, guid, seq, p.rule))
        elif tag in (qualified("Kontaktperson"), qualified("Kommune")):
            check = rules.contact if tag == qualified("Kontaktperson") else rules.kommune
            issues += [ValidationIssue(child.sourceline, p.message, rule=p.rule) for p in check(dict(child.attrib))]
    issues += [ValidationIssue(root.sourceline, p.message, rule=p.rule) for p in rules.finish()]
    return issues
