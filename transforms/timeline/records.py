"""Source records: the staged rows grouped into one record per service as each source knows it.

EPJ: the latest registered version of each service id (annulled services removed).
IPLOS 3.7: one record per service id and person over the data years it appears in.
IPLOS 3.6: one record per person, code and start date over the years it appears in.
Persons follow their final identifier: an EPJ user whose D-nummer was replaced by a
fødselsnummer takes every record of the old number with it.
"""

from __future__ import annotations

PERSONS_SQL = """
CREATE OR REPLACE TABLE epj_user AS
SELECT reporting_kommune AS kommune, system, user_no,
       first(person_key ORDER BY registered_at DESC, source_file DESC, line DESC) AS person_key
FROM epj_persons GROUP BY ALL;

-- a D-nummer replaced by a fødselsnummer for the same user number: in an EPJ's person history, or
-- between yearly extracts of the same municipality (the extract's brukerNr is the EPJ's user number),
-- where the old number is a D-nummer, the new one a fødselsnummer, and birth year and sex agree
CREATE OR REPLACE TABLE alias_candidates AS
SELECT p.person_key AS alias, u.person_key AS person_key, 1 AS priority
FROM epj_persons p
JOIN epj_user u ON u.kommune = p.reporting_kommune AND u.system = p.system AND u.user_no = p.user_no
WHERE p.person_key <> u.person_key
UNION ALL
SELECT a.person_key, first(b.person_key ORDER BY b.data_year DESC), 2
FROM iplos_persons a
JOIN municipality_codes ma ON ma.code = a.unit
JOIN iplos_persons b ON b.user_no = a.user_no AND b.data_year > a.data_year
JOIN municipality_codes mb ON mb.code = b.unit AND mb.reporting_kommune = ma.reporting_kommune
WHERE a.id_type = 2 AND b.id_type = 1 AND a.person_key <> b.person_key
  AND a.birth_year IS NOT DISTINCT FROM b.birth_year AND a.sex IS NOT DISTINCT FROM b.sex
GROUP BY a.person_key;

CREATE OR REPLACE TABLE person_alias AS
SELECT alias, first(person_key ORDER BY priority, person_key) AS person_key,
       count(DISTINCT person_key) AS n_final
FROM alias_candidates GROUP BY alias;
"""

# code 12 and 13 (layout 3.6) are reported as 29 from 2019
CODE29 = "CASE WHEN {c} IN ('12', '13') THEN '29' ELSE {c} END"

RECORDS_SQL = f"""
CREATE OR REPLACE TABLE epj_current AS
SELECT v.reporting_kommune AS kommune, v.system, v.service_id,
       first(v.user_no ORDER BY v.registered_at DESC, v.source_file DESC, v.line DESC) AS user_no,
       first(v.service_code ORDER BY v.registered_at DESC, v.source_file DESC, v.line DESC) AS code,
       first(v.start_date ORDER BY v.registered_at DESC, v.source_file DESC, v.line DESC) AS start_date,
       first(v.end_date ORDER BY v.registered_at DESC, v.source_file DESC, v.line DESC) AS end_date,
       first(v.provider_org ORDER BY v.registered_at DESC, v.source_file DESC, v.line DESC) AS provider_org,
       first(v.hours_per_week ORDER BY v.registered_at DESC, v.source_file DESC, v.line DESC) AS hours_per_week,
       first(v.unit ORDER BY v.registered_at DESC, v.source_file DESC, v.line DESC) AS unit,
       list(DISTINCT v.unit) AS units,
       first(v.migrated_from_system ORDER BY v.registered_at) FILTER (v.migrated_from_system IS NOT NULL)
           AS migrated_from_system,
       first(v.migrated_from_service_id ORDER BY v.registered_at)
           FILTER (v.migrated_from_service_id IS NOT NULL) AS migrated_from_id,
       bool_or(v.change_type = 'ANNULLERT') AS annulled,
       min(v.registered_at) AS first_registered_at,
       list(v.source_file || ':' || v.line ORDER BY v.registered_at, v.line) AS lineage
FROM epj_service_versions v
GROUP BY v.reporting_kommune, v.system, v.service_id;

CREATE OR REPLACE TABLE iplos_rows AS
SELECT s.*, m.reporting_kommune AS kommune, coalesce(a.person_key, s.person_key) AS person,
       {CODE29.format(c="s.service_code")} AS code29
FROM iplos_services s
JOIN municipality_codes m ON m.code = s.unit
LEFT JOIN person_alias a ON a.alias = s.person_key;

CREATE OR REPLACE TABLE records AS
SELECT 'epj:' || e.system || ':' || e.service_id AS record_id, e.kommune, 'epj' AS kind,
       'epj:' || e.system AS source, e.system, e.service_id,
       coalesce(a.person_key, u.person_key) AS person_key,
       {CODE29.format(c="e.code")} AS service_code, e.code AS original_code,
       e.start_date, e.end_date, e.provider_org, e.hours_per_week, e.unit, e.units,
       NULL::INTEGER[] AS years, e.migrated_from_system, e.migrated_from_id, e.first_registered_at,
       e.lineage
FROM epj_current e
LEFT JOIN epj_user u ON u.kommune = e.kommune AND u.system = e.system AND u.user_no = e.user_no
LEFT JOIN person_alias a ON a.alias = u.person_key
WHERE NOT e.annulled
UNION ALL
SELECT 'i37:' || kommune || ':' || service_id || ':' || person AS record_id, kommune, 'i37', 'iplos',
       NULL, service_id, person, code29,
       first(service_code ORDER BY data_year DESC),
       first(start_date ORDER BY data_year DESC), first(end_date ORDER BY data_year DESC),
       first(provider_org ORDER BY data_year DESC), first(hours_per_week ORDER BY data_year DESC),
       first(unit ORDER BY data_year DESC), list(DISTINCT unit), list(DISTINCT data_year ORDER BY data_year),
       NULL, NULL, NULL,
       list(source_file || ':' || line ORDER BY data_year, line)
FROM iplos_rows WHERE layout = '3.7'
GROUP BY kommune, service_id, person, code29
UNION ALL
SELECT 'i36:' || kommune || ':' || person || ':' || code29 || ':' || start_date, kommune, 'i36', 'iplos',
       NULL, NULL, person, code29,
       first(service_code ORDER BY data_year DESC),
       start_date, first(end_date ORDER BY data_year DESC),
       first(provider_org ORDER BY data_year DESC), first(hours_per_week ORDER BY data_year DESC),
       first(unit ORDER BY data_year DESC), list(DISTINCT unit), list(DISTINCT data_year ORDER BY data_year),
       NULL, NULL, NULL,
       list(source_file || ':' || line ORDER BY data_year, line)
FROM iplos_rows WHERE layout = '3.6'
GROUP BY kommune, person, code29, start_date;

-- records whose person could not be resolved (identifier quarantined) cannot form an episode
CREATE OR REPLACE TABLE unresolved_records AS SELECT * FROM records WHERE person_key IS NULL;
DELETE FROM records WHERE person_key IS NULL;

CREATE OR REPLACE TABLE annulled_services AS
SELECT kommune, system, service_id, lineage FROM epj_current WHERE annulled;
"""
