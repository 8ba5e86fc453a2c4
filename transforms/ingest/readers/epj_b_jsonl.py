"""Reader for the `epj-b-jsonl` history export (spec inputs.md §4).

One JSON object per line in `events.jsonl` or `events-*.jsonl` (UTF-8). Every object is one
registration: `kind` `client` (a person), `service` (a whole service record after the
registration) or `pause` (a temporary stop). ISO timestamps with offset, ISO dates.

Each kind is described by a `JsonKind`: the staged table it feeds and per JSON path the
staged column and parser, so a changed event layout is an edit of `KINDS`, not of the loop.
Status mapping (spec): ACTIVE is `NY` for the first staged version of a service (pause) in
the file and `ENDRET` after it; CANCELLED is `ANNULLERT`.

The file is streamed line by line as bytes; only one line is held, plus 16-byte digests of
the lines seen (exact-duplicate rule) and the ids of the services and pauses seen.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transforms.ingest.quarantine import Rejection, mask_identifiers
from transforms.ingest.readers.base import FileRejected, ReadContext
from transforms.ingest.readers.fields import (
    FieldError,
    check_period,
    parse_date,
    parse_hours,
    parse_int,
    parse_iso_timestamp,
    parse_org,
    parse_service_code,
    required,
)
from transforms.ingest.readers.persons import resolve_person
from transforms.ingest.sink import FileSink
from transforms.privacy.identity import ID_TYPE_NAMES, check_identifier
from transforms.tables import EPJ_PERSONS, EPJ_SERVICE_VERSIONS, EPJ_STOPS, Table

DATE_FORMAT = "%Y-%m-%d"
STATUSES = frozenset({"ACTIVE", "CANCELLED"})
SEX_CODES = frozenset({0, 1, 2, 9})  # code list 3101
FIRST_YEAR = 1850  # earliest plausible birth year
# The id types this format writes (spec §4); values are code list 9032.
B_ID_TYPES = {name: ID_TYPE_NAMES[name] for name in ("FNR", "DNR", "HNR", "DUF", "OTHER")}

CONTEXT_COLUMNS = frozenset({"source_file", "line", "location", "system", "reporting_kommune"})
PERSON_COLUMNS = ("person_key", "id_type")
UNKNOWN_KIND = "record"  # sink kind of a line whose kind cannot be told (not JSON, unknown `kind`)

Path_ = tuple[str, ...]
Parser = Callable[[Any, str], Any]  # (JSON value, dotted name) -> staged value, or FieldError


# Dates repeat across rows (decision and start dates); strptime is the costliest step per row.
# FieldErrors are not cached, so a bad value is re-checked (and rejected) every time.
_cached_date = functools.lru_cache(maxsize=1 << 16)(parse_date)


# --- parsers: one JSON value -> staged value ------------------------------------------------
def _scalar(value: Any, name: str) -> str | None:
    """A JSON string or number as text; objects, arrays and booleans are not values."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise FieldError("record.malformed", f"{name} is a JSON {type(value).__name__}, expected a value")


def _number(value: Any, name: str) -> Any:
    if isinstance(value, bool | dict | list):
        raise FieldError("number.unparseable", f"{name} is a JSON {type(value).__name__}, expected a number")
    return value


def optional_text(value: Any, name: str) -> str | None:
    text = _scalar(value, name)
    if text is None:
        return None
    return text.strip() or None


def required_text(value: Any, name: str) -> str:
    return required(_scalar(value, name), name)


def kommunenr(value: Any, name: str) -> str:
    text = required_text(value, name)
    if len(text) != 4 or not (text.isascii() and text.isdigit()):
        raise FieldError("code.unknown_value", f"{name} {text!r} is not a four-digit kommunenummer")
    return text


def coded(mapping: dict[str, Any]) -> Parser:
    def parse(value: Any, name: str) -> Any:
        text = required_text(value, name).upper()
        if text not in mapping:
            raise FieldError("code.unknown_value", f"{name} {text!r} is not one of {', '.join(mapping)}")
        return mapping[text]
    return parse


