"""A source mapping, as the ingestion code uses it once loaded and checked (`load.load_mapping`).

A mapping tells, without Python, how one EPJ export is written: its files and their format, which
records feed persons, service versions and stops, where each staged column comes from, the date
formats and time zone, the value maps, and whether the export is an audit trail (every row a version
with its registration time) or a series of full dumps (versions found by comparing the dumps).
The staged columns and their rules are the contract (`TARGETS`); a mapping only says where to look.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from transforms.ingest.values.spec import Kind, ValueSpec
from transforms.tables import EPJ_PERSONS, EPJ_SERVICE_VERSIONS, EPJ_STOPS, Table

History = Literal["audit-trail", "snapshot-series"]
FileType = Literal["csv", "jsonl", "xml"]

# change words a status map may give, and the staged change type of each
CHANGE_WORDS = {"new": "NY", "changed": "ENDRET", "annulled": "ANNULLERT", "new-or-changed": None}


@dataclass(frozen=True)
class Target:
    """A staged column a mapping can fill: its value kind and whether the mapping must fill it."""

    kind: Kind
    required: bool = False        # the value itself must not be empty (field.missing)
    must_map: bool = False        # the mapping must name a source or constant
    audit_only: bool = False      # must be mapped in an audit trail; derived from the dumps in a series


_COMMON = {
    "unit": Target("kommunenr", required=True, must_map=True),
    "registered_at": Target("timestamp", required=True, must_map=True, audit_only=True),
}

# record kind -> staged column (or person rule input) -> target
TARGETS: dict[str, dict[str, Target]] = {
    "persons": {
        **_COMMON,
        "user_no": Target("text", required=True, must_map=True),
        "national_id": Target("identifier", must_map=True),
        "id_type": Target("code"),
        "sex": Target("sex"),
        "birth_year": Target("year"),
        "district": Target("text"),
        "death_date": Target("date"),
    },
    "services": {
        **_COMMON,
        "user_no": Target("text", required=True, must_map=True),
        "service_id": Target("text", required=True, must_map=True),
        "service_code": Target("service_code", must_map=True),
        "decision_date": Target("date"),
        "start_date": Target("date", required=True, must_map=True),
        "end_date": Target("date"),
        "provider_org": Target("org"),
        "hours_per_week": Target("hours"),
        "change_type": Target("code", must_map=True, audit_only=True),
        "migrated_from_system": Target("text"),
        "migrated_from_service_id": Target("text"),
    },
    "stops": {
        **_COMMON,
        "service_id": Target("text", required=True, must_map=True),
        "stop_id": Target("text", required=True, must_map=True),
        "from_date": Target("date", required=True, must_map=True),
        "to_date": Target("date"),
        "change_type": Target("code", must_map=True, audit_only=True),
    },
}

RECORD_TABLES: dict[str, Table] = {"persons": EPJ_PERSONS, "services": EPJ_SERVICE_VERSIONS, "stops": EPJ_STOPS}
RECORD_KINDS = {"persons": "person", "services": "service", "stops": "stop"}  # the sink's record kinds
# (start, end, what) checked end >= start, as `period.end_before_start`
PERIODS = {"services": ("start_date", "end_date", "service"), "stops": ("from_date", "to_date", "stop")}
# what names one record across its versions (new-or-changed, and the dumps of a snapshot series)
RECORD_KEYS = {"persons": ("user_no",), "services": ("service_id",), "stops": ("service_id", "stop_id")}


@dataclass(frozen=True)
class Column:
    """Where one staged column comes from: a source field, or a constant."""

    target: str
    spec: ValueSpec               # the rule, named as the source names the field
    source: str | None = None     # CSV column, JSON path (a.b), XML path (@attr, Child, Child/@attr)
    constant: Any = None          # the staged value when there is no source
    default: str | None = None    # the text used when the source value is empty


@dataclass(frozen=True)
class RecordMap:
    """How one record kind (persons, services, stops) is found and read."""

    name: str                     # persons | services | stops
    file: str | None              # CSV: the file (name pattern) holding these records
    select: str | None            # JSONL: the kind field's value; XML: the record element's path
    body: str | None              # JSONL: the object every such record must carry
    location: tuple[str, ...]     # source fields that name a record in the quarantine (never an identifier)
    columns: tuple[Column, ...]   # in the order the rules are applied: the first broken rule is reported
    header_names: tuple[str, ...] = ()  # CSV without a header row: the columns in file order

    @property
    def kind(self) -> str:
        return RECORD_KINDS[self.name]

    @property
    def table(self) -> Table:
        return RECORD_TABLES[self.name]

    def column(self, target: str) -> Column | None:
        return next((c for c in self.columns if c.target == target), None)

    @property
    def sources(self) -> tuple[str, ...]:
        """Every source field the record reads, each once, in order."""
        seen: list[str] = []
        for name in (*[c.source for c in self.columns], *self.location):
            if name is not None and name not in seen:
                seen.append(name)
        return tuple(seen)


@dataclass(frozen=True)
class FileFormat:
    type: FileType
    encoding: str = "utf-8"
    files: tuple[str, ...] = ()   # name patterns of the export's files (CSV: from the records)
    delimiter: str = ";"
    header: bool = True
    decimal_comma: bool = False
    kind_field: str | None = None  # JSONL: the field that says which record kind a line holds
    date_format: str = "%Y-%m-%d"
    timestamp_format: str = "iso8601"
    time_zone: str = "Europe/Oslo"
    unknown_columns: Literal["ignore", "reject"] = "ignore"  # CSV columns the mapping does not read


@dataclass(frozen=True)
class Snapshots:
    """A series of full dumps: the dump date of each file, and what a vanished record means."""

    date_pattern: str             # regex on the file name; its first group is the date
    date_format: str              # strptime format of that group
    disappeared: Literal["end", "annul"]


@dataclass(frozen=True)
class Mapping:
    name: str
    origin: str                   # the file it was loaded from, for messages
    digest: str                   # SHA-256 of the mapping's bytes (a changed mapping re-reads its export)
    history: History
    format: FileFormat
    records: dict[str, RecordMap]
    snapshots: Snapshots | None = None
    description: str = ""
    maps: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def file_patterns(self) -> tuple[str, ...]:
        if self.format.type == "csv":
            return tuple(r.file for r in self.records.values() if r.file)
        return self.format.files

    def change_types(self, record: str) -> dict[str, str | None] | None:
        """Source status word -> staged change type (None: new for the first version, else changed)."""
        column = self.records[record].column("change_type")
        if column is None or column.spec.value_map is None:
            return None
        return {word: CHANGE_WORDS[value] for word, value in column.spec.value_map}
