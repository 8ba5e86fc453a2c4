"""Source records: the staged rows grouped into one record per service as each source knows it.

EPJ: the latest registered version of each service id (annulled services removed).
IPLOS 3.7: one record per service id and person over the data years it appears in.
IPLOS 3.6: one record per person, code and start date over the years it appears in.
A record's lineage is every staged row behind it (`record_refs`).
Persons follow their final identifier: an EPJ user whose D-nummer was replaced by a
fødselsnummer takes every record of the old number with it.
"""

from __future__ import annotations

# The current version of a record is an arg_max over a struct key that spells out the version order
# (latest registration, then source file and line; NULLs lowest, as row_number's NULLS LAST put them),
# in the same hash aggregate that collects its history: no window sort, no self-join.
EPJ_VERSION_KEY = ("{'rn': registered_at IS NOT NULL, "
                   "'r': coalesce(registered_at, TIMESTAMPTZ '1970-01-01 00:00:00+00'), "
                   "'fn': source_file IS NOT NULL, 'f': coalesce(source_file, ''), "
                   "'ln': line IS NOT NULL, 'l': coalesce(line, 0)}")
# (`file_no` ranks the source files as their names sort, see `lineage_files`)
IPLOS_VERSION_KEY = ("{'yn': data_year IS NOT NULL, 'y': coalesce(data_year, 0), "
                     "'fn': file_no IS NOT NULL, 'f': coalesce(file_no, 0), "
                     "'ln': line IS NOT NULL, 'l': coalesce(line, 0)}")

PERSONS_SQL = f"""
CREATE OR REPLACE TABLE epj_user AS
SELECT reporting_kommune AS kommune, system, user_no,
       arg_max(person_key, {EPJ_VERSION_KEY}) AS person_key
FROM epj_persons GROUP BY ALL;

-- a D-nummer replaced by a fødselsnummer for the same user number: in an EPJ's person history, or
-- between yearly extracts of the same municipality (the extract's brukerNr is the EPJ's user number),
-- where the old number is a D-nummer, the new one a fødselsnummer, and birth year and sex agree
CREATE OR REPLACE TABLE alias_candidates AS
-- the extract rows of user numbers ever given with a D-nummer: few, and read in one pass over the persons
WITH same_user AS MATERIALIZED (
    SELECT p.person_key, p.user_no, p.id_type, p.data_year, p.birth_year, p.sex, m.reporting_kommune
    FROM iplos_persons p JOIN municipality_codes m ON m.code = p.unit
    WHERE p.user_no IN (SELECT user_no FROM iplos_persons WHERE id_type = 2)
)
SELECT p.person_key AS alias, u.person_key AS person_key, 1 AS priority
FROM epj_persons p
JOIN epj_user u ON u.kommune = p.reporting_kommune AND u.system = p.system AND u.user_no = p.user_no
WHERE p.person_key <> u.person_key
UNION ALL
SELECT a.person_key, first(b.person_key ORDER BY b.data_year DESC), 2
FROM same_user a
JOIN same_user b
  ON b.user_no = a.user_no AND b.data_year > a.data_year AND b.reporting_kommune = a.reporting_kommune
WHERE a.id_type = 2 AND b.id_type = 1 AND a.person_key <> b.person_key
  AND a.birth_year IS NOT DISTINCT FROM b.birth_year AND a.sex IS NOT DISTINCT FROM b.sex
GROUP BY a.person_key;

CREATE OR REPLACE TABLE person_alias AS
SELECT alias, first(person_key ORDER BY priority, person_key) AS person_key,
       count(DISTINCT person_key) AS n_final
FROM alias_candidates GROUP BY alias;
DROP TABLE alias_candidates;
"""

# The data years an IPLOS record appears in, as bits of one integer (bit 0: YEAR_BITS_BASE): a hash
# aggregate builds and stores it for a fraction of a list's cost, and a record "holds" a year by one test
YEAR_BITS_BASE = 1970
YEAR_BITS_LAST = YEAR_BITS_BASE + 126
YEAR_BIT = (f"CASE WHEN {{y}} BETWEEN {YEAR_BITS_BASE} AND {YEAR_BITS_LAST} "
            f"THEN CAST(1 AS HUGEINT) << ({{y}} - {YEAR_BITS_BASE}) "
            f"WHEN {{y}} IS NOT NULL THEN error('IPLOS data year ' || {{y}} || ' is outside "
            f"{YEAR_BITS_BASE}-{YEAR_BITS_LAST}') END")
HOLDS_YEAR = (f"({{y}} BETWEEN {YEAR_BITS_BASE} AND {YEAR_BITS_LAST} "
              f"AND (({{bits}} >> ({{y}} - {YEAR_BITS_BASE})) & 1) = 1)")

# code 12 and 13 (layout 3.6) are reported as 29 from 2019
CODE29 = "CASE WHEN {c} IN ('12', '13') THEN '29' ELSE {c} END"

