"""The XPR 56.0.0 "IPLOS i KPR" serializer: packaged schema, corpus, byte stability, errors, round trip."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import EXAMPLE_MESSAGES, OFFICIAL
from transforms.submit.serializers import (
    EVENT_KINDS,
    NIL_GUID,
    SERIALIZERS,
    Contact,
    Event,
    Message,
    MessageInvalid,
    MessageSerializer,
    Notification,
    Person,
    Xpr56Serializer,
    get_serializer,
)
from transforms.submit.serializers.xpr56 import (
    CONTACT_TYPE_8471,
    NAMESPACE,
    PERSON_ID_TYPE_9032,
    SCHEMA_FILES,
    TJENESTETYPE_9151,
    load_schema,
    schema_dir,
    schema_issues,
)

UTC = dt.UTC

# Synthetic identifiers (birth month + 80, valid check digits).
FID_A = "14894710005"
FID_B = "07834110096"
ORG_1 = "974760673"
ORG_2 = "974760681"

SER = Xpr56Serializer()


def guid(n: int, prefix: str = "6f1c2a10-0000-5000-8000") -> str:
    return f"{prefix}-{n:012x}"


def eguid(n: int) -> str:
    return guid(n, "6f1c2a10-0000-5000-9000")


PERSON_A = Person(guid(0xF1, "6f1c2a10-0000-5000-a000"), "1001", FID_A, 1)
PERSON_B = Person(guid(0xF2, "6f1c2a10-0000-5000-a000"), "c-5041", FID_B, 1, district="030101")
CONTACTS = (Contact("Kari Nordmann", "kari@example.org", 16), Contact("Ola Nordmann", "ola@example.org", 17))


def event(kind: str, n: int, person: Person = PERSON_A, **kw) -> Event:
    values = dict(kind=kind, service_type="21", service_id="A-00001", event_date=dt.date(2025, 3, 1),
                  registered_at=dt.datetime(2025, 3, 1, 9, 30, tzinfo=UTC), event_guid=eguid(n), person=person)
    if kind == "TjenesteutforerEndret":
        values["provider_org"] = ORG_2
    if kind in ("MidlertidigStoppFra", "MidlertidigStoppTil"):
        values["stop_id"] = "S-17"
    values.update(kw)
    return Event(**values)


def chain(*items: tuple[str, Event, int | None], start: int = 1) -> tuple[Notification, ...]:
    """Notifications numbered from `start`, chained; items are (status, event, ref sequence no or None)."""
    out = []
    previous = NIL_GUID if start == 1 else guid(start - 1)
    for i, (status, ev, ref) in enumerate(items):
        seq = start + i
        out.append(Notification(guid(seq), previous, seq, status, dt.datetime(2026, 1, 1), ev,
                                None if ref is None else guid(ref)))
        previous = guid(seq)
    return tuple(out)


def message(notifications, contacts=CONTACTS, kommune_nr: str = "3301") -> Message:
    return Message(kommune_nr, "Leverandør AS", "Omsorg A", "9.1", "ktt-backfill 0.1.0", contacts, notifications)


def kind_status_message(kind: str, status: str) -> Message:
    """The original (N) of one event kind, and for M/C its correction (new hendelseGUID) as the next one."""
    original = event(kind, 1)
    items = [("N", original, None)]
    if status == "M":
        items.append(("M", dataclasses.replace(original, event_date=dt.date(2025, 3, 2), event_guid=eguid(2),
                                               registered_at=dt.datetime(2025, 12, 31, 8, 5, tzinfo=UTC)), 1))
    elif status == "C":
        items.append(("C", dataclasses.replace(original, event_guid=eguid(2),
                                               registered_at=dt.datetime(2025, 12, 31, 8, 5, tzinfo=UTC)), 1))
    return message(chain(*items))


def full_message() -> Message:
    """Every event kind, with N, M and C; two persons, one with a district."""
    start = event("TjenesteStart", 1, provider_org=ORG_1, event_date=dt.date(2015, 1, 10),
                  registered_at=dt.date(2018, 1, 14))
    stop_from = event("MidlertidigStoppFra", 2, event_date=dt.date(2024, 5, 1),
                      registered_at=dt.datetime(2024, 5, 2, 6, 0, tzinfo=UTC))
    stop_to = event("MidlertidigStoppTil", 3, event_date=dt.date(2024, 5, 20),
                    registered_at=dt.datetime(2024, 5, 20, 22, 30, tzinfo=UTC))
    change = event("TjenesteutforerEndret", 4, event_date=dt.date(2024, 11, 1),
                   registered_at=dt.datetime(2024, 11, 1, 12, 0))
    end = event("TjenesteSlutt", 5, event_date=dt.date(2025, 2, 20),
                registered_at=dt.datetime(2025, 2, 20, 10, 0, 0, 123456, tzinfo=UTC))
    other = event("TjenesteStart", 6, person=PERSON_B, service_type=4, service_id="B-00041",
                  event_date=dt.date(2023, 9, 1), registered_at=dt.datetime(2023, 9, 1, 9, 0))
    return message(chain(
        ("N", start, None),
        ("N", stop_from, None),
        ("N", stop_to, None),
        ("N", change, None),
        ("N", end, None),
        ("N", other, None),
        ("M", dataclasses.replace(end, event_date=dt.date(2025, 2, 22), event_guid=eguid(7),
                                  registered_at=dt.datetime(2025, 12, 31, 8, 5, tzinfo=UTC)), 5),
        ("C", dataclasses.replace(other, event_guid=eguid(8),
                                  registered_at=dt.datetime(2025, 12, 31, 8, 0, tzinfo=UTC)), 6),
        ("M", dataclasses.replace(change, provider_org=ORG_1, event_guid=eguid(9)), 4),
        ("C", dataclasses.replace(stop_to, event_guid=eguid(10)), 3),
        ("M", dataclasses.replace(stop_from, event_date=dt.date(2024, 4, 30), event_guid=eguid(11)), 2),
        ("M", dataclasses.replace(start, service_type="18", event_guid=eguid(12)), 1),
    ))


def strip_comments(data: bytes) -> bytes:
    return re.sub(rb"<!--.*?-->\n", b"", data, flags=re.S)


def packaged_valid(data: bytes) -> bool:
    return not schema_issues(data, load_schema())


def official_schema():
    return load_schema(OFFICIAL)


def mutate(data: bytes, old: str, new: str, count: int = 1) -> bytes:
    text = data.decode("utf-8")
    assert old in text, old
    return text.replace(old, new, count).encode("utf-8")


# --- the packaged schema ---------------------------------------------------------------------------

def test_packaged_schema_lives_in_the_package():
    directory = schema_dir()
    assert directory.is_relative_to(Path(__file__).resolve().parents[1] / "transforms")
    assert sorted(p.name for p in directory.glob("*.xsd")) == sorted(SCHEMA_FILES)
    assert isinstance(load_schema(), etree.XMLSchema)


def test_packaged_schema_is_byte_identical_to_the_official():
    assert sorted(p.name for p in OFFICIAL.glob("*.xsd")) == sorted(SCHEMA_FILES)
    for name in SCHEMA_FILES:
        assert (schema_dir() / name).read_bytes() == (OFFICIAL / name).read_bytes(), name


def _appinfo_codes(oid: str) -> list[str]:
    doc = etree.parse(str(schema_dir() / "XPR(ipl)_CodingSchemes.xsd"))
    ns = {"xs": "http://www.w3.org/2001/XMLSchema"}
    for appinfo in doc.iterfind(".//xs:appinfo", ns):
        if appinfo.find(f"xs:codingScheme[@OID='{oid}']", ns) is not None:
            return [c.get("value") for c in appinfo.iterfind("xs:code", ns)]
    raise AssertionError(oid)


@pytest.mark.parametrize(("oid", "codes"), [("9151", TJENESTETYPE_9151), ("9032", PERSON_ID_TYPE_9032),
                                            ("8471", CONTACT_TYPE_8471)])
def test_code_lists_are_the_schemas(oid, codes):
    assert list(codes) == _appinfo_codes(oid)
    if oid == "9151":
        assert len(codes) == 25 and "12" not in codes and "13" not in codes


# --- (a) the specification's examples ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["2017-01-01-initial-load.xml", "2026-01-01-corrections.xml"])
def test_examples_validate_with_the_packaged_schema(name):
    data = (EXAMPLE_MESSAGES / name).read_bytes()
    assert schema_issues(data) == []
    assert SER.validate(data) == []


def example_initial_load() -> Message:
    person = Person("6f1c2a10-0000-5000-8000-0000000000f1", "1001", FID_B, 1)
    start = Event("TjenesteStart", "15", "A-00001", dt.date(2015, 1, 10), dt.date(2018, 1, 14),
                  "6f1c2a10-0000-5000-8000-0000000000a1", person, provider_org=ORG_1)
    stop = Event("MidlertidigStoppFra", "15", "A-00001", dt.date(2016, 12, 20), dt.date(2018, 1, 14),
                 "6f1c2a10-0000-5000-8000-0000000000a2", person, stop_id="S-17")
    day = dt.datetime(2017, 1, 1)
    return Message("3301", "Leverandør AS", "Omsorg A", "9.1", "ktt-backfill 0.1.0", CONTACTS, (
        Notification(guid(1), NIL_GUID, 1, "N", day, start),
        Notification(guid(2), guid(1), 2, "N", day, stop)))


def example_corrections() -> Message:
    p9 = Person("6f1c2a10-0000-5000-8000-0000000000f9", "c-5009", "22913810019", 1)
    pa = Person("6f1c2a10-0000-5000-8000-0000000000fa", "c-5041", "02865010098", 1)
    day = dt.datetime(2026, 1, 1)
    # hendelseRegTid given in UTC: written as Norwegian local time (UTC+1 in winter)
    end = Event("TjenesteSlutt", "21", "A-00009", dt.date(2022, 2, 20), dt.datetime(2025, 12, 31, 8, 5, tzinfo=UTC),
                "6f1c2a10-0000-5000-8000-0000000000b8", p9)
    withdrawn = Event("TjenesteStart", 9, "B-00041", dt.date(2023, 9, 1), dt.datetime(2025, 12, 31, 9, 0),
                      "6f1c2a10-0000-5000-8000-0000000000b9", pa)
    late = Event("TjenesteStart", "4", "B-00077", dt.date(2025, 6, 2), dt.datetime(2025, 12, 31, 9, 10),
                 "6f1c2a10-0000-5000-8000-0000000000ba", p9, provider_org=ORG_1)
    return Message("3301", "Leverandør AS", "Omsorg B", "4.2", "ktt-backfill 0.1.0", CONTACTS, (
        Notification(guid(0x90), guid(0x89), 90, "N", day, late),
        Notification(guid(0x89), guid(0x88), 89, "C", day, withdrawn, ref_guid=guid(0x60)),
        Notification(guid(0x88), guid(0x87), 88, "M", day, end, ref_guid=guid(0x51)),
    ))


@pytest.mark.parametrize(("name", "build"), [("2017-01-01-initial-load.xml", example_initial_load),
                                             ("2026-01-01-corrections.xml", example_corrections)])
def test_serializer_reproduces_the_examples_byte_for_byte(name, build):
    assert SER.serialize(build()) == strip_comments((EXAMPLE_MESSAGES / name).read_bytes())


# --- (b) packaged and official schema agree on a corpus ----------------------------------------------

def _valid_corpus() -> list[tuple[str, bytes]]:
    corpus = [(f"{kind}-{status}", SER.serialize(kind_status_message(kind, status)))
              for kind in EVENT_KINDS for status in ("N", "M", "C")]
    corpus.append(("full", SER.serialize(full_message())))
    corpus.append(("no-notifications", SER.serialize(message(()))))
    examples = sorted(EXAMPLE_MESSAGES.glob("*.xml"))
    assert len(examples) == 2, EXAMPLE_MESSAGES
    for path in examples:
        corpus.append((f"example-{path.name}", path.read_bytes()))
    return corpus


def _base() -> bytes:
    return SER.serialize(full_message())


# (name, mutation of the full message, valid for the schema?, rule of serializer.validate if it flags it)
MUTATIONS = [
    ("wrong-namespace", lambda d: mutate(d, NAMESPACE, "http://www.npr.no/xmlstds/55_0_0_ipl"), False, "xsd"),
    ("no-namespace", lambda d: mutate(d, f' xmlns="{NAMESPACE}"', ""), False, "xsd"),
    ("missing-tjenesteID", lambda d: mutate(d, ' tjenesteID="A-00001"', ""), False, "xsd"),
    ("missing-notifikasjonLopeNr", lambda d: mutate(d, ' notifikasjonLopeNr="3"', ""), False, "xsd"),
    ("bad-service-code", lambda d: mutate(d, 'tjenesteType="21"', 'tjenesteType="99"'), True, "code-list-9151"),
    ("layout-3.6-code-12", lambda d: mutate(d, 'tjenesteType="21"', 'tjenesteType="12"'), True, "code-list-9151"),
    ("bad-typeID", lambda d: mutate(d, 'typeID="1"', 'typeID="11"'), True, "code-list-9032"),
    ("status-T", lambda d: mutate(d, 'statusNotifikasjon="M"', 'statusNotifikasjon="T"'), True, "code-list-7316"),
    ("bad-date", lambda d: mutate(d, 'hendelseDato="2025-02-20"', 'hendelseDato="2025-02-30"'), False, "xsd"),
    ("norwegian-date", lambda d: mutate(d, 'hendelseDato="2025-02-20"', 'hendelseDato="20.02.2025"'), False,
     "xsd"),
    ("bad-timestamp", lambda d: mutate(d, 'notifikasjonTid="2026-01-01T00:00:00"',
                                       'notifikasjonTid="2026-01-01 00:00"'), False, "xsd"),
    ("timestamp-with-offset", lambda d: mutate(d, 'notifikasjonTid="2026-01-01T00:00:00"',
                                               'notifikasjonTid="2026-01-01T00:00:00+01:00"'), True,
     "datetime-format"),
    ("unknown-element", lambda d: mutate(d, "</Notifikasjon>", '  <Merknad tekst="x"/>\n  </Notifikasjon>'), False,
     "xsd"),
    ("unknown-attribute", lambda d: mutate(d, 'brukerNr="1001"', 'brukerNr="1001" alder="77"'), False, "xsd"),
    ("prohibited-kjonn", lambda d: mutate(d, 'brukerNr="1001"', 'brukerNr="1001" kjonn="2"'), False, "xsd"),
    ("prohibited-uttakDato", lambda d: mutate(d, 'meldingstype="K"', 'meldingstype="K" uttakDato="2026-01-01"'),
     False, "xsd"),
    ("wrong-versjon", lambda d: mutate(d, 'versjon="56.0.0"', 'versjon="55.0.0"'), False, "xsd"),
    ("meldingstype-B", lambda d: mutate(d, 'meldingstype="K"', 'meldingstype="B"'), False, "xsd"),
    ("bad-guid", lambda d: mutate(d, f'notifikasjonGUID="{guid(2)}"', 'notifikasjonGUID="not-a-guid"'), False,
     "xsd"),
    ("duplicate-notification-guid", lambda d: mutate(d, f'notifikasjonGUID="{guid(3)}"',
                                                     f'notifikasjonGUID="{guid(2)}"'), False, "xsd"),
    ("provider-change-without-orgnr", lambda d: mutate(d, f' tjenesteOrgNr="{ORG_2}"', ""), False, "xsd"),
    ("stop-without-stop-id", lambda d: mutate(d, ' midlertidigStoppID="S-17"', ""), False, "xsd"),
    ("stop-id-on-start", lambda d: mutate(d, f'tjenesteOrgNr="{ORG_1}" hendelseGUID="{eguid(1)}"',
                                          f'tjenesteOrgNr="{ORG_1}" hendelseGUID="{eguid(1)}" midlertidigStoppID="S"'),
     False, "xsd"),
    ("bydel-too-long", lambda d: mutate(d, 'bydel="030101"', 'bydel="0301011"'), False, "xsd"),
    ("missing-bruker", lambda d: re.sub(rb"\n\s*<Bruker [^>]*/>", b"", d, count=1), False, "xsd"),
    ("wrong-order-kommune-first", lambda d: re.sub(rb"((?:\s*<Kontaktperson [^>]*/>)+)(\s*<Kommune [^>]*/>)",
                                                   rb"\2\1", d), False, "xsd"),
    ("missing-kommune", lambda d: re.sub(rb"\n\s*<Kommune [^>]*/>", b"", d), False, "xsd"),
    ("missing-kontaktperson", lambda d: re.sub(rb"\n\s*<Kontaktperson [^>]*/>", b"", d), False, "xsd"),
    ("two-kommune", lambda d: mutate(d, '<Kommune kommuneNr="3301"/>',
                                     '<Kommune kommuneNr="3301"/>\n  <Kommune kommuneNr="3302"/>'), True,
     "kommune-count"),
    ("two-events-in-schema-order", lambda d: re.sub(
        rb"(</TjenesteStart>)", b'\\1\n    <TjenesteSlutt tjenesteType="21" hendelseRegTid="2025-01-01T00:00:00" '
        + b'hendelseDato="2025-01-01" tjenesteID="A-00001" hendelseGUID="' + eguid(99).encode() + b'">'
        + b'<Bruker pasientGUID="' + PERSON_A.patient_guid.encode() + b'" brukerNr="1001" fid="' + FID_A.encode()
        + b'" typeID="1"/></TjenesteSlutt>', d, count=1), True, "one-event"),
    ("two-events-wrong-order", lambda d: re.sub(
        rb"(<TjenesteStart )", b'<TjenesteSlutt tjenesteType="21" hendelseRegTid="2025-01-01T00:00:00" '
        + b'hendelseDato="2025-01-01" tjenesteID="A-00001" hendelseGUID="' + eguid(99).encode() + b'">'
        + b'<Bruker pasientGUID="' + PERSON_A.patient_guid.encode() + b'" brukerNr="1001" fid="' + FID_A.encode()
        + b'" typeID="1"/></TjenesteSlutt>\\1', d, count=1), False, "xsd"),
    ("empty-notification", lambda d: re.sub(rb"(<Notifikasjon [^>]*>).*?(</Notifikasjon>)", rb"\1\2", d, count=1,
                                            flags=re.S), True, "one-event"),
    ("not-well-formed", lambda d: d.replace(b"</Melding>", b"</Meld>"), False, "xml"),
]


def test_corpus_is_large_enough():
    assert len(_valid_corpus()) + len(MUTATIONS) >= 15
    assert len(MUTATIONS) >= 15


@pytest.mark.parametrize(("name", "data"), _valid_corpus())
def test_valid_corpus_packaged_and_official_schema_agree(name, data):
    official = official_schema()
    assert packaged_valid(data), schema_issues(data)
    assert not schema_issues(data, official)
    assert SER.validate(data) == []


@pytest.mark.parametrize(("name", "change", "schema_valid", "rule"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mutated_corpus_packaged_and_official_schema_agree(name, change, schema_valid, rule):
    data = change(_base())
    assert data != _base()
    official = official_schema()
    assert packaged_valid(data) is schema_valid
    assert (not schema_issues(data, official)) is schema_valid
    # the serializer's validate rejects every mutation, naming the schema or its own rule
    issues = SER.validate(data)
    assert issues, name
    assert rule in {i.rule for i in issues}, issues


def test_validate_names_the_notification_and_line():
    data = _base()
    bad = mutate(data, 'hendelseDato="2025-02-20"', 'hendelseDato="2025-02-30"')
    issues = SER.validate(bad)
    assert len(issues) == 1
    issue = issues[0]
    assert (issue.notification_guid, issue.sequence_no, issue.rule) == (guid(5), 5, "xsd")
    # libxml2 gives the line where the offending start tag ends: that of the TjenesteSlutt of notification 5
    lines = bad.decode().splitlines()
    assert f'hendelseGUID="{eguid(5)}">' in lines[issue.line - 1]
    assert 'hendelseDato="2025-02-30"' in lines[issue.line - 2]
    coded = SER.validate(mutate(data, 'tjenesteType="4"', 'tjenesteType="99"'))
    assert [(i.notification_guid, i.sequence_no, i.rule) for i in coded] == [(guid(6), 6, "code-list-9151")]
    assert "TjenesteStart" in coded[0].message and "99" in coded[0].message


# --- (c) byte stability --------------------------------------------------------------------------------

def test_serialize_is_byte_stable():
    first = SER.serialize(full_message())
    assert SER.serialize(full_message()) == first
    shuffled = dataclasses.replace(full_message(), notifications=full_message().notifications[::-1])
    assert SER.serialize(shuffled) == first
    assert first.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Melding xmlns="' + NAMESPACE.encode())
    assert first.endswith(b"</Melding>\n")
    assert "Leverandør".encode() in first  # UTF-8, not a character reference


def test_timestamps_are_norwegian_local_time_without_offset():
    root = etree.fromstring(SER.serialize(full_message()))
    times = {e.get("hendelseGUID"): e.get("hendelseRegTid") for e in root.iter() if e.get("hendelseGUID")}
    assert times[eguid(1)] == "2018-01-14T00:00:00"  # an extract date
    assert times[eguid(2)] == "2024-05-02T08:00:00"  # UTC+2 in summer
    assert times[eguid(3)] == "2024-05-21T00:30:00"  # crosses midnight locally
    assert times[eguid(4)] == "2024-11-01T12:00:00"  # naive: already local
    assert times[eguid(5)] == "2025-02-20T11:00:00"  # UTC+1 in winter, fraction dropped
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", t) for t in times.values())


def test_special_characters_are_escaped_and_round_trip():
    text = 'A & B <"Omsorg">\tny linje\n'
    data = SER.serialize(dataclasses.replace(message(chain(("N", event("TjenesteStart", 1), None))),
                                             epj_name=text))
    assert etree.fromstring(data).get("navnEPJ") == text
    assert SER.serialize(dataclasses.replace(message(chain(("N", event("TjenesteStart", 1), None))),
                                             epj_name=text)) == data


# --- (d) MessageInvalid names the notification and the rule --------------------------------------------

def _one(kind: str = "TjenesteStart", status: str = "N", ref: int | None = None, **kw) -> Message:
    items = [("N", event("TjenesteStart", 1), None), ("N", event("TjenesteStart", 2, service_id="A-2"), None)]
    items.append((status, event(kind, 3, **kw), ref))
    return message(chain(*items))


INVALID_MODELS = [
    ("provider change without tjenesteOrgNr", _one("TjenesteutforerEndret", provider_org=None), "orgnr-required",
     "tjenesteOrgNr"),
    ("unknown service code", _one(service_type="99"), "code-list-9151", "'99'"),
    ("layout 3.6 service code", _one(service_type=12), "code-list-9151", "'12'"),
    ("organisation number", _one("TjenesteutforerEndret", provider_org="97476067"), "orgnr-format", "97476067"),
    ("stop without stop id", _one("MidlertidigStoppTil", stop_id=None), "stop-id-required", "midlertidigStoppID"),
    ("stop id on a start", _one(stop_id="S-1"), "stop-id-forbidden", "midlertidigStoppID"),
    ("M without reference", _one(status="M"), "ref-required", "notifikasjonRef"),
    ("C without reference", _one(status="C"), "ref-required", "notifikasjonRef"),
    ("N with reference", _one(ref=1), "ref-forbidden", "notifikasjonRef"),
    ("status T", _one(status="T", ref=1), "code-list-7316", "'T'"),
    ("unknown kind", _one("TjenesteEndret"), "event-kind", "TjenesteEndret"),
    ("person id type", _one(person=dataclasses.replace(PERSON_A, type_id=11)), "code-list-9032", "'11'"),
    ("check digits", _one(person=dataclasses.replace(PERSON_A, fid=FID_A[:-1] + "6")), "fid-check-digits", "typeID"),
    ("event guid", _one(event_guid="hendelse-3"), "guid-format", "hendelseGUID"),
    ("repeated event guid", _one(event_guid=eguid(1)), "event-guid-unique", eguid(1)),
    ("date type", _one(event_date=dt.datetime(2025, 3, 1, 12, 0)), "type", "hendelseDato"),
    ("empty service id", _one(service_id=""), "tjenesteID", "tjenesteID"),
    ("control character", _one(service_id="A\x01"), "xml-characters", "tjenesteID"),
    ("district too long", _one(person=dataclasses.replace(PERSON_A, district="0301011")), "bydel-format", "bydel"),
    ("missing person", _one(person=None), "required", "Bruker"),
]


@pytest.mark.parametrize(("name", "msg", "rule", "mention"), INVALID_MODELS, ids=[m[0] for m in INVALID_MODELS])
def test_invalid_event_raises_naming_notification_and_rule(name, msg, rule, mention):
    with pytest.raises(MessageInvalid) as info:
        SER.serialize(msg)
    exc = info.value
    assert (exc.notification_guid, exc.sequence_no, exc.rule) == (guid(3), 3, rule)
    text = str(exc)
    assert guid(3) in text and "sequence no 3" in text and f"[rule {rule}]" in text and mention in text


def test_the_first_failing_notification_is_named():
    notifications = chain(("N", event("TjenesteStart", 1), None),
                          ("N", event("TjenesteutforerEndret", 2, provider_org=None), None),
                          ("N", event("TjenesteStart", 3, service_type="99"), None))
    with pytest.raises(MessageInvalid) as info:
        SER.serialize(message(notifications[::-1]))
    assert (info.value.notification_guid, info.value.sequence_no, info.value.rule) == (guid(2), 2, "orgnr-required")


@pytest.mark.parametrize(("notifications", "rule", "seq"), [
    ((*chain(("N", event("TjenesteStart", 1), None), start=5),
      Notification(guid(7), guid(4), 5, "N", dt.datetime(2026, 1, 1), event("TjenesteStart", 2))),
     "lopenr-order", 5),
    ((Notification(guid(1), guid(0), 1, "N", dt.datetime(2026, 1, 1), event("TjenesteStart", 1)),),
     "forrige-guid", 1),
    ((Notification(guid(4), NIL_GUID, 4, "N", dt.datetime(2026, 1, 1), event("TjenesteStart", 1)),),
     "forrige-guid", 4),
    ((*chain(("N", event("TjenesteStart", 1), None)),
      Notification(guid(2), guid(9), 2, "N", dt.datetime(2026, 1, 1), event("TjenesteStart", 2))),
     "forrige-guid", 2),
    (chain(("N", event("TjenesteStart", 1), None), ("M", event("TjenesteStart", 2), 1),
           ("C", event("TjenesteStart", 3), 2)), "ref-target-original", 3),
    (chain(("N", event("TjenesteStart", 1), None), ("C", event("TjenesteStart", 2), 2)), "ref-self", 2),
])
def test_sequence_and_chain_rules(notifications, rule, seq):
    with pytest.raises(MessageInvalid) as info:
        SER.serialize(message(notifications))
    assert (info.value.rule, info.value.sequence_no) == (rule, seq)


def test_bytes_failing_the_schema_are_never_returned(monkeypatch):
    """Should a rule be missing, the schema check of the rendered bytes still refuses them."""
    from transforms.submit.serializers import xpr56

    monkeypatch.setattr(xpr56._Rules, "_event", lambda self, event: iter(()))
    with pytest.raises(MessageInvalid) as info:
        SER.serialize(_one("TjenesteutforerEndret", provider_org=None))
    exc = info.value
    assert (exc.notification_guid, exc.sequence_no, exc.rule) == (guid(3), 3, "xsd")
    assert "tjenesteOrgNr" in str(exc) and exc.issues


def test_a_resend_with_gaps_in_the_sequence_is_valid():
    everything = full_message().notifications
    resend = dataclasses.replace(full_message(), notifications=(everything[1], everything[6], everything[9]))
    assert SER.validate(SER.serialize(resend)) == []


@pytest.mark.parametrize(("change", "rule"), [
    (dict(contacts=(CONTACTS[0],)), "contact-iplos-types"),
    (dict(contacts=()), "contact-required"),
    (dict(contacts=(*CONTACTS, Contact("Per", "per@example.org", 42))), "code-list-8471"),
    (dict(contacts=(Contact("", "kari@example.org", 16), CONTACTS[1])), "contact-text"),
    (dict(kommune_nr="301"), "kommune-nr"),
    (dict(vendor=""), "header-text"),
    (dict(epj_version="x" * 101), "header-text"),
])
def test_message_level_rules(change, rule):
    with pytest.raises(MessageInvalid) as info:
        SER.serialize(dataclasses.replace(full_message(), **change))
    assert info.value.rule == rule
    assert info.value.notification_guid is None and info.value.sequence_no is None
    assert str(info.value).startswith("message: ")


# --- (e) round trip -----------------------------------------------------------------------------------

def _q(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


def test_round_trip_of_every_kind_and_status():
    msg = full_message()
    root = etree.fromstring(SER.serialize(msg))
    assert root.tag == _q("Melding")
    assert dict(root.attrib) == {"versjon": "56.0.0", "meldingstype": "K", "leverandor": "Leverandør AS",
                                 "navnEPJ": "Omsorg A", "versjonEPJ": "9.1", "versjonUt": "ktt-backfill 0.1.0"}
    children = [c.tag for c in root]
    n = len(msg.notifications)
    assert children == [_q("Notifikasjon")] * n + [_q("Kontaktperson")] * 2 + [_q("Kommune")]
    assert [dict(c.attrib) for c in root.iterfind(_q("Kontaktperson"))] == [
        {"kontPerson": "Kari Nordmann", "meldEpost1": "kari@example.org", "typeKontaktperson": "16"},
        {"kontPerson": "Ola Nordmann", "meldEpost1": "ola@example.org", "typeKontaktperson": "17"}]
    assert dict(root.find(_q("Kommune")).attrib) == {"kommuneNr": "3301"}

    seen_kinds, seen_statuses = set(), set()
    for element, notification in zip(root.iterfind(_q("Notifikasjon")), msg.in_sequence_order(), strict=True):
        expected = {"statusNotifikasjon": notification.status, "notifikasjonTid": "2026-01-01T00:00:00",
                    "notifikasjonGUID": notification.guid, "notifikasjonForrigeGUID": notification.previous_guid,
                    "notifikasjonLopeNr": str(notification.sequence_no)}
        if notification.ref_guid:
            expected["notifikasjonRef"] = notification.ref_guid
        assert dict(element.attrib) == expected
        (ev,) = list(element)
        e = notification.event
        assert ev.tag == _q(e.kind)
        assert ev.get("tjenesteType") == str(e.service_type)
        assert ev.get("tjenesteID") == e.service_id
        assert ev.get("hendelseDato") == e.event_date.isoformat()
        assert ev.get("hendelseGUID") == e.event_guid
        assert ev.get("tjenesteOrgNr") == e.provider_org
        assert ev.get("midlertidigStoppID") == e.stop_id
        assert list(ev.attrib)[:3] == ["tjenesteType", "hendelseRegTid", "hendelseDato"]
        (bruker,) = list(ev)
        expected_bruker = {"pasientGUID": e.person.patient_guid, "brukerNr": e.person.user_no, "fid": e.person.fid,
                           "typeID": str(e.person.type_id)}
        if e.person.district:
            expected_bruker["bydel"] = e.person.district
        assert dict(bruker.attrib) == expected_bruker
        seen_kinds.add(e.kind)
        seen_statuses.add(notification.status)
    assert seen_kinds == set(EVENT_KINDS) and seen_statuses == {"N", "M", "C"}

    # corrections point at the original N notification and carry a new hendelseGUID
    by_guid = {e.get("notifikasjonGUID"): e for e in root.iterfind(_q("Notifikasjon"))}
    for element in by_guid.values():
        if element.get("statusNotifikasjon") in ("M", "C"):
            original = by_guid[element.get("notifikasjonRef")]
            assert original.get("statusNotifikasjon") == "N"
            assert original[0].tag == element[0].tag
            assert original[0].get("hendelseGUID") != element[0].get("hendelseGUID")


# --- interface and registry -----------------------------------------------------------------------------

def test_registry():
    assert SERIALIZERS["xpr56"] is Xpr56Serializer
    serializer = get_serializer("xpr56")
    assert isinstance(serializer, Xpr56Serializer) and isinstance(serializer, MessageSerializer)
    assert (serializer.name, serializer.file_suffix) == ("xpr56", ".xml")
    with pytest.raises(ValueError, match="xpr56"):
        get_serializer("kpr-current")


def test_no_dagster_import():
    code = ("import sys, transforms.submit.serializers.xpr56; "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'dagster'], 'dagster imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