def iso_date(value: Any, name: str) -> dt.date | None:
    if value is not None and not isinstance(value, str):
        raise FieldError("date.unparseable", f"{name} {value!r} is not an ISO date")
    return _cached_date(value, DATE_FORMAT, name)


def required_date(value: Any, name: str) -> dt.date:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise FieldError("field.missing", f"required field {name} is empty")
    return iso_date(value, name)  # type: ignore[return-value]


def timestamp(value: Any, name: str) -> dt.datetime:
    if not isinstance(value, str):
        if value is None:
            raise FieldError("field.missing", f"required field {name} is empty")
        raise FieldError("date.unparseable", f"{name} {value!r} is not an ISO 8601 timestamp")
    text = required(value, name)
    try:
        return parse_iso_timestamp(text, name)  # type: ignore[return-value]
    except OverflowError:  # year 1 or 9999 shifted out of range by the UTC conversion
        raise FieldError("date.unparseable", f"{name} {text!r} is out of range") from None


def integer(value: Any, name: str) -> int | None:
    value = _number(value, name)
    if isinstance(value, float):
        if not value.is_integer():
            raise FieldError("number.unparseable", f"{name} {value!r} is not an integer")
        value = int(value)
    return parse_int(value, name)


def year(value: Any, name: str) -> int | None:
    number = integer(value, name)
    if number is not None and not FIRST_YEAR <= number <= dt.date.today().year:
        raise FieldError("number.unparseable",
                         f"{name} {number} is not a plausible year ({FIRST_YEAR}-{dt.date.today().year})")
    return number


def sex(value: Any, name: str) -> int | None:
    code = integer(value, name)
    if code is not None and code not in SEX_CODES:
        raise FieldError("code.unknown_value", f"{name} {code} is not in code list 3101")
    return code


def hours(value: Any, name: str) -> float | None:
    return parse_hours(_number(value, name))


def service_code(value: Any, name: str) -> str:
    text = _scalar(value, name)
    try:
        return parse_service_code(text)
    except FieldError:
        raise
    except ValueError:  # a non-ASCII digit such as '²' passes isdigit() but not int()
        raise FieldError("code.unknown_service", f"service code {text!r} is not in code list 9151") from None


def org(value: Any, name: str) -> str | None:
    number = parse_org(_scalar(value, name))
    if number is not None and not number.isascii():  # '²' passes str.isdigit()
        raise FieldError("org.format", f"organisation number {number!r} is not 9 digits")
    return number


def raw(value: Any, name: str) -> str | None:
    return _scalar(value, name)


