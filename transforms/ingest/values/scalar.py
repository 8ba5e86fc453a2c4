"""The rule of each value kind applied to one value: the reference the column-wise path must agree with.

These are the record-at-a-time readers' parsers, kept as they were (rule ids and messages included):
`column.parse` runs the vectorised form of a rule over a whole column and hands only the values it
cannot decide to `apply` here, so a bad value gets exactly the message it always got. A JSON value
arrives with its JSON type; text sources (CSV, XML) give strings or None.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import cache
from typing import Any

from transforms.ingest.values import fields as f
from transforms.ingest.values.fields import FieldError
from transforms.ingest.values.spec import ISO8601, ValueSpec

FIRST_YEAR = 1850  # earliest plausible birth year
SEX_CODES = frozenset({0, 1, 2, 9})  # code list 3101


@cache
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def json_scalar(value: Any, name: str) -> str | None:
    """A JSON string or number as text; objects, arrays and booleans are not values."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise FieldError("record.malformed", f"{name} is a JSON {type(value).__name__}, expected a value")


def json_number(value: Any, name: str) -> Any:
    if isinstance(value, bool | dict | list):
        raise FieldError("number.unparseable", f"{name} is a JSON {type(value).__name__}, expected a number")
    return value


def _text(spec: ValueSpec, value: Any) -> str | None:
    return json_scalar(value, spec.name) if spec.json else value


def _integer(spec: ValueSpec, value: Any) -> int | None:
    if spec.json:
        value = json_number(value, spec.name)
        if isinstance(value, float):
            if not value.is_integer():
                raise FieldError("number.unparseable", f"{spec.name} {value!r} is not an integer")
            value = int(value)
    return f.parse_int(value, spec.name)


def _coded(spec: ValueSpec, value: Any) -> Any:
    text = f.required(_text(spec, value), spec.name).upper()
    mapping = spec.mapping
    if text not in mapping:
        raise FieldError("code.unknown_value", f"{spec.name} {text!r} is not one of {', '.join(mapping)}")
    return mapping[text]


def _date(spec: ValueSpec, value: Any) -> dt.date | None:
    if spec.json and value is not None and not isinstance(value, str):
        what = "an ISO date" if spec.date_format == "%Y-%m-%d" else f"a date in format {spec.date_format}"
        raise FieldError("date.unparseable", f"{spec.name} {value!r} is not {what}")
    if spec.required:
        f.required(value, spec.name)
    return f.parse_date(value, spec.date_format, spec.name)


def _timestamp(spec: ValueSpec, value: Any) -> dt.datetime:
    iso = spec.timestamp_format == ISO8601
    if spec.json and not isinstance(value, str):
        if value is None:
            raise FieldError("field.missing", f"required field {spec.name} is empty")
        raise FieldError("date.unparseable", f"{spec.name} {value!r} is not an ISO 8601 timestamp")
    text = f.required(value, spec.name)
    try:
        if iso:
            return f.parse_iso_timestamp(text, spec.name, zone(spec.time_zone))  # type: ignore[return-value]
        return f.parse_local_timestamp(text, spec.timestamp_format, spec.name,  # type: ignore[return-value]
                                       zone(spec.time_zone))
    except OverflowError:  # year 1 or 9999 shifted out of range by the UTC conversion
        raise FieldError("date.unparseable", f"{spec.name} {text!r} is out of range") from None


def _year(spec: ValueSpec, value: Any) -> int | None:
    number = _integer(spec, value)
    this_year = dt.date.today().year
    if number is not None and not FIRST_YEAR <= number <= this_year:
        raise FieldError("number.unparseable",
                         f"{spec.name} {number} is not a plausible year ({FIRST_YEAR}-{this_year})")
    return number


def _sex(spec: ValueSpec, value: Any) -> int | None:
    if spec.value_map is not None:
        text = _text(spec, value)
        return None if f.blank(text) else _coded(spec, text)
    code = _integer(spec, value)
    if code is not None and code not in SEX_CODES:
        raise FieldError("code.unknown_value", f"{spec.name} {code} is not in code list 3101")
    return code


def _hours(spec: ValueSpec, value: Any) -> float | None:
    if spec.json:
        value = json_number(value, spec.name)
    return f.parse_hours(value, spec.decimal_comma)


def _service_code(spec: ValueSpec, value: Any) -> str:
    text = _text(spec, value)
    if spec.value_map is not None:
        word = f.required(text, "service code")
        mapped = spec.mapping.get(word.upper())
        if mapped is None:
            raise FieldError("code.unknown_service", f"service code {word!r} has no mapping to code list 9151")
        text = str(mapped)
    try:
        return f.parse_service_code(text)
    except FieldError:
        raise
    except ValueError:  # a non-ASCII digit such as '²' passes isdigit() but not int()
        raise FieldError("code.unknown_service",
                         f"service code {(text or '').strip()!r} is not in code list 9151") from None


def _org(spec: ValueSpec, value: Any) -> str | None:
    number = f.parse_org(_text(spec, value))
    if number is not None and not number.isascii():  # '²' passes str.isdigit()
        raise FieldError("org.format", f"organisation number {number!r} is not 9 digits")
    return number


def _text_value(spec: ValueSpec, value: Any) -> str | None:
    text = _text(spec, value)
    if spec.required:
        return f.required(text, spec.name)
    return None if text is None else (text.strip() or None)


def _kommunenr(spec: ValueSpec, value: Any) -> str:
    text = f.required(_text(spec, value), spec.name)
    if len(text) != 4 or not (text.isascii() and text.isdigit()):
        raise FieldError("code.unknown_value", f"{spec.name} {text!r} is not a four-digit kommunenummer")
    return text


def _identifier(spec: ValueSpec, value: Any) -> str:
    """As written, without spaces: `transforms.privacy.identity.check_identifier` judges it."""
    return (_text(spec, value) or "").strip().replace(" ", "")


_RULES = {
    "text": _text_value, "kommunenr": _kommunenr, "code": _coded, "date": _date, "timestamp": _timestamp,
    "integer": _integer, "year": _year, "sex": _sex, "hours": _hours, "service_code": _service_code,
    "org": _org, "identifier": _identifier,
}


def apply(spec: ValueSpec, value: Any) -> Any:
    """The staged value of `value`, or FieldError with the rule it breaks."""
    return _RULES[spec.kind](spec, value)
