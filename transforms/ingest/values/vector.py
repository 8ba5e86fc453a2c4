"""The value rules over a whole column: a staged value and whether the rule is sure of it.

Each kind turns a text column into (value, decided): `decided` is true where the value has the shape
the rule accepts without doubt (`01.05.2021`, `4,5`, `974760673`) and the vectorised value is the
one `scalar.apply` would give; everything else (empty required fields, odd spacing, a date Polars and
Python read differently, every bad value) is left to `scalar.apply`, which decides it alone. A shape
test is therefore allowed to be stricter than the rule, never looser.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cache

import polars as pl

from transforms.ingest.values.spec import ISO8601, ValueSpec
from transforms.reference.codes import service_codes

# Python's str.strip() also strips \x1c-\x1f, Rust's trim() does not: leave such values to Python.
_PY_ONLY_SPACE = r"[\x1c-\x1f]"
_PRINTABLE_WORD = r"^[!-~](?:[ -~]*[!-~])?$"  # printable ASCII without surrounding spaces
_DIRECTIVES = {
    "%d": "(?:0[1-9]|[12][0-9]|3[01])", "%m": "(?:0[1-9]|1[0-2])", "%Y": "[0-9]{4}",
    "%H": "(?:[01][0-9]|2[0-3])", "%M": "[0-5][0-9]", "%S": "[0-5][0-9]",
}
_ISO_STAMP = (r"^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
              r"[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]$")


@cache
def format_pattern(fmt: str) -> str | None:
    """A regex of the values `fmt` writes with fixed-width fields, or None when it has other directives."""
    parts, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%":
            directive = fmt[i:i + 2]
            if directive not in _DIRECTIVES:
                return None
            parts.append(_DIRECTIVES[directive])
            i += 2
        else:
            parts.append(re.escape(fmt[i]))
            i += 1
    return "^" + "".join(parts) + "$"


def _empty(t: pl.Expr) -> pl.Expr:
    return t.is_null() | (t.str.strip_chars() == "")


def _text(spec: ValueSpec, t: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    stripped = t.str.strip_chars()
    value = pl.when(stripped == "").then(None).otherwise(stripped)
    decided = t.is_null() | ~t.str.contains(_PY_ONLY_SPACE)
    if spec.required:
        decided = decided & value.is_not_null()
    return value, decided


def _kommunenr(spec: ValueSpec, t: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    return t, t.str.contains(r"^[0-9]{4}$")


def map_dtype(spec: ValueSpec) -> pl.DataType:
    values = [v for _, v in spec.value_map or ()]
    return pl.Int32() if values and all(isinstance(v, int) for v in values) else pl.Utf8()


def _mapped(spec: ValueSpec, t: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    mapping = spec.mapping
    return t.str.to_uppercase().replace_strict(list(mapping), list(mapping.values()), default=None,
                                              return_dtype=dtype)


def _code(spec: ValueSpec, t: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    value = _mapped(spec, t, map_dtype(spec))
    return value, t.str.contains(_PRINTABLE_WORD) & value.is_not_null()


def _date(spec: ValueSpec, t: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    pattern = format_pattern(spec.date_format)
    if pattern is None:
        return pl.lit(None, dtype=pl.Date), (pl.lit(not spec.required) & t.is_null())
    value = t.str.strptime(pl.Date, spec.date_format, strict=False)
    shaped = t.str.contains(pattern) & value.is_not_null() & (value.dt.year() >= 1)
    if spec.required:
        return value, shaped
    return pl.when(t.is_null() | (t == "")).then(None).otherwise(value), t.is_null() | (t == "") | shaped


def _timestamp(spec: ValueSpec, t: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    utc = pl.Datetime("us", "UTC")
    if spec.timestamp_format == ISO8601:
        value = t.str.to_datetime("%Y-%m-%dT%H:%M:%S%:z", time_unit="us", time_zone="UTC", strict=False)
        shaped = t.str.contains(_ISO_STAMP)
    else:
        pattern = format_pattern(spec.timestamp_format)
        if pattern is None:
            return pl.lit(None, dtype=utc), pl.lit(False)
        local = t.str.strptime(pl.Datetime("us"), spec.timestamp_format, strict=False)
        value = (local.dt.replace_time_zone(spec.time_zone, ambiguous="earliest", non_existent="null")
                 .dt.convert_time_zone("UTC"))
        shaped = t.str.contains(pattern)
    year = value.dt.year()
    return value.cast(utc), shaped & value.is_not_null() & (year >= 2) & (year <= 9998)


def _integer_value(t: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    shaped = t.str.contains(r"^-?[0-9]{1,9}$")
    return pl.when(shaped).then(t).cast(pl.Int32, strict=False), shaped


def _integer(spec: ValueSpec, t: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    value, shaped = _integer_value(t)
    return value, t.is_null() | (t == "") | shaped


def _year(spec: ValueSpec, t: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    value, shaped = _integer_value(t)
    plausible = shaped & (value >= 1850) & (value <= dt.date.today().year)
    return value, t.is_null() | (t == "") | plausible


def _sex(spec: ValueSpec, t: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    if spec.value_map is not None:
        value = _mapped(spec, t, pl.Int32())
        return value, t.is_null() | (t == "") | (t.str.contains(_PRINTABLE_WORD) & value.is_not_null())
    value, shaped = _integer_value(t)
    return value, t.is_null() | (t == "") | (shaped & value.is_in([0, 1, 2, 9]))


def _hours(spec: ValueSpec, t: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    pattern = r"^[0-9]{1,3}(?:[.,][0-9]{1,9})?$" if spec.decimal_comma else r"^[0-9]{1,3}(?:\.[0-9]{1,9})?$"
    shaped = t.str.contains(pattern)
    value = pl.when(shaped).then(t.str.replace(",", ".", literal=True)).cast(pl.Float64, strict=False)
    return value, t.is_null() | (t == "") | (shaped & (value <= 168))


def _service_code(spec: ValueSpec, t: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    source = _mapped(spec, t, pl.Utf8()) if spec.value_map is not None else t
    shaped = source.str.contains(r"^[0-9]{1,3}$")
    if spec.value_map is not None:
        shaped = shaped & t.str.contains(_PRINTABLE_WORD)
    value = pl.when(shaped).then(source).cast(pl.Int32, strict=False).cast(pl.Utf8)
    return value, shaped & value.is_in(sorted(service_codes()))


def _org(spec: ValueSpec, t: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    empty = t.is_null() | (t == "")
    return pl.when(empty).then(None).otherwise(t), empty | t.str.contains(r"^[0-9]{9}$")


def _identifier(spec: ValueSpec, t: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    value = pl.coalesce(t, pl.lit("")).str.strip_chars().str.replace_all(" ", "", literal=True)
    return value, t.is_null() | ~t.str.contains(_PY_ONLY_SPACE)


_FAST = {
    "text": _text, "kommunenr": _kommunenr, "code": _code, "date": _date, "timestamp": _timestamp,
    "integer": _integer, "year": _year, "sex": _sex, "hours": _hours, "service_code": _service_code,
    "org": _org, "identifier": _identifier,
}


def fast(spec: ValueSpec, t: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(staged value, decided) of the text column `t` under the rule of `spec.kind`."""
    value, decided = _FAST[spec.kind](spec, t)
    return value, decided.fill_null(False)


def dtype_of(spec: ValueSpec) -> pl.DataType:
    """The staged type of a kind's values."""
    if spec.kind in ("code",):
        return map_dtype(spec)
    return {
        "date": pl.Date(), "timestamp": pl.Datetime("us", "UTC"), "integer": pl.Int32(), "year": pl.Int32(),
        "sex": pl.Int32(), "hours": pl.Float64(),
    }.get(spec.kind, pl.Utf8())
