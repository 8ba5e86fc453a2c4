"""What a staged column is, as the value rules see it: a kind, a name for messages, formats and maps.

A `ValueSpec` is made from a source mapping (EPJ exports) or a yearly-extract layout; the rules of
each kind live in `scalar` (one value) and `vector` (a whole column). JSON values keep their JSON
type beside their text (`JsonType`), because the rules treat `15` and `"15"` alike but `true` or an
object in a text field as a malformed record.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

Kind = Literal[
    "text",          # free text or a local id; `required` makes an empty value `field.missing`
    "kommunenr",     # four ASCII digits, required
    "code",          # a word from a closed list (`value_map`), required; unknown -> code.unknown_value
    "date",          # a date in `date_format`; `required` for start dates
    "timestamp",     # a registration time in `timestamp_format` ("iso8601" or strptime) and `time_zone`
    "integer",       # a 32-bit integer
    "year",          # a plausible birth year, 1850 to this year
    "sex",           # code list 3101 (0, 1, 2, 9), optionally through `value_map`
    "hours",         # hours per week, 0-168, decimal comma where the format uses one
    "service_code",  # code list 9151, optionally through a vendor `value_map`
    "org",           # a nine-digit organisation number
    "identifier",    # a person identifier as written (checked by `transforms.privacy.identity`)
]

ISO8601 = "iso8601"


class JsonType(IntEnum):
    """The JSON type a value had (null: absent or JSON null). CSV and XML values are all STRING."""

    STRING = 1
    INT = 2
    FLOAT = 3
    BOOL = 4
    OBJECT = 5
    ARRAY = 6
    BAD_PARENT = 7  # an object on the value's path was a string, number or list: the text names it


@dataclass(frozen=True)
class ValueSpec:
    kind: Kind
    name: str                                   # as messages name the field (the source column or path)
    required: bool = False
    date_format: str = "%Y-%m-%d"
    timestamp_format: str = ISO8601
    time_zone: str = "Europe/Oslo"
    decimal_comma: bool = False
    value_map: tuple[tuple[str, Any], ...] | None = None  # upper-cased source word -> staged value
    json: bool = False                          # values carry JSON types (epj-b style sources)

    @property
    def mapping(self) -> dict[str, Any]:
        return dict(self.value_map or ())
