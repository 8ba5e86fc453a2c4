"""The XPR 56.0.0 "IPLOS i KPR" serializer, what it writes: packaged schema, the spec's examples byte for
byte, byte stability, local time, escaping, round trip, the interface and its registry.

What it refuses (the schema and its own rules, on models and on bytes) is in `test_serializer_xpr56_rules.py`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import subprocess
import sys

import pytest
from lxml import etree

from tests.conftest import REPO
from tests.xpr56_messages import (
    CONTACTS,
    EXAMPLES,
    FID_B,
    OFFICIAL,
    ORG_1,
    SER,
    UTC,
    chain,
    eguid,
    event,
    full_message,
    guid,
    message,
    strip_comments,
)
from transforms.submit.serializers import (
    EVENT_KINDS,
    NIL_GUID,
    SERIALIZERS,
    Event,
    FrameWriter,
    Message,
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

# --- the packaged schema ---------------------------------------------------------------------------

def test_packaged_schema_lives_in_the_package():
    directory = schema_dir()
    assert directory.is_relative_to(REPO / "transforms")
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
    data = (EXAMPLES / name).read_bytes()
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
    assert SER.serialize(build()) == strip_comments((EXAMPLES / name).read_bytes())


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
    assert isinstance(serializer, FrameWriter)  # it offers the bulk path (see test_message_writer.py)
    assert (serializer.name, serializer.file_suffix) == ("xpr56", ".xml")
    with pytest.raises(ValueError, match="xpr56"):
        get_serializer("kpr-current")


def test_no_dagster_import():
    code = ("import sys, transforms.submit.serializers.xpr56; "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'dagster'], 'dagster imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
