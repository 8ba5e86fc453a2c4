"""XPR 56.0.0 "IPLOS i KPR" (HIS 1135:2021): the event message `Melding` of Helsedirektoratet.

Layout of a message (the schema's order): the notifications in sequence order, one
`Kontaktperson` per contact, one `Kommune`. Every `Notifikasjon` holds exactly one event element.

Bytes are deterministic: UTF-8 with an XML declaration, a fixed attribute order and the line
layout of the examples in the specification (two-space indentation, the attributes of `Melding`,
`Notifikasjon` and the event elements broken over fixed lines aligned under the first attribute),
dates `YYYY-MM-DD`, timestamps `YYYY-MM-DDTHH:MM:SS` in Norwegian local time without offset.

`serialize` checks the message against the schema's and the requirement document's rules before it
returns and raises `MessageInvalid` naming the first failing notification and the rule; the rendered
bytes are then validated against the packaged copy of the official schema as a last guard, so bytes
that fail the schema are never returned. `validate` checks bytes against the schema and the same
rules.

What the schema itself does not check and the rules here add: the code lists (9151 service types,
9032 person id types, 8471 contact types, 7316 notification statuses are plain `string` types in
the schema, their codes are only annotations), exactly one event per notification (the schema
allows none or several), a reference (`notifikasjonRef`) exactly on M/C notifications, sequence
numbers and the chain of previous GUIDs within the message, unique `hendelseGUID`s, IPLOS contacts
of type 16 and 17, one four-digit `kommuneNr`, nine-digit organisation numbers, check digits of
birth and D numbers, and the local-time timestamp form.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

from lxml import etree

from transforms.submit.serializers.base import MessageInvalid, ValidationIssue
from transforms.submit.serializers.model import (
    EVENT_KINDS,
    NIL_GUID,
    STOP_KINDS,
    Contact,
    Event,
    Message,
    Notification,
)

NAMESPACE = "http://www.npr.no/xmlstds/56_0_0_ipl"
VERSION = "56.0.0"
MESSAGE_TYPE = "K"  # code list 7371: message for continuous updates
SCHEMA_FILE = "XPR(ipl).xsd"
SCHEMA_FILES = ("XPR(ipl).xsd", "XPR(ipl)_CodingSchemes.xsd", "NPR.xsd")
OSLO = ZoneInfo("Europe/Oslo")

# Code list 9151 IPLOS tjenestetype, all 25 codes of the schema (XPR(ipl)_CodingSchemes.xsd), in its
# order. The requirement document asks for 18, 19, 20, 21 and 29 "in the first round" and for a
# solution that is easy to extend; the schema allows all of them. 12 and 13 (IPLOS layout 3.6) are
# not codes of this list: they are reported as 29.
TJENESTETYPE_9151: dict[str, str] = {
    "1": "Praktisk bistand - daglige gjøremål",
    "2": "Praktisk bistand - opplæring - daglige gjøremål",
    "3": "Praktisk bistand - brukerstyrt - personlig assistanse",
    "4": "Dagaktivitetstilbud",
    "5": "Matombringing",
    "15": "Helsetjenester i hjemmet",
    "7": "Avlastning utenfor institusjon",
    "9": "Støttekontakt",
    "11": "Omsorgsstønad",
    "29": "Bolig som kommunen disponerer for helse- og omsorgsformål",
    "18": "Tidsbegrenset opphold - utredning/behandling",
    "19": "Tidsbegrenset opphold - habilitering/rehabilitering",
    "20": "Tidsbegrenset opphold - annet",
    "8": "Avlastning i institusjon",
    "17": "Dagopphold i institusjon",
    "22": "Nattopphold i institusjon",
    "21": "Langtidsopphold i institusjon",
    "25": "Kommunal øyeblikkelig hjelp - døgnopphold",
    "23": "Skadeavvergende tiltak i nødssituasjoner",
    "14": "Planlagte tiltak",
    "24": "Helsehjelp med tvang",
    "6": "Trygghetsalarm",
    "26": "Lokaliseringsteknologi (GPS)",
    "27": "Elektronisk medisineringsstøtte",
    "28": "Digitalt tilsyn",
}

# Code list 9032 Type personidentifikasjon. Only 1, 2 and 10 give the person a registry id; the others
# pass the schema and are reported back as a shortcoming.
PERSON_ID_TYPE_9032: dict[str, str] = {
    "1": "Norsk fødselsnummer",
    "2": "D-nummer",
    "3": "H-nummer",
    "4": "Passnummer",
    "5": "Svensk personnummer",
    "6": "Dansk personnummer",
    "7": "Sosial security number",
    "8": "Forsikringspolise nummer",
    "9": "Annet",
    "10": "DUF-nummer",
    "12": "Felles hjelpenummer (FH-nummer)",
}

# Code list 8471 Kontaktperson type.
CONTACT_TYPE_8471: dict[str, str] = {
    "1": "Teknisk produksjon",
    "2": "Somatisk spesialisthelsetjeneste",
    "3": "Psykisk helsevern voksne",
    "4": "Barne og ungdomspsykiatri",
    "5": "Tverrfaglig spesialisert rusbehandling",
    "6": "Personskadestatistikk",
    "7": "Ventelistestatistikk",
    "8": "Ident-meldingen",
    "9": "RESH",
    "10": "Radiologi",
    "11": "Stråleterapi",
    "12": "Pakkeforløp kreft",
    "13": "Vedtak etter psykisk helsevernloven",
    "14": "Organisasjonsoppsett i EPJ",
    "15": "EPJ-leverandør, meldingsvalidering",
    "16": "IPLOS kontaktperson",
    "17": "IPLOS innsendingsansvarlig",
    "18": "Helsestasjons- og skolehelsetjeneste",
    "19": "Kostnad per pasient (KPP)",
}
# "For IPLOS: every municipality has at least one 16 IPLOS contact and one 17 responsible for submission."
REQUIRED_CONTACT_TYPES = ("16", "17")

# Code list 7316 Status notifikasjon: T (KorrigerSuppler) is in the list but "not to be used yet".
STATUS_7316: dict[str, str] = {"N": "Original", "M": "KorrigerErstatt", "C": "KorrigerAnnuller"}

MAX_TEXT = 100  # the document's "string max 100 characters" on names, versions, brukerNr

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                   r"|\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# what xs:date / xs:dateTime accept (the schema reports anything else itself)
_XSD_DATE_LIKE = re.compile(r"-?\d{4,}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
_LOPENR = re.compile(r"[1-9][0-9]*")
_ORGNR = re.compile(r"\d{9}")
_KOMMUNENR = re.compile(r"\d{4}")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

# Attribute order and line breaks, as in the specification's examples: one tuple per line.
_EVENT_LAYOUT = (("tjenesteType", "hendelseRegTid", "hendelseDato"),
                 ("tjenesteID", "tjenesteOrgNr", "hendelseGUID", "midlertidigStoppID"))
_LAYOUT: dict[str, tuple[tuple[str, ...], ...]] = {
    "Melding": (("xmlns", "versjon", "meldingstype"), ("leverandor", "navnEPJ", "versjonEPJ", "versjonUt")),
    "Notifikasjon": (("statusNotifikasjon", "notifikasjonTid"), ("notifikasjonGUID",),
                     ("notifikasjonForrigeGUID", "notifikasjonLopeNr"), ("notifikasjonRef",)),
    **{kind: _EVENT_LAYOUT for kind in EVENT_KINDS},
    "Bruker": (("pasientGUID", "brukerNr", "fid", "typeID", "bydel"),),
    "Kontaktperson": (("kontPerson", "meldEpost1", "typeKontaktperson"),),
    "Kommune": (("kommuneNr",),),
}
_INDENT = "  "


# --- the schema -------------------------------------------------------------------------------------

def schema_dir() -> Path:
    """The packaged copy of the official schema (XPR(ipl).xsd with its include and import)."""
    res = resources.files("transforms.submit.serializers") / "schemas" / "xpr56"
    if isinstance(res, Path):
        return res
    return _extracted_schema_dir()


@functools.cache
def _extracted_schema_dir() -> Path:
    """For an installation that is not a directory (a zip): the schema files in a temporary directory,
    so that the schema's relative include and import resolve."""
    target = Path(tempfile.mkdtemp(prefix="ktt-xpr56-"))
    res = resources.files("transforms.submit.serializers") / "schemas" / "xpr56"
    for name in SCHEMA_FILES:
        with (res / name).open("rb") as src, (target / name).open("wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


@functools.cache
def load_schema(directory: Path | None = None) -> etree.XMLSchema:
    """The compiled schema from `directory` (default: the packaged copy)."""
    path = Path(directory) if directory is not None else schema_dir()
    return etree.XMLSchema(etree.parse(str(path / SCHEMA_FILE), _parser()))


_SCHEMA_LOCK = threading.Lock()  # a compiled schema keeps its error log on the object


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def parse(data: bytes) -> etree._Element:
    """The root element of serialized bytes (raises `etree.XMLSyntaxError` when not well-formed)."""
    return etree.fromstring(data, _parser())


def schema_issues(data: bytes | etree._Element, schema: etree.XMLSchema | None = None) -> list[ValidationIssue]:
    """Schema errors only (rule "xsd"; "xml" when not well-formed), with the notification they fall in."""
    if isinstance(data, bytes | bytearray):
        try:
            root = parse(bytes(data))
        except etree.XMLSyntaxError as exc:
            return [ValidationIssue(exc.lineno, f"not well-formed XML: {exc.msg}", rule="xml")]
    else:
        root = data
    schema = schema if schema is not None else load_schema()
    with _SCHEMA_LOCK:
        if schema.validate(root):
            return []
        entries = [(e.line, e.path, e.message) for e in schema.error_log
                   if e.level != etree.ErrorLevels.WARNING and not _follow_up(e.message)]
    issues = []
    tree = root.getroottree()
    for line, path, text in entries:
        guid, seq = None, None
        try:
            found = tree.xpath(path) if path else []
        except etree.XPathError:
            found = []
        if found and isinstance(found[0], etree._Element):
            guid, seq = _notification_of(found[0])
        issues.append(ValidationIssue(line or None, text.replace("{" + NAMESPACE + "}", ""), guid, seq, "xsd"))
    return issues


def _follow_up(text: str) -> bool:
    """libxml2's note after an invalid value in a unique key: the value's own error says it all."""
    return "No precomputed value available" in text


def _notification_of(element: etree._Element) -> tuple[str | None, int | None]:
    for node in (element, *element.iterancestors()):
        if node.tag == _q("Notifikasjon"):
            return node.get("notifikasjonGUID"), _int_or_none(node.get("notifikasjonLopeNr"))
    return None, None


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and _LOPENR.fullmatch(value) else None


def _q(local: str) -> str:
    return f"{{{NAMESPACE}}}{local}"


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


# --- the rules (on attribute values, shared by serialize and validate) ----------------------------------

class _Problem(NamedTuple):
    rule: str
    message: str
    part: str = "notification"  # where in a notification: "notification", "event", "bruker"
    event: int = 0  # which of the notification's event elements (for the line of a problem)


class _EventData(NamedTuple):
    kind: str
    attrs: dict[str, str]
    bruker: dict[str, str] | None
    line: int | None = None
    bruker_line: int | None = None


def _birth_number_ok(number: str) -> bool:
    """Modulus-11 check digits of a fødselsnummer or D-nummer (also of the synthetic test range)."""
    if not re.fullmatch(r"\d{11}", number):
        return False
    digits = [int(c) for c in number]
    for weights, position in (((3, 7, 6, 1, 8, 9, 4, 5, 2), 9), ((5, 4, 3, 2, 7, 6, 5, 4, 3, 2), 10)):
        check = 11 - sum(w * d for w, d in zip(weights, digits, strict=False)) % 11
        if check == 11:
            check = 0
        if check != digits[position]:
            return False
    return True


class _Rules:
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

    def header(self, a: dict[str, str]) -> Iterator[_Problem]:
        for name in ("leverandor", "navnEPJ", "versjonEPJ", "versjonUt"):
            yield from self._text(a, name, "header-text", required=True)

    def notification(self, a: dict[str, str], events: list[_EventData]) -> Iterator[_Problem]:
        guid = a.get("notifikasjonGUID")
        status = a.get("statusNotifikasjon")
        lopenr = a.get("notifikasjonLopeNr")
        previous = a.get("notifikasjonForrigeGUID")
        ref = a.get("notifikasjonRef")
        if self.structure:
            for name in ("notifikasjonGUID", "notifikasjonForrigeGUID", "notifikasjonRef"):
                if a.get(name) is not None and not _GUID.fullmatch(a[name]):
                    yield _Problem("guid-format", f"{name} {a[name]!r} is not a GUID (8-4-4-4-12 hex digits)")
        if lopenr is not None and not _LOPENR.fullmatch(lopenr):
            yield _Problem("lopenr-format", f"notifikasjonLopeNr {lopenr!r} is not a positive integer")
        if status is not None and status not in STATUS_7316:
            extra = " (T KorrigerSuppler is not to be used yet)" if status == "T" else ""
            yield _Problem("code-list-7316", f"statusNotifikasjon {status!r} is not N, M or C{extra}")
        yield from self._timestamp(a, "notifikasjonTid")
        # corrections: M and C point at the original (N) notification they replace or annul
        if status in ("M", "C") and not ref:
            yield _Problem("ref-required", f"a {STATUS_7316[status]} ({status}) notification needs notifikasjonRef, "
                           "the GUID of the original notification it corrects")
        if status == "N" and ref is not None:
            yield _Problem("ref-forbidden", "an Original (N) notification must not carry notifikasjonRef")
        if ref is not None and guid is not None and ref.lower() == guid.lower():
            yield _Problem("ref-self", "notifikasjonRef points at the notification itself")
        if ref is not None and self.statuses.get(ref.lower(), "N") != "N":
            yield _Problem("ref-target-original", f"notifikasjonRef {ref} points at a {self.statuses[ref.lower()]} "
                           "notification; it must point at the original (N) one")
        # identity, order and chain within the message
        if guid is not None and guid.lower() in self.statuses:
            yield _Problem("guid-unique", f"notifikasjonGUID {guid} occurs twice in the message")
        seq = _int_or_none(lopenr)
        if seq is not None:
            if self.last is not None and seq <= self.last[0]:
                yield _Problem("lopenr-order", f"notifikasjonLopeNr {seq} does not follow {self.last[0]}: "
                               "sequence numbers are unique and increasing")
            if previous is not None:
                nil = previous == NIL_GUID
                if seq == 1 and not nil:
                    yield _Problem("forrige-guid", f"the first notification (sequence no 1) has "
                                   f"notifikasjonForrigeGUID {NIL_GUID}, not {previous}")
                elif seq != 1 and nil:
                    yield _Problem("forrige-guid", f"notifikasjonForrigeGUID {NIL_GUID} is only for sequence no 1")
                elif self.last is not None and seq == self.last[0] + 1 and previous.lower() != self.last[1].lower():
                    yield _Problem("forrige-guid", f"notifikasjonForrigeGUID {previous} is not the GUID of "
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
            yield _Problem("one-event", f"a notification holds exactly one event ({', '.join(EVENT_KINDS)}); "
                           f"found {found}")
        for index, event in enumerate(events):
            if event.kind in EVENT_KINDS:
                yield from (p._replace(event=index) for p in self._event(event))
            elif self.structure:
                yield _Problem("event-kind", f"unknown event {event.kind!r}; one of {', '.join(EVENT_KINDS)}",
                               "event", index)

    def _event(self, event: _EventData) -> Iterator[_Problem]:
        kind, a = event.kind, event.attrs
        code = a.get("tjenesteType")
        if code is not None and code not in TJENESTETYPE_9151:
            yield _Problem("code-list-9151", f"{kind}: tjenesteType {code!r} is not a code of code list 9151 "
                           "(IPLOS tjenestetype)", "event")
        if self.structure:
            for name in ("tjenesteType", "tjenesteID", "hendelseDato", "hendelseRegTid", "hendelseGUID"):
                if a.get(name) is None:
                    yield _Problem("required", f"{kind}: {name} is required", "event")
        if a.get("tjenesteID") == "":
            yield _Problem("tjenesteID", f"{kind}: tjenesteID is empty", "event")
        org = a.get("tjenesteOrgNr")
        if kind == "TjenesteutforerEndret" and not org and (self.structure or org == ""):
            yield _Problem("orgnr-required", "TjenesteutforerEndret requires tjenesteOrgNr, the organisation "
                           "number of the new provider", "event")
        elif org is not None and not _ORGNR.fullmatch(org):
            yield _Problem("orgnr-format", f"{kind}: tjenesteOrgNr {org!r} is not a nine-digit organisation number",
                           "event")
        stop = a.get("midlertidigStoppID")
        if kind in STOP_KINDS:
            if stop == "" or (stop is None and self.structure):
                yield _Problem("stop-id-required", f"{kind} requires midlertidigStoppID, the id that links "
                               "MidlertidigStoppFra and MidlertidigStoppTil", "event")
        elif stop is not None and self.structure:
            yield _Problem("stop-id-forbidden", f"{kind} has no midlertidigStoppID (only the two stop events do)",
                           "event")
        date = a.get("hendelseDato")
        if date is not None and not _DATE.fullmatch(date) and (self.structure or _XSD_DATE_LIKE.fullmatch(date)):
            yield _Problem("date-format", f"{kind}: hendelseDato {date!r} is not a date YYYY-MM-DD", "event")
        yield from (p._replace(part="event", message=f"{kind}: {p.message}")
                    for p in self._timestamp(a, "hendelseRegTid"))
        event_guid = a.get("hendelseGUID")
        if event_guid is not None:
            if self.structure and not _GUID.fullmatch(event_guid):
                yield _Problem("guid-format", f"{kind}: hendelseGUID {event_guid!r} is not a GUID", "event")
            if event_guid.lower() in self.event_guids:
                yield _Problem("event-guid-unique", f"{kind}: hendelseGUID {event_guid} occurs twice in the message "
                               "(a correction carries a new one)", "event")
            self.event_guids.add(event_guid.lower())
        if event.bruker is not None:
            yield from (p._replace(part="bruker") for p in self._bruker(event.bruker))
        elif self.structure:
            yield _Problem("required", f"{kind}: Bruker is required", "event")

    def _bruker(self, b: dict[str, str]) -> Iterator[_Problem]:
        if self.structure:
            for name in ("pasientGUID", "brukerNr", "fid", "typeID"):
                if b.get(name) is None:
                    yield _Problem("required", f"Bruker: {name} is required")
            if b.get("pasientGUID") is not None and not _GUID.fullmatch(b["pasientGUID"]):
                yield _Problem("guid-format", f"Bruker: pasientGUID {b['pasientGUID']!r} is not a GUID")
            district = b.get("bydel")
            if district is not None and not 1 <= len(district) <= 6:
                yield _Problem("bydel-format", f"Bruker: bydel {district!r} is not 1 to 6 characters")
        yield from (p._replace(message=f"Bruker: {p.message}") for p in self._text(b, "brukerNr", "brukerNr"))
        fid, type_id = b.get("fid"), b.get("typeID")
        if fid == "":
            yield _Problem("fid", "Bruker: fid is empty")
        if type_id is not None and type_id not in PERSON_ID_TYPE_9032:
            yield _Problem("code-list-9032", f"Bruker: typeID {type_id!r} is not a code of code list 9032 "
                           "(type personidentifikasjon)")
        elif type_id in ("1", "2") and fid is not None and not _birth_number_ok(fid):
            yield _Problem("fid-check-digits", f"Bruker: fid is not a valid {PERSON_ID_TYPE_9032[type_id]} "
                           f"(typeID {type_id}): eleven digits with valid check digits")

    def contact(self, a: dict[str, str]) -> Iterator[_Problem]:
        self.contacts += 1
        yield from self._text(a, "kontPerson", "contact-text", required=self.structure)
        yield from self._text(a, "meldEpost1", "contact-text", required=self.structure)
        code = a.get("typeKontaktperson")
        if code is not None:
            self.contact_types.add(code)
            if code not in CONTACT_TYPE_8471:
                yield _Problem("code-list-8471", f"Kontaktperson: typeKontaktperson {code!r} is not a code of "
                               "code list 8471")

    def kommune(self, a: dict[str, str]) -> Iterator[_Problem]:
        self.kommuner += 1
        if self.kommuner == 2:
            yield _Problem("kommune-count", "a message reports for exactly one municipality (one Kommune)")
        nr = a.get("kommuneNr")
        if nr is not None and not _KOMMUNENR.fullmatch(nr):
            yield _Problem("kommune-nr", f"Kommune: kommuneNr {nr!r} is not a four-digit municipality number")

    def finish(self) -> Iterator[_Problem]:
        if self.contacts and not all(t in self.contact_types for t in REQUIRED_CONTACT_TYPES):
            missing = [t for t in REQUIRED_CONTACT_TYPES if t not in self.contact_types]
            yield _Problem("contact-iplos-types", "an IPLOS message has at least one contact of type 16 (IPLOS "
                           "kontaktperson) and one of type 17 (IPLOS innsendingsansvarlig); missing "
                           + ", ".join(missing))
        if self.structure and not self.contacts:
            yield _Problem("contact-required", "a message has at least one Kontaktperson")
        if self.structure and not self.kommuner:
            yield _Problem("kommune-count", "a message has one Kommune")

    def _text(self, a: dict[str, str], name: str, rule: str, required: bool = False) -> Iterator[_Problem]:
        value = a.get(name)
        if value is None:
            if required and self.structure:
                yield _Problem(rule, f"{name} is required")
        elif not value.strip():
            yield _Problem(rule, f"{name} is empty")
        elif len(value) > MAX_TEXT:
            yield _Problem(rule, f"{name} is longer than {MAX_TEXT} characters")

    def _timestamp(self, a: dict[str, str], name: str) -> Iterator[_Problem]:
        value = a.get(name)
        if value is not None and not _TIMESTAMP.fullmatch(value) and (self.structure or
                                                                       _XSD_DATE_LIKE.fullmatch(value)):
            yield _Problem("datetime-format", f"{name} {value!r} is not YYYY-MM-DDTHH:MM:SS (Norwegian local "
                           "time, no offset, no fraction)")


# --- from the model to attribute values ---------------------------------------------------------------

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
    bad = _NOT_XML.search(text)
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


def _event_data(e: Event) -> _EventData:
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
    return _EventData(kind, attrs, bruker)


def _contact_attrs(c: Contact) -> dict[str, str]:
    return _attrs(("kontPerson", _text_value(c.name, "kontPerson")),
                  ("meldEpost1", _text_value(c.email, "meldEpost1")),
                  ("typeKontaktperson", _text_value(c.type, "typeKontaktperson", code=True)))


def _first(problems: Iterable[_Problem]) -> _Problem | None:
    return next(iter(problems), None)


def _label(value: object) -> str | None:
    return None if value is None else str(value)


def _checked_parts(message: Message) -> tuple[dict[str, str], list[tuple[dict[str, str], _EventData]],
                                                list[dict[str, str]], dict[str, str]]:
    """The attribute values of every element, after the rules; raises `MessageInvalid` at the first problem."""
    rules = _Rules(structure=True)

    def fail(problem: _Problem | _Invalid, n: Notification | None = None) -> MessageInvalid:
        message_text = problem.message if isinstance(problem, _Problem) else str(problem)
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


# --- rendering ----------------------------------------------------------------------------------------

def _build(header: dict[str, str], parts: Iterable[tuple[dict[str, str], _EventData]],
           contacts: Iterable[dict[str, str]], kommune: dict[str, str]) -> etree._Element:
    root = etree.Element(_q("Melding"), nsmap={None: NAMESPACE})
    _set(root, header)
    for attrs, event in parts:
        notification = etree.SubElement(root, _q("Notifikasjon"))
        _set(notification, attrs)
        element = etree.SubElement(notification, _q(event.kind))
        _set(element, event.attrs)
        if event.bruker is not None:
            _set(etree.SubElement(element, _q("Bruker")), event.bruker)
    for attrs in contacts:
        _set(etree.SubElement(root, _q("Kontaktperson")), attrs)
    _set(etree.SubElement(root, _q("Kommune")), kommune)
    return root


def _set(element: etree._Element, attrs: dict[str, str]) -> None:
    """Attributes in the layout's order (lxml keeps insertion order)."""
    order = [name for line in _LAYOUT.get(_local(element), ()) for name in line]
    for name in sorted(attrs, key=lambda k: order.index(k) if k in order else len(order)):
        element.set(name, attrs[name])


def _escape(value: str) -> str:
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
            .replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;"))


def render(root: etree._Element) -> bytes:
    """The bytes of a tree in the examples' layout (attributes on fixed lines, aligned)."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>']
    _render(root, 0, lines, is_root=True)
    return ("\n".join(lines) + "\n").encode("utf-8")


def _render(element: etree._Element, depth: int, lines: list[str], is_root: bool = False) -> None:
    name = _local(element)
    values = dict(element.attrib)
    if is_root:
        values = {"xmlns": NAMESPACE, **values}
    layout = _LAYOUT.get(name, ())
    placed = {n for line in layout for n in line}
    groups = [[n for n in line if n in values] for line in layout]
    groups = [g for g in groups if g] or [[]]
    groups[-1].extend(n for n in values if n not in placed)
    indent = _INDENT * depth
    head = f"{indent}<{name}"
    align = " " * (len(head) + 1)
    tag_lines = []
    for i, group in enumerate(groups):
        attrs = " ".join(f'{n}="{_escape(values[n])}"' for n in group)
        tag_lines.append(f"{head} {attrs}".rstrip() if i == 0 else f"{align}{attrs}")
    children = [c for c in element if isinstance(c.tag, str)]
    if children:
        tag_lines[-1] += ">"
        lines.extend(tag_lines)
        for child in children:
            _render(child, depth + 1, lines)
        lines.append(f"{indent}</{name}>")
    else:
        tag_lines[-1] += "/>"
        lines.extend(tag_lines)


# --- the serializer -----------------------------------------------------------------------------------

class Xpr56Serializer:
    """`Melding` of XPR 56.0.0 "IPLOS i KPR", namespace http://www.npr.no/xmlstds/56_0_0_ipl."""

    name = "xpr56"
    file_suffix = ".xml"
    namespace = NAMESPACE
    version = VERSION

    def serialize(self, message: Message) -> bytes:
        header, parts, contacts, kommune = _checked_parts(message)
        data = render(_build(header, parts, contacts, kommune))
        issues = self.validate(data)
        if issues:  # a gap in the rules above: still never hand out invalid bytes
            raise MessageInvalid.from_issue(issues[0], tuple(issues))
        return data

    def validate(self, data: bytes) -> list[ValidationIssue]:
        """Schema errors and rule violations of serialized bytes, in document order."""
        try:
            root = parse(data)
        except etree.XMLSyntaxError as exc:
            return [ValidationIssue(exc.lineno, f"not well-formed XML: {exc.msg}", rule="xml")]
        issues = schema_issues(root) + _rule_issues(root)
        return sorted(issues, key=lambda i: i.line if i.line is not None else 0)


def _rule_issues(root: etree._Element) -> list[ValidationIssue]:
    if root.tag != _q("Melding"):
        return []  # the schema reports the root
    rules = _Rules(structure=False)
    issues = [ValidationIssue(root.sourceline, p.message, rule=p.rule) for p in rules.header(dict(root.attrib))]
    for child in root:
        tag = child.tag if isinstance(child.tag, str) else None
        if tag == _q("Notifikasjon"):
            attrs = dict(child.attrib)
            events = []
            for e in child:
                if not isinstance(e.tag, str):
                    continue
                bruker = next((b for b in e if b.tag == _q("Bruker")), None)
                events.append(_EventData(_local(e) if e.tag.startswith(f"{{{NAMESPACE}}}") else e.tag, dict(e.attrib),
                                         None if bruker is None else dict(bruker.attrib), e.sourceline,
                                         None if bruker is None else bruker.sourceline))
            guid, seq = attrs.get("notifikasjonGUID"), _int_or_none(attrs.get("notifikasjonLopeNr"))
            for p in rules.notification(attrs, events):
                line = child.sourceline
                if p.part != "notification" and p.event < len(events):
                    event = events[p.event]
                    line = event.bruker_line if p.part == "bruker" and event.bruker_line else event.line
                issues.append(ValidationIssue(line, p.message, guid, seq, p.rule))
        elif tag in (_q("Kontaktperson"), _q("Kommune")):
            check = rules.contact if tag == _q("Kontaktperson") else rules.kommune
            issues += [ValidationIssue(child.sourceline, p.message, rule=p.rule) for p in check(dict(child.attrib))]
    issues += [ValidationIssue(root.sourceline, p.message, rule=p.rule) for p in rules.finish()]
    return issues
