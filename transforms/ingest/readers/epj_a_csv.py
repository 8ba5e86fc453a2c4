"""Reader for the `epj-a-csv` history export (spec inputs.md §3).

Three files per system folder, each an audit trail in which every row holds the whole
record after one registration: `brukere.csv` (persons), `tjenester.csv` (service versions)
and `stopp.csv` (temporary stops). Windows-1252, `;`, header row, `dd.mm.yyyy` dates,
`dd.mm.yyyy HH:MM:SS` Norwegian local timestamps, decimal comma.

Each file is described by a `CsvLayout`: which staged table it feeds, and per CSV column the
staged column and the parser. A changed layout (a renamed or added column, another date
format) is an edit of `LAYOUTS`, not of the reading loop. The columns are found by header
name, so their order in the file does not matter.

The file is read line by line as bytes; nothing holds more than one line, apart from a set
of 16-byte digests used to recognise exact duplicate rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
    parse_local_timestamp,
    parse_org,
    parse_service_code,
    required,
)
from transforms.ingest.readers.persons import resolve_person
from transforms.ingest.sink import FileSink
from transforms.privacy.identity import ID_TYPE_NAMES, check_identifier
from transforms.tables import EPJ_PERSONS, EPJ_SERVICE_VERSIONS, EPJ_STOPS, Table

ENCODING = "cp1252"
SEPARATOR = ";"
DATE_FORMAT = "%d.%m.%Y"
TIMESTAMP_FORMAT = "%d.%m.%Y %H:%M:%S"

CHANGE_TYPES = frozenset({"NY", "ENDRET", "ANNULLERT"})
# Code list 3101 (kjønn): 0 not known, 1 male, 2 female, 9 not specified.
SEX_CODES = frozenset({0, 1, 2, 9})
FIRST_YEAR = 1850  # earliest plausible birth year
# The id types this format writes (spec §3); values are code list 9032.
A_ID_TYPES = {name: ID_TYPE_NAMES[name] for name in ("FNR", "DNR", "HNR", "DUF", "ANNET")}

# Columns every EPJ row gets from the reader and the context rather than from a CSV column.
CONTEXT_COLUMNS = frozenset({"source_file", "line", "location", "system", "reporting_kommune"})
PERSON_COLUMNS = ("person_key", "id_type")

Parser = Callable[[str], Any]


# Dates repeat across rows (decision and start dates); strptime is the costliest step per row.
# FieldErrors are not cached, so a bad value is re-checked (and rejected) every time.
_cached_date = functools.lru_cache(maxsize=1 << 16)(parse_date)


# --- parsers: text of one field -> value, or FieldError ---------------------------------------
def optional_text(name: str) -> Parser:
    def parse(value: str) -> str | None:
        return value.strip() or None
    return parse


def required_text(name: str) -> Parser:
    def parse(value: str) -> str:
        return required(value, name)
    return parse


def kommunenr(name: str) -> Parser:
    def parse(value: str) -> str:
        text = required(value, name)
        if len(text) != 4 or not (text.isascii() and text.isdigit()):
            raise FieldError("code.unknown_value", f"{name} {text!r} is not a four-digit kommunenummer")
        return text
    return parse


def coded(name: str, mapping: dict[str, Any]) -> Parser:
    """A required value from a closed list; `mapping` gives the staged value of each."""
    def parse(value: str) -> Any:
        text = required(value, name).upper()
        if text not in mapping:
            raise FieldError("code.unknown_value", f"{name} {text!r} is not one of {', '.join(mapping)}")
        return mapping[text]
    return parse


def date(name: str, fmt: str = DATE_FORMAT, *, mandatory: bool = False) -> Parser:
    def parse(value: str):
        if mandatory:
            required(value, name)
        return _cached_date(value, fmt, name)
    return parse


def local_timestamp(name: str, fmt: str = TIMESTAMP_FORMAT) -> Parser:
    def parse(value: str):
        text = required(value, name)
        try:
            return parse_local_timestamp(text, fmt, name)
        except OverflowError:  # year 1 or 9999 shifted out of range by the UTC conversion
            raise FieldError("date.unparseable", f"{name} {text!r} is out of range") from None
    return parse


def year(name: str) -> Parser:
    def parse(value: str) -> int | None:
        number = parse_int(value, name)
        if number is not None and not FIRST_YEAR <= number <= dt.date.today().year:
            raise FieldError("number.unparseable",
                             f"{name} {number} is not a plausible year ({FIRST_YEAR}-{dt.date.today().year})")
        return number
    return parse


def sex(name: str) -> Parser:
    def parse(value: str) -> int | None:
        code = parse_int(value, name)
        if code is not None and code not in SEX_CODES:
            raise FieldError("code.unknown_value", f"{name} {code} is not in code list 3101")
        return code
    return parse


def hours(value: str) -> float | None:
    return parse_hours(value, decimal_comma=True)


def service_code(value: str) -> str:
    try:
        return parse_service_code(value)
    except FieldError:
        raise
    except ValueError:  # a non-ASCII digit such as '²' passes isdigit() but not int()
        raise FieldError("code.unknown_service", f"service code {value.strip()!r} is not in code list 9151") from None


def org(value: str) -> str | None:
    number = parse_org(value)
    if number is not None and not number.isascii():  # '²' passes str.isdigit()
        raise FieldError("org.format", f"organisation number {number!r} is not 9 digits")
    return number


def raw(value: str) -> str:
    """Kept as read; consumed by a record rule (the person identifier)."""
    return value


# --- the declarative layout -------------------------------------------------------------------
@dataclass(frozen=True)
class Col:
    """One CSV column: its header name, the staged column it fills (None: used by a record
    rule only) and its parser."""

    source: str
    target: str | None
    parse: Parser


@dataclass(frozen=True)
class CsvLayout:
    file_name: str
    kind: str                                   # record kind for the sink: person, service, stop
    table: Table
    columns: tuple[Col, ...]
    location: tuple[str, ...]                   # source columns that name a record (never an id!)
    person: tuple[str, str] | None = None       # (identifier column, id type column)
    period: tuple[str, str, str] | None = None  # (start target, end target, what) checked end >= start
    constants: dict[str, Any] = field(default_factory=dict)  # staged columns this format never fills

    @property
    def header(self) -> tuple[str, ...]:
        return tuple(c.source for c in self.columns)

    def check(self) -> None:
        """The layout must fill exactly the staged table's columns (checked at import)."""
        filled = [c.target for c in self.columns if c.target] + list(self.constants) + list(CONTEXT_COLUMNS)
        if self.person:
            filled += list(PERSON_COLUMNS)
            if not set(self.person) <= set(self.header):
                raise ValueError(f"{self.file_name}: person columns {self.person} not in the layout")
        if len(filled) != len(set(filled)) or set(filled) != set(self.table.schema):
            raise ValueError(f"{self.file_name}: fills {sorted(filled)}, table {self.table.name} "
                             f"has {sorted(self.table.schema)}")
        if self.period and not {self.period[0], self.period[1]} <= set(filled):
            raise ValueError(f"{self.file_name}: period columns {self.period[:2]} not filled")
        if not set(self.location) <= set(self.header) or (self.person and self.person[0] in self.location):
            raise ValueError(f"{self.file_name}: bad location columns {self.location}")