# an IPLOS row's record id from its key columns (`iplos_keyed`; NULL where the key is incomplete)
IPLOS_RECORD_ID = ("CASE WHEN {p}is37 THEN 'i37:' || {p}kommune || ':' || {p}id37 || ':' || {p}person "
                   "ELSE 'i36:' || {p}kommune || ':' || {p}person || ':' || {p}code36 || ':' || {p}start36 END")
IPLOS_HAS_RECORD = ("person IS NOT NULL AND CASE WHEN is37 THEN id37 IS NOT NULL "
                    "ELSE code36 IS NOT NULL AND start36 IS NOT NULL END")

# A record's lineage is kept as integers, one per staged row: the rank of the row's source file among the
# batch's files (`lineage_files`) in the high bits, its line in the low REF_LINE_BITS. Integers are cheaper
# to collect, store and sort than "file:line" strings; the names are spelled out once, for the output
# (`episode_lineage`). Sorted, they follow file name, then line number.
REF_LINE_BITS = 40
LINEAGE_REF = f"((file_no << {REF_LINE_BITS}) + line)"

# the staged service rows with what the records need; `evidence` joins the unit-years whose rows count
IPLOS_ROWS_SELECT = """
SELECT f.file_no, s.line, s.data_year, s.unit, s.extract_date, s.user_no, s.service_id,
       s.service_code, s.start_date, s.end_date, s.provider_org, s.hours_per_week,
       m.reporting_kommune AS kommune, coalesce(a.person_key, s.person_key) AS person,
       coalesce(s.layout = '3.7', FALSE) AS is37
FROM iplos_services s
JOIN municipality_codes m ON m.code = s.unit
{evidence}
LEFT JOIN person_alias a ON a.alias = s.person_key
LEFT JOIN lineage_files f ON f.source_file = s.source_file"""

# the unit-years (of the reporting municipality the row belongs to) whose extract rows count
EVIDENCE_JOIN = ("{join} extract_evidence x ON x.kommune = m.reporting_kommune AND x.unit = s.unit "
                 "AND x.year = s.data_year")

RECORD_ROWS_SQL = f"""
-- the batch's source files, ranked by name (NULL names no file: its rows' lineage is NULL, as before)
CREATE OR REPLACE TABLE lineage_files AS
SELECT source_file, CAST(row_number() OVER (ORDER BY source_file) - 1 AS BIGINT) AS file_no
FROM (SELECT source_file FROM epj_service_versions UNION SELECT source_file FROM iplos_services)
WHERE source_file IS NOT NULL;

-- a service id names one record per system; one without an id has no history to follow
CREATE OR REPLACE TABLE epj_current AS
WITH history AS (
    SELECT reporting_kommune, system, service_id,
           arg_max({{'user_no': user_no, 'code': service_code, 'start_date': start_date, 'end_date': end_date,
                    'provider_org': provider_org, 'hours_per_week': hours_per_week, 'unit': unit}},
                   {EPJ_VERSION_KEY}) AS c,
           -- ties on registered_at broken by the values themselves, so rebuilds agree
           arg_min(migrated_from_system, (registered_at, migrated_from_system, migrated_from_service_id))
               FILTER (WHERE migrated_from_system IS NOT NULL) AS migrated_from_system,
           arg_min(migrated_from_service_id, (registered_at, migrated_from_system, migrated_from_service_id))
               FILTER (WHERE migrated_from_service_id IS NOT NULL) AS migrated_from_id,
           bool_or(change_type = 'ANNULLERT') AS annulled,
           -- the provider changed at some version (the versions are read again for these only)
           min(provider_org) <> max(provider_org) AS provider_varies,
           min(registered_at) AS first_registered_at,
           list({{'end_date': end_date, 'at': registered_at}}) AS ends,
           list({LINEAGE_REF}) AS refs
    FROM epj_service_versions LEFT JOIN lineage_files USING (source_file)
    WHERE service_id IS NOT NULL
    GROUP BY reporting_kommune, system, service_id
)
SELECT reporting_kommune AS kommune, system, service_id, c.user_no, c.code, c.start_date, c.end_date,
       c.provider_org, c.hours_per_week, c.unit, migrated_from_system, migrated_from_id, annulled,
       provider_varies, first_registered_at, refs,
       -- when the current end date was first registered (the registration of a TjenesteSlutt)
       list_min([x.at FOR x IN ends IF x.end_date IS NOT DISTINCT FROM c.end_date]) AS end_registered_at
FROM history;

-- the columns the records and the provider changes need; `iplos_keyed` adds the key of the record each
-- row belongs to (3.7: municipality, person, service id; 3.6: municipality, person, code, start),
-- computed when read rather than stored for every row. The record id string is spelled out once per
-- record (`IPLOS_RECORD_ID`), not for every row
-- a yearly extract's row is evidence only where that extract is the authoritative source on some day of its
-- unit and year (`extract_evidence`); on days an EPJ covers, it serves reconciliation only (timeline.md)
CREATE OR REPLACE TABLE iplos_rows AS
{IPLOS_ROWS_SELECT.format(evidence=EVIDENCE_JOIN.format(join="JOIN"))};
"""

