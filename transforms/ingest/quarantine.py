"""Quarantine rule ids, and the record the readers write for every input they reject.

Rule ids are stable strings: analysts group by them across years, and the synthetic
generator records its corruptions with the same ids so tests can match them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

RULES: dict[str, str] = {
    "file.unparseable": "the file is not well-formed (e.g. truncated XML) and was quarantined whole",
    "file.encoding_mismatch": "the file's bytes do not match the encoding it declares",
    "file.unknown_layout": "the file's root element, version or header is not a known layout",
    "file.misfiled": "the file's header names another data year or municipality than its path",
    "file.unreadable": "the file could not be read (missing header, empty, unreadable)",
    "record.malformed": "the record has the wrong number of fields or is not valid JSON",
    "record.duplicate": "an exact duplicate of an earlier record in the same file",
    "field.missing": "a required field is empty",
    "date.unparseable": "a date or timestamp cannot be parsed in the layout's format",
    "period.end_before_start": "the end date lies before the start date",
    "code.unknown_service": "the service code is not in code list 9151",
    "code.unknown_value": "a coded value is outside its code list",
    "hours.out_of_range": "hours per week outside 0-168",
    "number.unparseable": "a number cannot be parsed",
    "org.format": "the provider organisation number is not nine digits",
    "id.missing": "the person identifier is empty",
    "id.format": "the person identifier has the wrong length or non-digits",
    "id.check_digits": "the person identifier fails its check digits",
    "id.birth_date": "the person identifier holds no valid birth date",
    "id.synthetic_not_allowed": "a synthetic test identifier while allow_synthetic_ids is off",
    "id.parent_quarantined": "the record belongs to a person whose record was quarantined",
    "record.parent_quarantined": "the record belongs to a service record that was quarantined",
}

_IDENTIFIER_RUN = re.compile(r"(?<!\d)\d{11,12}(?!\d)")


@dataclass(frozen=True)
class Rejection:
    """Why a record cannot be staged."""

    rule_id: str
    message: str

    def __post_init__(self) -> None:
        if self.rule_id not in RULES:
            raise ValueError(f"unknown quarantine rule {self.rule_id!r}")


def mask_identifiers(text: str, tag: Callable[[str], str]) -> str:
    """Replace every 11-12 digit run (a birth number or DUF number) by its pseudonym tag.

    Applied to every raw value before it reaches the quarantine, so even a
    mangled identifier in an unexpected field never lands in a Parquet file.
    """
    return _IDENTIFIER_RUN.sub(lambda m: tag(m.group(0)), text)