LAYOUTS: dict[str, CsvLayout] = {
    layout.file_name: layout
    for layout in (
        CsvLayout(
            file_name="brukere.csv",
            kind="person",
            table=EPJ_PERSONS,
            columns=(
                Col("kommunenr", "unit", kommunenr("kommunenr")),
                Col("brukernr", "user_no", required_text("brukernr")),
                Col("fnr", None, raw),
                Col("id_type", None, coded("id_type", A_ID_TYPES)),
                Col("kjonn", "sex", sex("kjonn")),
                Col("fodselsar", "birth_year", year("fodselsar")),
                Col("bydel", "district", optional_text("bydel")),
                Col("dodsdato", "death_date", date("dodsdato")),
                Col("registrert_tid", "registered_at", local_timestamp("registrert_tid")),
            ),
            location=("brukernr",),
            person=("fnr", "id_type"),
        ),
        CsvLayout(
            file_name="tjenester.csv",
            kind="service",
            table=EPJ_SERVICE_VERSIONS,
            columns=(
                Col("kommunenr", "unit", kommunenr("kommunenr")),
                Col("brukernr", "user_no", required_text("brukernr")),
                Col("tjenesteid", "service_id", required_text("tjenesteid")),
                Col("tjenestetype", "service_code", service_code),
                Col("vedtaksdato", "decision_date", date("vedtaksdato")),
                Col("fra_dato", "start_date", date("fra_dato", mandatory=True)),
                Col("til_dato", "end_date", date("til_dato")),
                Col("utforer_orgnr", "provider_org", org),
                Col("timer_per_uke", "hours_per_week", hours),
                Col("registrert_tid", "registered_at", local_timestamp("registrert_tid")),
                Col("endringstype", "change_type", coded("endringstype", {c: c for c in CHANGE_TYPES})),
            ),
            location=("tjenesteid",),
            period=("start_date", "end_date", "service"),
            constants={"migrated_from_system": None, "migrated_from_service_id": None},
        ),
        CsvLayout(
            file_name="stopp.csv",
            kind="stop",
            table=EPJ_STOPS,
            columns=(
                Col("kommunenr", "unit", kommunenr("kommunenr")),
                Col("tjenesteid", "service_id", required_text("tjenesteid")),
                Col("stoppid", "stop_id", required_text("stoppid")),
                Col("fra_dato", "from_date", date("fra_dato", mandatory=True)),
                Col("til_dato", "to_date", date("til_dato")),
                Col("registrert_tid", "registered_at", local_timestamp("registrert_tid")),
                Col("endringstype", "change_type", coded("endringstype", {c: c for c in CHANGE_TYPES})),
            ),
            location=("tjenesteid", "stoppid"),
            period=("from_date", "to_date", "stop"),
        ),
    )
}

