"""Resending (the requirement document's administration chapter): copies of sent notifications.

A resend selects notifications from the ledger (one GUID, since a date or a sequence
number, between two dates or two sequence numbers, or every notification of one
person) and writes them unchanged, with their original GUIDs and numbers, into a new
message under `outbox/`. The ledger's numbering is not touched.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from transforms.core.atomic import write_bytes
from transforms.core.settings import Settings
from transforms.privacy.identity import Pseudonymizer
from transforms.privacy.keys import Keys
from transforms.submit.ledger import open_ledger
from transforms.submit.writer import SubmissionWriter


@dataclass(frozen=True)
class Selection:
    kommune: str
    guid: str | None = None
    since_date: dt.date | None = None
    since_seq: int | None = None
    between_dates: tuple[dt.date, dt.date] | None = None
    between_seqs: tuple[int, int] | None = None
    person_fid: str | None = None

    def where(self, keys: Keys) -> tuple[str, list]:
        clauses, params = ["kommune = ?"], [self.kommune]
        chosen = [x is not None for x in (self.guid, self.since_date, self.since_seq, self.between_dates,
                                          self.between_seqs, self.person_fid)]
        if sum(chosen) != 1:
            raise ValueError("choose exactly one selection: --guid, --since-date, --since-seq, --between-dates, "
                             "--between-seqs or --person")
        if self.guid:
            clauses.append("guid = ?")
            params.append(self.guid)
        elif self.since_date:
            clauses.append("day >= ?")
            params.append(self.since_date)
        elif self.since_seq is not None:
            clauses.append("seq >= ?")
            params.append(self.since_seq)
        elif self.between_dates:
            clauses.append("day BETWEEN ? AND ?")
            params += list(self.between_dates)
        elif self.between_seqs:
            clauses.append("seq BETWEEN ? AND ?")
            params += list(self.between_seqs)
        else:
            clauses.append("person_key = ?")
            params.append(Pseudonymizer(keys.pseudonym_key)(self.person_fid or ""))
        return " AND ".join(clauses), params

    def slug(self) -> str:
        if self.guid:
            return f"guid-{self.guid}"
        if self.since_date:
            return f"since-{self.since_date}"
        if self.since_seq is not None:
            return f"since-seq-{self.since_seq}"
        if self.between_dates:
            return f"dates-{self.between_dates[0]}-{self.between_dates[1]}"
        if self.between_seqs:
            return f"seqs-{self.between_seqs[0]}-{self.between_seqs[1]}"
        return "person"


def resend(settings: Settings, keys: Keys, selection: Selection) -> tuple[Path | None, int]:
    """Write the selected notifications into one new message; returns its path and the count."""
    where, params = selection.where(keys)
    with open_ledger(settings.data_root, read_only=True) as con:
        notes = con.execute(f"SELECT *, NULL AS user_no FROM notifications WHERE {where} ORDER BY seq", params).pl()
        persons = con.execute("SELECT person_key, bruker_nr, pasient_guid FROM persons WHERE kommune = ?",
                              [selection.kommune]).pl()
    if notes.height == 0:
        return None, 0
    writer = SubmissionWriter(settings, keys)
    data = writer.serialize(writer.municipalities[selection.kommune], notes, persons)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    path = settings.root.outbox / f"kommune={selection.kommune}" / f"resend-{stamp}-{selection.slug()}.xml"
    write_bytes(path, data)
    return path, notes.height