# --- the declarative layout -------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One JSON value: its path in the event, the staged column (None: used by a record rule)
    and its parser."""

    path: Path_
    target: str | None
    parse: Parser

    @functools.cached_property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class JsonKind:
    kind_value: str                              # the event's `kind`
    kind: str                                    # record kind for the sink
    table: Table
    body: str                                    # the object holding the record (`client`, ...)
    fields: tuple[Field, ...]
    person: tuple[Path_, Path_] | None = None    # (identifier path, id type path)
    period: tuple[str, str, str] | None = None   # (start target, end target, what)
    status: Path_ | None = None                  # ACTIVE/CANCELLED -> change_type
    version_key: tuple[Path_, ...] = ()          # what identifies the record across versions

    @functools.cached_property
    def _by_path(self) -> dict[Path_, Field]:
        return {f.path: f for f in self.fields}

    def field_at(self, path: Path_) -> Field:
        return self._by_path[path]

    def check(self) -> None:
        filled = [f.target for f in self.fields if f.target] + list(CONTEXT_COLUMNS)
        if self.person:
            filled += list(PERSON_COLUMNS)
            for path in self.person:
                self.field_at(path)
        if self.status:
            filled.append("change_type")
            self.field_at(self.status)
        if len(filled) != len(set(filled)) or set(filled) != set(self.table.schema):
            raise ValueError(f"kind {self.kind_value}: fills {sorted(filled)}, table {self.table.name} "
                             f"has {sorted(self.table.schema)}")


_COMMON = (
    Field(("municipality",), "unit", kommunenr),
    Field(("recordedAt",), "registered_at", timestamp),
)
_STATUS = coded({s: s for s in STATUSES})

KINDS: dict[str, JsonKind] = {
    k.kind_value: k
    for k in (
        JsonKind(
            kind_value="client",
            kind="person",
            table=EPJ_PERSONS,
            body="client",
            fields=(
                *_COMMON,
                Field(("clientId",), "user_no", required_text),
                Field(("client", "nationalId"), None, raw),
                Field(("client", "idType"), None, coded(B_ID_TYPES)),
                Field(("client", "sex"), "sex", sex),
                Field(("client", "birthYear"), "birth_year", year),
                Field(("client", "district"), "district", optional_text),
                Field(("client", "deathDate"), "death_date", iso_date),
            ),
            person=(("client", "nationalId"), ("client", "idType")),
        ),
        JsonKind(
            kind_value="service",
            kind="service",
            table=EPJ_SERVICE_VERSIONS,
            body="service",
            fields=(
                *_COMMON,
                Field(("clientId",), "user_no", required_text),
                Field(("service", "id"), "service_id", required_text),
                Field(("service", "code"), "service_code", service_code),
                Field(("service", "decisionDate"), "decision_date", iso_date),
                Field(("service", "from"), "start_date", required_date),
                Field(("service", "to"), "end_date", iso_date),
                Field(("service", "providerOrg"), "provider_org", org),
                Field(("service", "weeklyHours"), "hours_per_week", hours),
                Field(("service", "status"), None, _STATUS),
                Field(("migratedFrom", "system"), "migrated_from_system", optional_text),
                Field(("migratedFrom", "serviceId"), "migrated_from_service_id", optional_text),
            ),
            period=("start_date", "end_date", "service"),
            status=("service", "status"),
            version_key=(("service", "id"),),
        ),
        JsonKind(
            kind_value="pause",
            kind="stop",
            table=EPJ_STOPS,
            body="pause",
            fields=(
                *_COMMON,
                Field(("pause", "id"), "stop_id", required_text),
                Field(("pause", "serviceId"), "service_id", required_text),
                Field(("pause", "from"), "from_date", required_date),
                Field(("pause", "to"), "to_date", iso_date),
                Field(("pause", "status"), None, _STATUS),
            ),
            period=("from_date", "to_date", "stop"),
            status=("pause", "status"),
            version_key=(("pause", "serviceId"), ("pause", "id")),
        ),
    )
}

for _kind in KINDS.values():
    _kind.check()

# Attributes a line that is not valid JSON to a kind where its text still says which.
_KIND_HINT = re.compile(r'"kind"\s*:\s*"([a-z]+)"')


# --- reading ------------------------------------------------------------------------------------
def _get(event: dict[str, Any], path: Path_) -> Any:
    value: Any = event
    for i, key in enumerate(path):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise FieldError("record.malformed", f"{'.'.join(path[:i])} is not a JSON object")
        value = value.get(key)
    return value


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(physical line number, text without terminator); invalid UTF-8 rejects the file."""
    try:
        with path.open("rb") as handle:
            for line_no, data in enumerate(handle, start=1):
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise FileRejected("file.encoding_mismatch",
                                       f"line {line_no}: byte {data[exc.start]:#04x} is not UTF-8") from None
                if line_no == 1:
                    text = text.removeprefix("\ufeff")
                yield line_no, text.rstrip("\r\n")
    except OSError as exc:
        raise FileRejected("file.unreadable", f"{path.name}: {exc.strerror or exc}") from None


def _reject(sink: FileSink, kind: str, rejection: Rejection, line_no: int, location: str, text: str) -> None:
    masked = Rejection(rejection.rule_id, mask_identifiers(rejection.message, sink.pseudonymizer.tag))
    sink.reject(kind, masked, line_no, location, text)


