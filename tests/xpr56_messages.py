"""XPR 56 test messages shared by the serializer's tests: synthetic persons, chains of notifications,
every event kind with N, M and C, and the paths of the official schema and the spec's examples."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from tests.conftest import EXAMPLE_MESSAGES, OFFICIAL
from transforms.submit.serializers import NIL_GUID, Contact, Event, Message, Notification, Person, Xpr56Serializer
from transforms.submit.serializers.xpr56 import load_schema, schema_issues

UTC = dt.UTC
EXAMPLES = EXAMPLE_MESSAGES  # the spec's two schema-valid messages

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

