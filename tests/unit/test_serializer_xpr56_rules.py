"""The XPR 56 serializer, what it refuses: the packaged and the official schema agree on a corpus of valid
and mutated messages, `validate` names the notification, the rule and the line, and `serialize` raises
`MessageInvalid` naming the first failing notification and the rule.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest

from tests.xpr56_messages import (
    CONTACTS,
    EXAMPLES,
    FID_A,
    ORG_1,
    ORG_2,
    PERSON_A,
    SER,
    chain,
    eguid,
    event,
    full_message,
    guid,
    kind_status_message,
    message,
    mutate,
    official_schema,
    packaged_valid,
)
from transforms.submit.serializers import (
    EVENT_KINDS,
    NIL_GUID,
    Contact,
    Message,
    MessageInvalid,
    Notification,
)
from transforms.submit.serializers.xpr56 import NAMESPACE, schema_issues

# --- (b) packaged and official schema agree on a corpus ----------------------------------------------

def _valid_corpus() -> list[tuple[str, bytes]]:
    corpus = [(f"{kind}-{status}", SER.serialize(kind_status_message(kind, status)))
              for kind in EVENT_KINDS for status in ("N", "M", "C")]
    corpus.append(("full", SER.serialize(full_message())))
    corpus.append(("no-notifications", SER.serialize(message(()))))
    examples = sorted(EXAMPLES.glob("*.xml"))
    assert len(examples) == 2, EXAMPLES
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
    from transforms.submit.serializers.xpr56.rules import Rules

    monkeypatch.setattr(Rules, "_event", lambda self, event: iter(()))
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