# the records from the rows: `RECORD_ROWS_SQL`, then (analyst overrides may admit rows in between) this
RECORDS_FROM_ROWS_SQL = f"""
CREATE OR REPLACE VIEW iplos_keyed AS
SELECT rowid AS row_no, *, {CODE29.format(c="service_code")} AS code29,
       CASE WHEN is37 THEN service_id END AS id37,
       CASE WHEN is37 THEN NULL ELSE {CODE29.format(c="service_code")} END AS code36,
       CASE WHEN is37 THEN NULL ELSE start_date END AS start36
FROM iplos_rows;

-- rows without a complete key (no person) form no record. The current version is picked as a row
-- number and joined back: cheaper than carrying every column through the aggregate
CREATE OR REPLACE TABLE iplos_current AS
WITH history AS (
    SELECT kommune, person, is37, id37, code36, start36,
           arg_max(row_no, {IPLOS_VERSION_KEY}) AS version,
           min(data_year) AS first_year, max(data_year) AS last_year,
           bit_or({YEAR_BIT.format(y="data_year")}) AS year_bits,
           CAST(min(extract_date) AS TIMESTAMPTZ) AS first_registered_at,
           min(provider_org) <> max(provider_org) AS provider_varies,
           list({{'end_date': end_date, 'at': extract_date}}) AS ends,
           list({LINEAGE_REF}) AS refs
    FROM iplos_keyed
    WHERE {IPLOS_HAS_RECORD}
    GROUP BY kommune, person, is37, id37, code36, start36
)
SELECT {IPLOS_RECORD_ID.format(p="h.")} AS record_id,
       c.kommune, c.service_id, c.person, c.user_no, c.code29, c.service_code, c.start_date,
       c.end_date, c.provider_org, c.hours_per_week, c.unit,
       h.first_year, h.last_year, h.year_bits, h.first_registered_at, h.provider_varies, h.refs,
       CAST(list_min([x.at FOR x IN h.ends IF x.end_date IS NOT DISTINCT FROM c.end_date]) AS TIMESTAMPTZ)
           AS end_registered_at,
       h.is37, h.id37, h.code36, h.start36
FROM history h JOIN iplos_keyed c ON c.row_no = h.version;

-- EPJ records first: only they can lack a person (an IPLOS record id names its person)
CREATE OR REPLACE TABLE epj_records AS
SELECT 'epj:' || e.system || ':' || e.service_id AS record_id, e.kommune, 'epj' AS kind,
       'epj:' || e.system AS source, e.system, e.service_id,
       coalesce(a.person_key, u.person_key) AS person_key, e.user_no,
       {CODE29.format(c="e.code")} AS service_code, e.code AS original_code,
       e.start_date, e.end_date, e.provider_org, e.hours_per_week, e.unit,
       NULL::INTEGER AS first_year, NULL::INTEGER AS last_year, NULL::HUGEINT AS year_bits,
       e.migrated_from_system, e.migrated_from_id, e.first_registered_at,
       e.end_registered_at
FROM epj_current e
LEFT JOIN epj_user u ON u.kommune = e.kommune AND u.system = e.system AND u.user_no = e.user_no
LEFT JOIN person_alias a ON a.alias = u.person_key
WHERE NOT e.annulled;

-- records whose person could not be resolved (identifier quarantined) cannot form an episode
CREATE OR REPLACE TABLE unresolved_records AS SELECT * FROM epj_records WHERE person_key IS NULL;

-- rid: an integer surrogate for record_id, so linking and grouping never hash the long strings. The
-- table is written in record_id order, so its rowid (unique, stable and free for a table that is never
-- modified) is the rank of the record id: every "record_id as the last tie-break" compares rids instead
CREATE OR REPLACE TABLE resolved_records AS
SELECT * FROM epj_records WHERE person_key IS NOT NULL
UNION ALL
SELECT record_id, kommune, CASE WHEN is37 THEN 'i37' ELSE 'i36' END, 'iplos', NULL,
       service_id, person, user_no, code29, service_code, start_date, end_date, provider_org, hours_per_week,
       unit, first_year, last_year, year_bits, NULL, NULL, first_registered_at, end_registered_at
FROM iplos_current
ORDER BY record_id;
-- intermediate tables are dropped once read for the last time: their memory is reused by the next
-- statements instead of each batch growing fresh pages (page faults are a tenth of the build's CPU)
DROP TABLE epj_records;
DROP TABLE epj_user;
CREATE OR REPLACE VIEW records AS SELECT rowid AS rid, * FROM resolved_records;

-- lineage: the staged rows behind each record, collected by the record aggregates above and joined to
-- the episode once at the end (`episode_lineage`) instead of carried through every step
CREATE OR REPLACE VIEW record_refs AS
SELECT 'epj:' || system || ':' || service_id AS record_id, refs FROM epj_current
UNION ALL
SELECT record_id, refs FROM iplos_current;
"""

RECORDS_SQL = RECORD_ROWS_SQL + RECORDS_FROM_ROWS_SQL
