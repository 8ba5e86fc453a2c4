"""Reading a source mapping (TOML) and checking it before a single record is read.

Every mistake a person can make in a mapping (an unknown key, a staged column that does not exist,
a required column left out, a value map that names no code of its code list, a time zone that does
not exist) stops the load with `MappingError`, whose message names the file and the key. The keys
are documented in `docs/source-mappings.md`.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
import zoneinfo
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from transforms.core.config import BUNDLED_MAPPINGS, ConfigError, bundled_mapping_names
from transforms.ingest.mapping.model import (
    CHANGE_WORDS,
    TARGETS,
    Column,
    FileFormat,
    Mapping,
    RecordMap,
    Snapshots,
    Target,
)
from transforms.ingest.values import scalar
from transforms.ingest.values.fields import FieldError
from transforms.ingest.values.spec import ValueSpec
from transforms.reference.codes import service_codes

_TOP = {"mapping", "format", "snapshots", "maps", "records"}
_MAPPING_KEYS = {"name", "description", "history"}
_FORMAT_KEYS = {"type", "encoding", "files", "delimiter", "header", "decimal_comma", "kind_field", "date_format",
                "timestamp_format", "time_zone", "unknown_columns"}
_SNAPSHOT_KEYS = {"dump_date", "dump_date_format", "disappeared"}
_RECORD_KEYS = {"file", "kind", "object", "path", "location", "header_names", "columns"}
_COLUMN_KEYS = {"from", "map", "default", "constant", "format"}
_ID_TYPES = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12})  # code list 9032
_SEX = frozenset({0, 1, 2, 9})  # code list 3101


class MappingError(ConfigError):
    """A source mapping is wrong; the message names the file and the key."""


def load_mapping(reference: str, data_root: Path | None = None) -> Mapping:
    """A bundled mapping by name, or a mapping file (relative to the data root, or absolute)."""
    if reference in bundled_mapping_names():
        raw = resources.files(BUNDLED_MAPPINGS).joinpath(f"{reference}.toml").read_bytes()
        return _parse(f"{reference} (bundled)", raw)
    path = Path(reference)
    if not path.is_absolute() and data_root is not None:
        path = data_root / path
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MappingError(f"{path}: cannot read the mapping ({exc.strerror or exc}); bundled mappings are "
                           f"{', '.join(bundled_mapping_names())}") from None
    return _parse(str(path), raw)


@cache
def _parse(origin: str, raw: bytes) -> Mapping:
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MappingError(f"{origin}: not valid TOML: {exc}") from None
    return _Loader(origin, data).mapping(hashlib.sha256(raw).hexdigest())


class _Loader:
    def __init__(self, origin: str, data: dict[str, Any]):
        self.origin = origin
        self.data = data

    def fail(self, where: str, message: str) -> MappingError:
        return MappingError(f"{self.origin}: [{where}] {message}")

    def table(self, where: str, value: Any, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "must be a table")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(where, f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
        return value

    def get(self, where: str, table: dict, key: str, kind: type | tuple[type, ...], default: Any = None,
            choices: tuple | None = None) -> Any:
        value = table.get(key, default)
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is str and not value):
            raise self.fail(where, f"{key} = {value!r} must be a {getattr(kind, '__name__', kind)}")
        if choices is not None and value not in choices:
            raise self.fail(where, f"{key} = {value!r} is not one of {', '.join(map(str, choices))}")
        return value

    # --- sections ------------------------------------------------------------------------------
    def mapping(self, digest: str) -> Mapping:
        self.table("top level", self.data, _TOP)
        head = self.table("mapping", self.data.get("mapping", {}), _MAPPING_KEYS)
        name = self.get("mapping", head, "name", str) or Path(self.origin.split(" ")[0]).stem
        history = self.get("mapping", head, "history", str, "audit-trail", ("audit-trail", "snapshot-series"))
        fmt = self.file_format()
        maps = self.maps()
        snapshots = self.snapshots(history)
        raw_records = self.table("records", self.data.get("records", {}), set(TARGETS))
        if not raw_records:
            raise self.fail("records", "no record kinds: give at least [records.services]")
        records = {name_: self.record(name_, body, fmt, maps, history) for name_, body in raw_records.items()}
        if fmt.type == "jsonl" and not fmt.kind_field and len(records) > 1:
            raise self.fail("format", "kind_field is required when a JSON Lines file holds several record kinds")
        return Mapping(name=name, origin=self.origin, digest=digest, history=history, format=fmt,
                       records=records, snapshots=snapshots, description=head.get("description", ""), maps=maps)

    def file_format(self) -> FileFormat:
        raw = self.table("format", self.data.get("format", {}), _FORMAT_KEYS)
        ftype = self.get("format", raw, "type", str, None, ("csv", "jsonl", "xml"))
        if ftype is None:
            raise self.fail("format", "type is required: csv, jsonl or xml")
        encoding = self.get("format", raw, "encoding", str, "utf-8")
        try:
            "".encode(encoding)
        except LookupError:
            raise self.fail("format", f"encoding = {encoding!r} is not an encoding Python knows") from None
        files = tuple(self.get("format", raw, "files", list, []))
        if ftype != "csv" and not files:
            raise self.fail("format", "files is required: the name patterns of the export's files, e.g. "
                                      "[\"events*.jsonl\"]")
        zone = self.get("format", raw, "time_zone", str, "Europe/Oslo")
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise self.fail("format", f"time_zone = {zone!r} is not a time zone (e.g. Europe/Oslo)") from None
        delimiter = self.get("format", raw, "delimiter", str, ";")
        if len(delimiter) != 1:
            raise self.fail("format", f"delimiter = {delimiter!r} must be one character")
        return FileFormat(
            unknown_columns=self.get("format", raw, "unknown_columns", str, "ignore", ("ignore", "reject")),
            type=ftype, encoding=encoding, files=files, delimiter=delimiter,
            header=self.get("format", raw, "header", bool, True),
            decimal_comma=self.get("format", raw, "decimal_comma", bool, False),
            kind_field=self.get("format", raw, "kind_field", str),
            date_format=self.date_format("format", raw, "date_format", "%Y-%m-%d"),
            timestamp_format=self.date_format("format", raw, "timestamp_format", "iso8601"),
            time_zone=zone,
        )

    def date_format(self, where: str, table: dict, key: str, default: str) -> str:
        value = self.get(where, table, key, str, default)
        if value != "iso8601" and "%" not in value:
            raise self.fail(where, f"{key} = {value!r} is not a strptime format such as '%d.%m.%Y'")
        return value

    def snapshots(self, history: str) -> Snapshots | None:
        raw = self.data.get("snapshots")
        if history != "snapshot-series":
            if raw is not None:
                raise self.fail("snapshots", "only a mapping with history = \"snapshot-series\" has dumps")
            return None
        raw = self.table("snapshots", raw or {}, _SNAPSHOT_KEYS)
        pattern = self.get("snapshots", raw, "dump_date", str)
        if pattern is None:
            raise self.fail("snapshots", "dump_date is required: a regex on the file name whose first group "
                                         "is the dump's date, e.g. 'dump-(\\d{8})\\.xml'")
        try:
            if re.compile(pattern).groups < 1:
                raise self.fail("snapshots", f"dump_date = {pattern!r} has no group around the date")
        except re.error as exc:
            raise self.fail("snapshots", f"dump_date = {pattern!r} is not a regex: {exc}") from None
        disappeared = self.get("snapshots", raw, "disappeared", str, None, ("end", "annul"))
        if disappeared is None:
            raise self.fail("snapshots", "disappeared is required: \"end\" (the record ended on the dump date) "
                                         "or \"annul\" (it never existed)")
        return Snapshots(pattern, self.date_format("snapshots", raw, "dump_date_format", "%Y-%m-%d"), disappeared)

    def maps(self) -> dict[str, dict[str, Any]]:
        raw = self.data.get("maps", {})
        if not isinstance(raw, dict):
            raise self.fail("maps", "must be a table of tables")
        out = {}
        for name, table in raw.items():
            if not isinstance(table, dict) or not table:
                raise self.fail(f"maps.{name}", "must be a table of source value = staged value")
            out[name] = {str(k).strip().upper(): v for k, v in table.items()}
        return out

    # --- records -------------------------------------------------------------------------------
    def record(self, name: str, body: Any, fmt: FileFormat, maps: dict, history: str) -> RecordMap:
        where = f"records.{name}"
        raw = self.table(where, body, _RECORD_KEYS)
        need = {"csv": "file", "jsonl": "kind", "xml": "path"}[fmt.type]
        if fmt.type == "jsonl" and not fmt.kind_field:
            need = None
        if need and not raw.get(need):
            raise self.fail(where, f"{need} is required for a {fmt.type} export")
        columns_raw = self.table(f"{where}.columns", raw.get("columns", {}), set(TARGETS[name]))
        columns = tuple(self.column(f"{where}.columns", name, target, value, fmt, maps)
                        for target, value in columns_raw.items())
        mapped = {c.target for c in columns}
        for target, spec in TARGETS[name].items():
            if spec.must_map and target not in mapped and not (spec.audit_only and history == "snapshot-series"):
                raise self.fail(f"{where}.columns", f"{target} is required (a source field or a constant)")
        location = tuple(self.get(where, raw, "location", list, []))
        identifier = next((c.source for c in columns if c.target == "national_id"), None)
        if identifier is not None and identifier in location:
            raise self.fail(where, f"location names {identifier!r}, the person identifier: it would reach "
                                   "the quarantine")
        return RecordMap(name=name, file=raw.get("file"), select=raw.get("kind") or raw.get("path"),
                         body=raw.get("object"), location=location, columns=columns,
                         header_names=tuple(self.get(where, raw, "header_names", list, [])))

    def column(self, where: str, record: str, target: str, value: Any, fmt: FileFormat, maps: dict) -> Column:
        here = f"{where}] [{target}"
        spec_of = TARGETS[record][target]
        if isinstance(value, str):
            value = {"from": value}
        entry = self.table(here, value, _COLUMN_KEYS)
        source = self.get(here, entry, "from", str)
        if ("constant" in entry) == (source is not None):
            raise self.fail(here, "give either from = \"<source field>\" or constant = <value>")
        value_map = self.value_map(here, target, spec_of, entry.get("map"), maps)
        kind_format = entry.get("format")
        spec = ValueSpec(
            kind=spec_of.kind, name=_message_name(source or target), required=spec_of.required,
            date_format=kind_format if spec_of.kind == "date" and kind_format else fmt.date_format,
            timestamp_format=kind_format if spec_of.kind == "timestamp" and kind_format else fmt.timestamp_format,
            time_zone=fmt.time_zone, decimal_comma=fmt.decimal_comma, value_map=value_map,
            json=fmt.type == "jsonl",
        )
        default = entry.get("default")
        if default is not None and not isinstance(default, str | int | float):
            raise self.fail(here, f"default = {default!r} must be a string or number")
        constant = None
        if "constant" in entry:
            try:
                constant = scalar.apply(ValueSpec(**{**spec.__dict__, "json": False}), str(entry["constant"]))
            except FieldError as exc:
                raise self.fail(here, f"constant = {entry['constant']!r}: {exc}") from None
        return Column(target=target, spec=spec, source=source, constant=constant,
                      default=None if default is None else str(default))

    def value_map(self, here: str, target: str, spec_of: Target, name: Any, maps: dict
                  ) -> tuple[tuple[str, Any], ...] | None:
        if name is None:
            if spec_of.kind == "code":
                raise self.fail(here, "map is required: the value map from the export's words to "
                                      + ("code list 9032" if target == "id_type" else "new, changed, annulled"))
            return None
        if spec_of.kind not in ("code", "sex", "service_code"):
            raise self.fail(here, f"map: {target} takes no value map")
        if name not in maps:
            raise self.fail(here, f"map = {name!r}: there is no [maps.{name}]")
        table = maps[name]
        for word, value in table.items():
            problem = _bad_map_value(target, spec_of, value)
            if problem:
                raise self.fail(f"maps.{name}", f"{word} = {value!r}: {problem}")
        if target == "service_code":
            return tuple((w, str(v)) for w, v in table.items())
        return tuple(table.items())


def _message_name(source: str) -> str:
    """How messages name a field: XML attributes without their '@'."""
    return source.replace("@", "")


def _bad_map_value(target: str, spec: Target, value: Any) -> str | None:
    if target == "id_type":
        return None if isinstance(value, int) and value in _ID_TYPES else "not a code of code list 9032"
    if target == "change_type":
        return None if value in CHANGE_WORDS else f"not one of {', '.join(CHANGE_WORDS)}"
    if spec.kind == "service_code":
        return None if str(value) in service_codes() else "not a code of code list 9151"
    if spec.kind == "sex":
        return None if isinstance(value, int) and value in _SEX else "not a code of code list 3101"
    return None