for _layout in LAYOUTS.values():
    _layout.check()


# --- reading ------------------------------------------------------------------------------------
def _decode(data: bytes, line_no: int) -> str:
    """One line's bytes as cp1252 text; bytes that are not cp1252 reject the whole file.

    Besides the five byte values cp1252 leaves undefined, a NUL byte (UTF-16) and a line whose
    non-ASCII bytes form valid UTF-8 (a UTF-8 file, BOM included, which cp1252 would silently
    turn into mojibake such as 'StrÃ¸msÃ¸') count as an encoding mismatch.
    """
    if b"\x00" in data:
        raise FileRejected("file.encoding_mismatch", f"line {line_no} holds NUL bytes: not a {ENCODING} file")
    try:
        text = data.decode(ENCODING)
    except UnicodeDecodeError as exc:
        raise FileRejected("file.encoding_mismatch",
                           f"line {line_no}: byte {data[exc.start]:#04x} is not {ENCODING}") from None
    if not text.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return text
        raise FileRejected("file.encoding_mismatch",
                           f"line {line_no} is UTF-8 encoded, the format is {ENCODING}")
    return text


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(physical line number, text without its line terminator), streamed."""
    try:
        with path.open("rb") as handle:
            for line_no, data in enumerate(handle, start=1):
                yield line_no, _decode(data.rstrip(b"\r\n"), line_no)
    except OSError as exc:
        raise FileRejected("file.unreadable", f"{path.name}: {exc.strerror or exc}") from None


def _split(text: str) -> list[str]:
    return next(csv.reader((text,), delimiter=SEPARATOR, strict=False))


def _check_header(layout: CsvLayout, names: list[str]) -> tuple[dict[str, int], int]:
    """(header name -> field index, field count of a row); the header must hold exactly the
    layout's columns. Trailing empty names (a header ending in `;`) are allowed: rows then end
    in as many empty fields."""
    names = [n.strip().lower() for n in names]
    width = len(names)
    while names and not names[-1]:
        names.pop()
    expected = layout.header
    missing = [c for c in expected if c not in names]
    extra = [n or "(empty name)" for n in names if n not in expected]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if missing or extra or doubled:
        parts = []
        if missing:
            parts.append(f"missing columns {', '.join(missing)}")
        if extra:
            parts.append(f"unknown columns {', '.join(extra)}")
        if doubled:
            parts.append(f"repeated columns {', '.join(doubled)}")
        raise FileRejected("file.unknown_layout",
                           f"{layout.file_name}: header does not match the epj-a-csv layout: {'; '.join(parts)}")
    return {name: names.index(name) for name in expected}, width


def _location(layout: CsvLayout, values: dict[str, str], sink: FileSink) -> str:
    text = ",".join(f"{c}={values[c].strip()}" for c in layout.location)
    # Belt and braces: an identifier typed into an id column must not reach `location`.
    return mask_identifiers(text, sink.pseudonymizer.tag)


def _reject(sink: FileSink, kind: str, rejection: Rejection, line_no: int, location: str, text: str) -> None:
    # Messages quote field values; mask any identifier in them as the sink does for raw values.
    masked = Rejection(rejection.rule_id, mask_identifiers(rejection.message, sink.pseudonymizer.tag))
    sink.reject(kind, masked, line_no, location, text)


def _build_row(layout: CsvLayout, values: dict[str, str], sink: FileSink, ctx: ReadContext,
               line_no: int, location: str) -> dict[str, Any]:
    """The staged row for one record, or FieldError. The identifier is checked first (its
    rule wins) and registered in the vault only once the whole record is valid."""
    parsed: dict[str, Any] = {}
    identifier = declared = None
    if layout.person:
        id_col, type_col = layout.person
        declared = next(c for c in layout.columns if c.source == type_col).parse(values[type_col])
        identifier = values[id_col].strip().replace(" ", "")
        check = check_identifier(identifier, declared, ctx.allow_synthetic_ids)
        if check.rule_id is not None:
            raise FieldError(check.rule_id, check.message or check.rule_id)
    for col in layout.columns:
        value = col.parse(values[col.source])
        if col.target:
            parsed[col.target] = value
    if layout.period:
        start, end, what = layout.period
        check_period(parsed[start], parsed[end], what)
    row: dict[str, Any] = {
        "source_file": sink.rel_path,
        "line": line_no,
        "location": location,
        "system": ctx.system,
        "reporting_kommune": ctx.reporting_kommune,
        **layout.constants,
        **parsed,
    }
    if layout.person:
        row["person_key"], row["id_type"] = resolve_person(sink, identifier, declared, ctx.allow_synthetic_ids)
    return row


def read_epj_a_file(path: Path, sink: FileSink, ctx: ReadContext) -> None:
    """Stage one `brukere.csv`, `tjenester.csv` or `stopp.csv`; raise FileRejected if it cannot be read."""
    layout = LAYOUTS.get(path.name.lower())
    if layout is None:
        raise FileRejected("file.unknown_layout",
                           f"{path.name!r} is not an epj-a-csv file (expected one of {', '.join(LAYOUTS)})")
    lines = _lines(path)
    header = next(lines, None)
    if header is None or not header[1].strip():
        raise FileRejected("file.unreadable", f"{path.name}: empty file or empty header line")
    index, width = _check_header(layout, _split(header[1]))
    digests: set[bytes] = set()
    for line_no, text in lines:
        if not text.strip():
            continue  # a blank line is no record
        sink.seen(layout.kind)
        fields = _split(text)
        if len(fields) != width or any(f.strip() for f in fields[len(index):]):
            problem = (f"{len(fields)} fields, the header has {width}" if len(fields) != width
                       else "a value in a column the header does not name")
            _reject(sink, layout.kind, Rejection("record.malformed", problem), line_no, f"line={line_no}", text)
            continue
        values = {name: fields[i] for name, i in index.items()}
        location = _location(layout, values, sink)
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
        if digest in digests:
            _reject(sink, layout.kind, Rejection("record.duplicate",
                    "exact duplicate of an earlier row of this file"), line_no, location, text)
            continue
        digests.add(digest)
        try:
            row = _build_row(layout, values, sink, ctx, line_no, location)
        except FieldError as exc:
            _reject(sink, layout.kind, exc.rejection, line_no, location, text)
            continue
        sink.stage(layout.table.name, layout.kind, row)