class _Reader:
    def __init__(self, sink: FileSink, ctx: ReadContext):
        self.sink = sink
        self.ctx = ctx
        self.digests: set[bytes] = set()
        self.versions: set[tuple[str, tuple[str, ...]]] = set()

    def line(self, line_no: int, text: str) -> None:
        sink = self.sink
        try:
            event = json.loads(text)
        except (ValueError, RecursionError) as exc:
            hint = _KIND_HINT.search(text)
            kind = KINDS[hint.group(1)].kind if hint and hint.group(1) in KINDS else UNKNOWN_KIND
            sink.seen(kind)
            _reject(sink, kind, Rejection("record.malformed", f"not valid JSON: {exc}"),
                    line_no, f"line={line_no}", text)
            return
        if not isinstance(event, dict):
            sink.seen(UNKNOWN_KIND)
            _reject(sink, UNKNOWN_KIND, Rejection("record.malformed",
                    f"a JSON {type(event).__name__}, not an object"), line_no, f"line={line_no}", text)
            return
        layout = KINDS.get(event["kind"]) if isinstance(event.get("kind"), str) else None
        kind = layout.kind if layout else UNKNOWN_KIND
        sink.seen(kind)
        location = self.location(event, line_no)
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
        if digest in self.digests:
            _reject(sink, kind, Rejection("record.duplicate", "exact duplicate of an earlier line of this file"),
                    line_no, location, text)
            return
        self.digests.add(digest)
        try:
            if layout is None:
                value = event.get("kind")
                if value is None or value == "":
                    raise FieldError("field.missing", "required field kind is empty")
                raise FieldError("code.unknown_value",
                                 f"kind {value!r} is not one of {', '.join(KINDS)}")
            row = self.build_row(layout, event, line_no, location)
        except FieldError as exc:
            _reject(sink, kind, exc.rejection, line_no, location, text)
            return
        sink.stage(layout.table.name, kind, row)

    def location(self, event: dict[str, Any], line_no: int) -> str:
        event_id = event.get("eventId")
        if isinstance(event_id, str | int) and not isinstance(event_id, bool) and str(event_id).strip():
            return mask_identifiers(f"eventId={str(event_id).strip()}", self.sink.pseudonymizer.tag)
        return f"line={line_no}"

    def build_row(self, layout: JsonKind, event: dict[str, Any], line_no: int, location: str) -> dict[str, Any]:
        body = event.get(layout.body)
        if body is None:
            raise FieldError("field.missing", f"required object {layout.body} is missing")
        if not isinstance(body, dict):
            raise FieldError("record.malformed", f"{layout.body} is not a JSON object")
        identifier = declared = None
        if layout.person:
            id_path, type_path = layout.person
            declared = layout.field_at(type_path).parse(_get(event, type_path), layout.field_at(type_path).name)
            identifier = (_scalar(_get(event, id_path), layout.field_at(id_path).name) or "").strip().replace(" ", "")
            check = check_identifier(identifier, declared, self.ctx.allow_synthetic_ids)
            if check.rule_id is not None:
                raise FieldError(check.rule_id, check.message or check.rule_id)
        parsed: dict[str, Any] = {}
        for f in layout.fields:
            value = f.parse(_get(event, f.path), f.name)
            if f.target:
                parsed[f.target] = value
        if layout.period:
            start, end, what = layout.period
            check_period(parsed[start], parsed[end], what)
        row: dict[str, Any] = {
            "source_file": self.sink.rel_path,
            "line": line_no,
            "location": location,
            "system": self.ctx.system,
            "reporting_kommune": self.ctx.reporting_kommune,
            **parsed,
        }
        if layout.status:
            status_field = layout.field_at(layout.status)
            status = status_field.parse(_get(event, layout.status), status_field.name)
            key = (layout.kind, tuple(str(_get(event, p)).strip() for p in layout.version_key))
            if status == "CANCELLED":
                row["change_type"] = "ANNULLERT"
            else:
                row["change_type"] = "ENDRET" if key in self.versions else "NY"
            self.versions.add(key)
        if layout.person:
            row["person_key"], row["id_type"] = resolve_person(
                self.sink, identifier, declared, self.ctx.allow_synthetic_ids)
        return row


def read_epj_b_file(path: Path, sink: FileSink, ctx: ReadContext) -> None:
    """Stage one `events.jsonl` / `events-*.jsonl`; raise FileRejected if it cannot be read."""
    reader = _Reader(sink, ctx)
    for line_no, text in _lines(path):
        if not text.strip():
            continue  # blank lines are no records
        reader.line(line_no, text)
