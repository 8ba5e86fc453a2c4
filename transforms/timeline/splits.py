"""Assigning the records of split units to their successors, once per build, before the batches.

Snillfjord and Tysfjord (2020) and Ålesund 1507 (2024) were divided between several of today's
municipalities (`reference.successions`). Their yearly extracts, and the EPJ records filed under
them, hold the records of every successor; each record goes to one of them, by the first rule that
places it (issue 15):
1. `override`: an analyst's `[[splits.override]]` for the person and unit (`config/settings.toml`);
2. `configuration`: the one successor whose EPJ configuration holds the record's system and unit;
3. `continuation`: the one successor whose own later records continue the service (the same person
   and service code, active on the split date or starting within the switch window after it);
4. `default`: the split's default successor (`[splits.default]`, else the succession table's).
A record whose default successor is not configured in the data root is `unassigned`. Every record
is listed with its rule (`SPLIT_ASSIGNMENTS`); `split_defaults` in the warehouse lists those placed
by the default or left unassigned.

The decision reads only the split families' own files, once: the batches then look the successor
up per staged row (yearly extracts) or per record (EPJ), and need not be built together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from transforms.core import duck
from transforms.core.config import ConfigError, Municipality, load_kommuner
from transforms.core.settings import Settings
from transforms.reference.municipalities import municipality_codes
from transforms.reference.successions import split_of
from transforms.tables import MUNICIPALITY_CODES, SPLIT_ASSIGNMENTS
from transforms.timeline.coverage import epj_system_frame
from transforms.timeline.episodes import EPISODES_SQL, STOPS_SQL
from transforms.timeline.records import (
    CODE29,
    EPJ_VERSION_KEY,
    EVIDENCE_JOIN,
    PERSONS_SQL,
    RECORD_ROWS_SQL,
    RECORDS_FROM_ROWS_SQL,
)
from transforms.timeline.sql import run_script
from transforms.timeline.staged import register_staged

RULES = ("override", "configuration", "continuation", "default", "unassigned")
SPLIT_INPUTS = ("iplos_services", "iplos_persons", "epj_service_versions", "epj_persons")

SPLIT_UNITS_SCHEMA = {"unit": pl.Utf8, "divided": pl.Utf8, "split_date": pl.Date, "candidates": pl.List(pl.Utf8),
                      "default_successor": pl.Utf8}
OVERRIDES_SCHEMA = {"divided": pl.Utf8, "person_key": pl.Utf8, "kommune": pl.Utf8}


def split_units(settings: Settings) -> pl.DataFrame:
    """(unit, divided, split_date, candidates, default_successor) for every split code with a configured successor.

    `candidates` are the split's successors configured in the data root; `default_successor` is the
    configured default (`[splits.default]`, else the table's), null when that successor is not configured.
    """
    configured = {m.nr for m in load_kommuner(settings.root.kommuner_toml)}
    for unit, successor in settings.splits.default.items():
        split = split_of(unit)
        if split is None or successor not in split.successors:
            raise ConfigError(f"{settings.root.settings_toml}: [splits.default] {unit} = {successor!r}: "
                              f"{unit} is not a split unit with successor {successor}")
    rows = []
    for code in municipality_codes().filter(pl.col("split"))["code"].to_list():
        split = split_of(code)
        candidates = sorted(set(split.successors) & configured)  # type: ignore[union-attr]
        if not candidates:
            continue
        default = settings.splits.default.get(split.unit, split.default)  # type: ignore[union-attr]
        rows.append({"unit": code, "divided": split.unit, "split_date": split.date,  # type: ignore[union-attr]
                     "candidates": candidates, "default_successor": default if default in configured else None})
    return pl.DataFrame(rows, schema=SPLIT_UNITS_SCHEMA)


def split_overrides(settings: Settings) -> pl.DataFrame:
    """The analyst's moves, by divided unit and person (each person and unit once)."""
    rows, seen = [], set()
    for override in settings.splits.override:
        split = split_of(override.unit)
        where = f"{settings.root.settings_toml}: [[splits.override]] unit {override.unit}, {override.person_key}"
        if split is None or override.kommune not in split.successors:
            raise ConfigError(f"{where}: {override.kommune} is not a successor of a split unit {override.unit}")
        if (split.unit, override.person_key) in seen:
            raise ConfigError(f"{where}: the person is moved twice for the same split")
        seen.add((split.unit, override.person_key))
        rows.append({"divided": split.unit, "person_key": override.person_key, "kommune": override.kommune})
    return pl.DataFrame(rows, schema=OVERRIDES_SCHEMA)


SPLITS_SQL = f"""
-- the staged service rows of split units, each with the record it belongs to within its divided unit
CREATE OR REPLACE TABLE split_iplos AS
WITH rows AS (
    SELECT u.divided, s.unit, s.source_file, s.line, s.layout, s.data_year, s.service_id, s.start_date,
           s.end_date, coalesce(a.person_key, s.person_key) AS person_key,
           {CODE29.format(c="s.service_code")} AS service_code
    FROM iplos_services s
    JOIN split_units u ON u.unit = s.unit
    LEFT JOIN person_alias a ON a.alias = s.person_key
)
SELECT *, coalesce(CASE WHEN layout = '3.7' THEN 'i37:' || divided || ':' || service_id || ':' || person_key
                        ELSE 'i36:' || divided || ':' || person_key || ':' || service_code || ':'
                             || strftime(start_date, '%Y-%m-%d') END,
                   'row:' || source_file || ':' || line) AS record_id
FROM rows;

-- EPJ records whose current version is filed under a split unit (a record that went on under the
-- successor's own number is that successor's)
CREATE OR REPLACE TABLE split_epj AS
WITH touched AS (
    SELECT DISTINCT system, service_id FROM epj_service_versions
    WHERE service_id IS NOT NULL AND unit IN (SELECT unit FROM split_units)
), history AS (
    SELECT reporting_kommune, system, service_id,
           arg_max({{'unit': unit, 'user_no': user_no, 'code': service_code, 'start_date': start_date,
                    'end_date': end_date}}, {EPJ_VERSION_KEY}) AS c
    FROM epj_service_versions SEMI JOIN touched USING (system, service_id)
    GROUP BY reporting_kommune, system, service_id
)
SELECT u.divided, h.c.unit AS unit, h.reporting_kommune, h.system, h.service_id,
       'epj:' || h.system || ':' || h.service_id AS record_id,
       coalesce(a.person_key, e.person_key) AS person_key, {CODE29.format(c="h.c.code")} AS service_code,
       h.c.start_date AS start_date, h.c.end_date AS end_date
FROM history h
JOIN split_units u ON u.unit = h.c.unit
LEFT JOIN epj_user e ON e.kommune = h.reporting_kommune AND e.system = h.system AND e.user_no = h.c.user_no
LEFT JOIN person_alias a ON a.alias = e.person_key;

CREATE OR REPLACE TABLE split_records AS
WITH records AS (
    SELECT record_id, 'iplos' AS kind, divided, NULL::VARCHAR AS system, arg_max(unit, data_year) AS unit,
           first(person_key) AS person_key, arg_max(service_code, data_year) AS service_code,
           min(start_date) AS start_date, arg_max({{'e': end_date}}, data_year).e AS end_date
    FROM split_iplos GROUP BY record_id, divided
    UNION ALL
    SELECT record_id, 'epj', divided, system, unit, person_key, service_code, start_date, end_date FROM split_epj
)
SELECT r.*, u.split_date, u.candidates, u.default_successor
FROM records r JOIN (SELECT DISTINCT divided, split_date, candidates, default_successor FROM split_units) u
  USING (divided);

-- rule 2: the successors' own later records of the same person and service
CREATE OR REPLACE TABLE split_continuations AS
WITH wanted AS (
    SELECT DISTINCT divided, split_date, unnest(candidates) AS kommune FROM split_units
), persons AS (
    SELECT DISTINCT person_key FROM split_records WHERE person_key IS NOT NULL
), later AS (
    SELECT m.reporting_kommune AS kommune, coalesce(a.person_key, s.person_key) AS person_key,
           {CODE29.format(c="s.service_code")} AS service_code, s.start_date, s.end_date
    FROM iplos_services s
    JOIN municipality_codes m ON m.code = s.unit AND NOT m.split
    LEFT JOIN person_alias a ON a.alias = s.person_key
    WHERE coalesce(a.person_key, s.person_key) IN (SELECT person_key FROM persons)
    UNION ALL
    -- an EPJ row counts for the municipality of the unit it is filed under (a holder's export may hold a
    -- successor's own number); an annulled service never existed, so it continues nothing
    SELECT m.reporting_kommune, coalesce(a.person_key, e.person_key), {CODE29.format(c="v.service_code")},
           v.start_date, v.end_date
    FROM epj_service_versions v
    JOIN municipality_codes m ON m.code = v.unit AND NOT m.split
    JOIN epj_user e ON e.kommune = v.reporting_kommune AND e.system = v.system AND e.user_no = v.user_no
    LEFT JOIN person_alias a ON a.alias = e.person_key
    WHERE coalesce(a.person_key, e.person_key) IN (SELECT person_key FROM persons)
      AND NOT EXISTS (SELECT 1 FROM epj_service_versions x WHERE x.system = v.system
                      AND x.service_id = v.service_id AND x.change_type = 'ANNULLERT')
)
SELECT r.record_id, list(DISTINCT w.kommune ORDER BY w.kommune) AS continuing
FROM split_records r
JOIN wanted w ON w.divided = r.divided
JOIN later l ON l.kommune = w.kommune AND l.person_key = r.person_key AND l.service_code = r.service_code
 AND l.start_date <= r.split_date + $switch_window AND (l.end_date IS NULL OR l.end_date >= r.split_date)
WHERE r.end_date IS NULL OR r.end_date >= r.split_date - $switch_window
GROUP BY r.record_id;

-- rule 1: the successors whose EPJ configuration holds the record's system and unit
CREATE OR REPLACE TABLE split_holders AS
SELECT r.record_id, list(DISTINCT s.kommune ORDER BY s.kommune) AS holders
FROM split_records r
JOIN epj_systems s ON s.system = r.system AND (s.units IS NULL OR list_contains(s.units, r.unit))
 AND list_contains(r.candidates, s.kommune)
WHERE r.kind = 'epj'
GROUP BY r.record_id;

CREATE OR REPLACE TABLE split_decided AS
WITH decided AS (
    SELECT r.*, o.kommune AS override, h.holders, c.continuing
    FROM split_records r
    LEFT JOIN split_overrides o ON o.divided = r.divided AND o.person_key = r.person_key
     AND list_contains(r.candidates, o.kommune)
    LEFT JOIN split_holders h USING (record_id)
    LEFT JOIN split_continuations c USING (record_id)
)
SELECT * EXCLUDE (override, holders, continuing),
       CASE WHEN override IS NOT NULL THEN override WHEN len(holders) = 1 THEN holders[1]
            WHEN len(continuing) = 1 THEN continuing[1] ELSE default_successor END AS kommune,
       CASE WHEN override IS NOT NULL THEN 'override' WHEN len(holders) = 1 THEN 'configuration'
            WHEN len(continuing) = 1 THEN 'continuation' WHEN default_successor IS NOT NULL THEN 'default'
            ELSE 'unassigned' END AS rule
FROM decided;

-- the listing: one row per record and source file, with the record's staged rows in it
CREATE OR REPLACE TABLE split_assignments_out AS
WITH per_file AS (
    SELECT record_id, source_file, unit, count(*) AS rows FROM split_iplos GROUP BY ALL
    UNION ALL
    SELECT 'epj:' || v.system || ':' || v.service_id, v.source_file, e.unit, count(*)
    FROM epj_service_versions v JOIN split_epj e ON e.system = v.system AND e.service_id = v.service_id
    GROUP BY ALL
)
SELECT p.unit, d.divided AS divided_unit, d.record_id, p.source_file, p.rows, d.person_key, d.service_code,
       d.start_date, d.end_date, d.kommune, d.rule, d.candidates
FROM per_file p JOIN split_decided d USING (record_id);
"""


# Coverage is decided per unit, but after a split the EPJ a successor configured may hold one piece of the unit
# only: an extract row whose person no EPJ record of that successor (under the split unit) knows belongs to
# another piece, whose EPJ was never exported, and the extract is its only source (`unheld`)
SPLIT_IPLOS_ROWS_SQL = """
WITH known AS (
    -- the persons each successor's EPJ exports that hold a split unit know
    SELECT DISTINCT s.kommune, u.unit, coalesce(a.person_key, e.person_key) AS person_key
    FROM epj_user e
    JOIN epj_systems s ON s.system = e.system
    JOIN split_units u ON s.units IS NULL OR list_contains(s.units, u.unit)
    LEFT JOIN person_alias a ON a.alias = e.person_key
)
SELECT i.source_file, i.line, d.kommune, k.person_key IS NULL AS unheld
FROM split_iplos i JOIN split_decided d USING (record_id)
LEFT JOIN known k ON k.kommune = d.kommune AND k.unit = i.unit AND k.person_key = i.person_key
"""


@dataclass(frozen=True)
class SplitAssignments:
    """The build's decisions: the listing, and the look-ups the batches use."""

    listing: pl.DataFrame  # SPLIT_ASSIGNMENTS
    # source_file, line, kommune (null: unassigned), unheld: no EPJ record of the successor's knows the person, so
    # no EPJ can have annulled the row's service and the extract is its evidence whatever the unit's coverage
    iplos_rows: pl.DataFrame
    iplos_keys: pl.DataFrame  # unit, service_id, person_key, kommune: the 3.7 records, for their stops
    epj_records: pl.DataFrame  # system, service_id, kommune (null: unassigned)
    units: pl.DataFrame  # split_units(): every split code with a configured successor

    @property
    def received(self) -> pl.DataFrame:
        """(kommune, unit): the split units each successor received records of (its coverage counts their days)."""
        return (self.listing.filter(pl.col("kommune").is_not_null()).select("kommune", "unit").unique()
                .sort("kommune", "unit"))

    def families(self) -> list[set[str]]:
        return [set(c) for c in self.units["candidates"].unique().to_list()]

    def for_batch(self, kommuner: set[str] | None) -> SplitAssignments:
        """The decisions that concern the batch's municipalities (rows placed elsewhere are dropped there)."""
        if kommuner is None:
            return self
        mine = pl.col("kommune").is_in(sorted(kommuner))
        return SplitAssignments(self.listing.filter(mine), self.iplos_rows, self.iplos_keys, self.epj_records,
                                self.units)

    @property
    def empty(self) -> bool:
        return self.units.height == 0


def no_split_assignments() -> SplitAssignments:
    return SplitAssignments(
        SPLIT_ASSIGNMENTS.empty(), pl.DataFrame(schema={"source_file": pl.Utf8, "line": pl.Int64, "kommune": pl.Utf8,
                                                "unheld": pl.Boolean}),
        pl.DataFrame(schema={"unit": pl.Utf8, "service_id": pl.Utf8, "person_key": pl.Utf8, "kommune": pl.Utf8}),
        pl.DataFrame(schema={"system": pl.Utf8, "service_id": pl.Utf8, "kommune": pl.Utf8}),
        pl.DataFrame(schema=SPLIT_UNITS_SCHEMA))


def family_members(units: pl.DataFrame, municipalities: list[Municipality]) -> set[str]:
    """The municipalities whose files the decisions read: the split's configured successors, and the holders of
    the EPJ systems they share."""
    members = {k for candidates in units["candidates"].to_list() for k in candidates}
    holder = {s.system: m.nr for m in municipalities for s in m.epj}
    members |= {holder[s.system] for m in municipalities if m.nr in members for s in m.shared_epj}
    return members


def assign_splits(settings: Settings, files: dict[str, list[Path]],
                  shared: dict[str, frozenset[str]]) -> SplitAssignments:
    """Decide every split unit's records (once per build) from the files of the split families only.

    `files` is the build's staged file index, `shared` its `shared_file_owners`.
    """
    units = split_units(settings)
    if units.height == 0:
        return no_split_assignments()
    municipalities = load_kommuner(settings.root.kommuner_toml)
    members = family_members(units, municipalities)
    with duck.connect() as con:
        register_staged(con, settings, members, files, SPLIT_INPUTS, shared)
        register_split_inputs(con, settings, units, members)
        run_script(con, PERSONS_SQL)
        run_script(con, SPLITS_SQL, {"switch_window": settings.tolerances.switch_window_days})
        listing = SPLIT_ASSIGNMENTS.sorted(SPLIT_ASSIGNMENTS.conform(con.execute(
            "SELECT * FROM split_assignments_out").pl()))
        iplos_rows = con.execute(SPLIT_IPLOS_ROWS_SQL).pl()
        iplos_keys = con.execute("SELECT DISTINCT i.unit, i.service_id, i.person_key, d.kommune FROM split_iplos i "
                                 "JOIN split_decided d USING (record_id) WHERE i.layout = '3.7'").pl()
        epj_records = con.execute("SELECT e.system, e.service_id, d.kommune FROM split_epj e "
                                  "JOIN split_decided d USING (record_id)").pl()
    return SplitAssignments(listing, iplos_rows, iplos_keys, epj_records, units)


def register_split_inputs(con: duckdb.DuckDBPyConnection, settings: Settings, units: pl.DataFrame,
                          kommuner: set[str]) -> None:
    con.register("split_units", units.to_arrow())
    con.register("split_overrides", split_overrides(settings).to_arrow())
    con.register(MUNICIPALITY_CODES.name, municipality_codes().to_arrow())
    con.register("epj_systems", epj_system_frame(settings, kommuner).to_arrow())


def register_batch_lookups(con: duckdb.DuckDBPyConnection, splits: SplitAssignments, kommuner: set[str]) -> None:
    """The look-ups the split variants of the scripts join (`SPLIT_RECORD_ROWS_SQL` ...)."""
    con.register("split_units", splits.units.to_arrow())
    con.register("split_iplos_rows", splits.iplos_rows.to_arrow())
    con.register("split_iplos_keys", splits.iplos_keys.to_arrow())
    con.register("split_epj_records", splits.epj_records.to_arrow())
    con.register("batch_kommuner", pl.DataFrame({"kommune": sorted(kommuner)}, schema={"kommune": pl.Utf8}).to_arrow())


SPLIT_DEFAULTS_VIEW = "split_defaults"
SPLIT_DEFAULTS_DESCRIPTION = ("Records of split units placed by the split's default successor or left unassigned: "
                              "check them and move a person's records with [[splits.override]] in "
                              "config/settings.toml.")
SPLIT_DEFAULTS_VIEW_SQL = (f"CREATE VIEW {SPLIT_DEFAULTS_VIEW} AS SELECT * FROM {SPLIT_ASSIGNMENTS.name} "
                           "WHERE rule IN ('default', 'unassigned')")


def _rewritten(script: str, changes: list[tuple[str, str]]) -> str:
    """`script` with each exact passage replaced; a passage that is not there once is an error at import, so an
    edit of the reconstruction's SQL cannot leave the split variant silently behind."""
    for old, new in changes:
        if script.count(old) != 1:
            raise AssertionError(f"split variant: passage not found once in the timeline SQL: {old[:60]!r}")
        script = script.replace(old, new)
    return script


# the reconstruction's scripts for a batch that holds split units' files: a row or record of a split unit
# takes its successor from the decisions, and what went to a municipality outside the batch is left out
_SPLIT_KOMMUNE_ROW = "coalesce(sx.kommune, m.reporting_kommune)"
_SPLIT_KOMMUNE_EPJ = "CASE WHEN x.system IS NULL THEN e.kommune ELSE x.kommune END"
SPLIT_RECORD_ROWS_SQL = _rewritten(RECORD_ROWS_SQL, [
    ("       m.reporting_kommune AS kommune, coalesce(a.person_key, s.person_key) AS person,",
     f"       {_SPLIT_KOMMUNE_ROW} AS kommune, coalesce(a.person_key, s.person_key) AS person,"),
    (EVIDENCE_JOIN.format(join="JOIN"),
     "LEFT JOIN split_iplos_rows sx ON sx.source_file = s.source_file AND sx.line = s.line\n"
     + EVIDENCE_JOIN.format(join="LEFT JOIN").replace("m.reporting_kommune", _SPLIT_KOMMUNE_ROW)),
    ("LEFT JOIN lineage_files f ON f.source_file = s.source_file;",
     "LEFT JOIN lineage_files f ON f.source_file = s.source_file\n"
     f"WHERE {_SPLIT_KOMMUNE_ROW} IN (SELECT kommune FROM batch_kommuner)\n"
     "  AND (x.kommune IS NOT NULL OR coalesce(sx.unheld, FALSE));"),
])
SPLIT_RECORDS_FROM_ROWS_SQL = _rewritten(RECORDS_FROM_ROWS_SQL, [
    ("SELECT 'epj:' || e.system || ':' || e.service_id AS record_id, e.kommune, 'epj' AS kind,",
     f"SELECT 'epj:' || e.system || ':' || e.service_id AS record_id, {_SPLIT_KOMMUNE_EPJ} AS kommune, "
     "'epj' AS kind,"),
    ("WHERE NOT e.annulled;",
     "LEFT JOIN split_epj_records x ON x.system = e.system AND x.service_id = e.service_id\n"
     f"WHERE NOT e.annulled AND {_SPLIT_KOMMUNE_EPJ} IN (SELECT kommune FROM batch_kommuner);"),
])
_SPLIT_STOP_KOMMUNE = "coalesce(m.reporting_kommune, xs.kommune)"
SPLIT_STOPS_SQL = _rewritten(STOPS_SQL, [
    ("SELECT 'i37:' || m.reporting_kommune || ':'", f"SELECT 'i37:' || {_SPLIT_STOP_KOMMUNE} || ':'"),
    ("       m.reporting_kommune AS kommune, s.stop_id,", f"       {_SPLIT_STOP_KOMMUNE} AS kommune, s.stop_id,"),
    ("LEFT JOIN person_alias a ON a.alias = s.person_key\nGROUP BY ALL;",
     "LEFT JOIN person_alias a ON a.alias = s.person_key\n"
     "LEFT JOIN split_iplos_keys xs ON xs.unit = s.unit AND xs.service_id = s.service_id\n"
     " AND xs.person_key = coalesce(a.person_key, s.person_key)\n"
     f"WHERE {_SPLIT_STOP_KOMMUNE} IN (SELECT kommune FROM batch_kommuner)\nGROUP BY ALL;"),
])
SPLIT_EPISODES_SQL = _rewritten(EPISODES_SQL, [
    ("WHERE service_id IS NOT NULL AND reporting_kommune IN (SELECT kommune FROM gaps)",
     "WHERE service_id IS NOT NULL AND (reporting_kommune IN (SELECT kommune FROM gaps)\n"
     "                                     OR unit IN (SELECT unit FROM split_units))"),
])
