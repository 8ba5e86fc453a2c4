"""The serializer-neutral message model: one daily message of one municipality.

Plain frozen dataclasses without validation; a serializer checks a message against its own
format's rules and raises `MessageInvalid` naming the notification and the rule.

Conventions (those of the XPR 56 event message "IPLOS i KPR", the first format):
- a `Notification` wraps exactly one `Event`, for every status. `N` (Original) reports an event
  for the first time; `M` (KorrigerErstatt) carries the event's new content and replaces the
  notification `ref_guid`; `C` (KorrigerAnnuller) carries the withdrawn event and annuls the
  notification `ref_guid`. `ref_guid` is set exactly for `M` and `C` and always names the
  *original* (`N`) notification, also when the event was corrected before. A correction carries
  a new `event_guid` (`hendelseGUID` identifies one version of an event).
- GUIDs are strings in the 8-4-4-4-12 hex form (a `uuid.UUID` is accepted as well);
  `NIL_GUID` is the `previous_guid` of a municipality's first notification.
- `registered_at` is a `datetime` (aware: converted to Norwegian local time; naive: taken as
  Norwegian local time) or a `date` (a fact known only from a yearly extract: midnight of the
  extract date). `notification_time` likewise. `event_date` is a `date`.
- codes (`service_type`: code list 9151, `type_id`: 9032, `Contact.type`: 8471) may be given as
  `str` or `int`; they are written in decimal.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, get_args

EventKind = Literal["TjenesteStart", "TjenesteSlutt", "TjenesteutforerEndret", "MidlertidigStoppFra",
                    "MidlertidigStoppTil"]
NotificationStatus = Literal["N", "M", "C"]

EVENT_KINDS: tuple[str, ...] = get_args(EventKind)
STOP_KINDS: frozenset[str] = frozenset({"MidlertidigStoppFra", "MidlertidigStoppTil"})

STATUS_NEW = "N"  # Original
STATUS_REPLACE = "M"  # KorrigerErstatt: replaces the notification `ref_guid`
STATUS_WITHDRAW = "C"  # KorrigerAnnuller: annuls the notification `ref_guid`
STATUSES: tuple[str, ...] = get_args(NotificationStatus)
CORRECTION_STATUSES: frozenset[str] = frozenset({STATUS_REPLACE, STATUS_WITHDRAW})

NIL_GUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Person:
    """The `Bruker` of an event."""

    patient_guid: str  # pasientGUID: stable per person and municipality
    user_no: str  # brukerNr: unique within the municipality for all years
    fid: str  # the official person identifier
    type_id: int | str  # typeID, code list 9032
    district: str | None = None  # bydel


@dataclass(frozen=True)
class Event:
    """One version of an event of one service episode."""

    kind: EventKind
    service_type: str | int  # tjenesteType, code list 9151
    service_id: str  # tjenesteID: the episode's reporting id
    event_date: dt.date  # hendelseDato
    registered_at: dt.datetime | dt.date  # hendelseRegTid
    event_guid: str  # hendelseGUID: new for every version of the event
    person: Person
    provider_org: str | None = None  # tjenesteOrgNr: required on TjenesteutforerEndret
    stop_id: str | None = None  # midlertidigStoppID: required on the two stop events, absent on the others

    @property
    def is_stop(self) -> bool:
        return self.kind in STOP_KINDS


@dataclass(frozen=True)
class Notification:
    """`Notifikasjon`: ledger metadata around exactly one event."""

    guid: str  # notifikasjonGUID
    previous_guid: str  # notifikasjonForrigeGUID: the municipality's previous notification, NIL_GUID for the first
    sequence_no: int  # notifikasjonLopeNr: 1, 2, ... per municipality
    status: NotificationStatus  # statusNotifikasjon
    notification_time: dt.datetime | dt.date  # notifikasjonTid
    event: Event  # the new (N), replacing (M) or withdrawn (C) event
    ref_guid: str | None = None  # notifikasjonRef: the original N notification, for M and C only

    @property
    def is_correction(self) -> bool:
        return self.status in CORRECTION_STATUSES


@dataclass(frozen=True)
class Contact:
    """`Kontaktperson`."""

    name: str  # kontPerson
    email: str  # meldEpost1
    type: int | str  # typeKontaktperson, code list 8471 (IPLOS: 16 contact, 17 responsible for submission)


@dataclass(frozen=True)
class Message:
    """`Melding`: one municipality's notifications of one day."""

    kommune_nr: str
    vendor: str  # leverandor
    epj_name: str  # navnEPJ
    epj_version: str  # versjonEPJ
    version_out: str  # versjonUt: the extraction program, e.g. "ktt-backfill 0.1.0"
    contacts: tuple[Contact, ...]
    notifications: tuple[Notification, ...]

    def __post_init__(self) -> None:
        # lists are accepted and frozen to tuples, so a Message stays hashable and immutable
        object.__setattr__(self, "contacts", tuple(self.contacts))
        object.__setattr__(self, "notifications", tuple(self.notifications))

    def in_sequence_order(self) -> tuple[Notification, ...]:
        return tuple(sorted(self.notifications, key=lambda n: n.sequence_no))
