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
-- one ranking per service instead of one sort per column: rn = 1 is the current version
CREATE OR REPLACE TABLE epj_ranked AS
SELECT v.*, row_number() OVER (PARTITION BY v.reporting_kommune, v.system, v.service_id
                               ORDER BY v.registered_at DESC, v.source_file DESC, v.line DESC) AS rn
FROM epj_service_versions v;

CREATE OR REPLACE TABLE epj_current AS
WITH history AS (
    SELECT r.reporting_kommune, r.system, r.service_id,
           list(DISTINCT r.unit) AS units,
           arg_min(r.migrated_from_system, r.registered_at) FILTER (WHERE r.migrated_from_system IS NOT NULL)
               AS migrated_from_system,
           arg_min(r.migrated_from_service_id, r.registered_at)
               FILTER (WHERE r.migrated_from_service_id IS NOT NULL) AS migrated_from_id,
           bool_or(r.change_type = 'ANNULLERT') AS annulled,
           min(r.registered_at) AS first_registered_at,
           -- when the current end date was first registered (the registration of a TjenesteSlutt)
           min(r.registered_at) FILTER (WHERE r.end_date IS NOT DISTINCT FROM c.end_date) AS end_registered_at,
           list_sort(list(r.source_file || ':' || r.line)) AS lineage
    FROM epj_ranked r
    JOIN epj_ranked c ON c.rn = 1 AND c.reporting_kommune = r.reporting_kommune AND c.system = r.system
                     AND c.service_id = r.service_id
    GROUP BY r.reporting_kommune, r.system, r.service_id
)
SELECT c.reporting_kommune AS kommune, c.system, c.service_id, c.user_no, c.service_code AS code,
       c.start_date, c.end_date, c.provider_org, c.hours_per_week, c.unit,
       h.units, h.migrated_from_system, h.migrated_from_id, h.annulled, h.first_registered_at,
       h.end_registered_at, h.lineage
FROM epj_ranked c
JOIN history h ON h.reporting_kommune = c.reporting_kommune AND h.system = c.system AND h.service_id = c.service_id
WHERE c.rn = 1;

CREATE OR REPLACE TABLE iplos_rows AS
SELECT s.*, m.reporting_kommune AS kommune, coalesce(a.person_key, s.person_key) AS person,
       {CODE29.format(c="s.service_code")} AS code29,
       CASE WHEN s.layout = '3.7'
            THEN 'i37:' || m.reporting_kommune || ':' || s.service_id || ':' || coalesce(a.person_key, s.person_key)
            ELSE 'i36:' || m.reporting_kommune || ':' || coalesce(a.person_key, s.person_key) || ':'
                 || {CODE29.format(c="s.service_code")} || ':' || s.start_date END AS record_id
FROM iplos_services s
JOIN municipality_codes m ON m.code = s.unit
LEFT JOIN person_alias a ON a.alias = s.person_key;

CREATE OR REPLACE TABLE iplos_ranked AS
SELECT *, row_number() OVER (PARTITION BY record_id ORDER BY data_year DESC, source_file DESC, line DESC) AS rn
FROM iplos_rows;

CREATE OR REPLACE TABLE iplos_current AS
WITH history AS (
    SELECT r.record_id, list(DISTINCT r.unit) AS units, list_sort(list(DISTINCT r.data_year)) AS years,
           CAST(min(r.extract_date) AS TIMESTAMPTZ) AS first_registered_at,
           CAST(min(r.extract_date) FILTER (WHERE r.end_date IS NOT DISTINCT FROM c.end_date) AS TIMESTAMPTZ)
               AS end_registered_at,
           list_sort(list(r.source_file || ':' || r.line)) AS lineage
    FROM iplos_ranked r JOIN iplos_ranked c ON c.rn = 1 AND c.record_id = r.record_id
    GROUP BY r.record_id
)
SELECT c.*, h.units, h.years, h.first_registered_at, h.end_registered_at, h.lineage
FROM iplos_ranked c JOIN history h USING (record_id)
WHERE c.rn = 1;

-- rid: an integer surrogate for record_id, so linking and grouping never hash the long strings; its
-- value depends on scan order, and no output depends on it (orderings use record_id)
CREATE OR REPLACE TABLE records AS
SELECT row_number() OVER () AS rid, * FROM (
SELECT 'epj:' || e.system || ':' || e.service_id AS record_id, e.kommune, 'epj' AS kind,
       'epj:' || e.system AS source, e.system, e.service_id,
       coalesce(a.person_key, u.person_key) AS person_key, e.user_no,
       {CODE29.format(c="e.code")} AS service_code, e.code AS original_code,
       e.start_date, e.end_date, e.provider_org, e.hours_per_week, e.unit, e.units,
       NULL::INTEGER[] AS years, e.migrated_from_system, e.migrated_from_id, e.first_registered_at,
       e.end_registered_at, e.lineage
FROM epj_current e
LEFT JOIN epj_user u ON u.kommune = e.kommune AND u.system = e.system AND u.user_no = e.user_no
LEFT JOIN person_alias a ON a.alias = u.person_key
WHERE NOT e.annulled
UNION ALL
SELECT record_id, kommune, CASE layout WHEN '3.7' THEN 'i37' ELSE 'i36' END, 'iplos', NULL,
       service_id, person, user_no, code29, service_code, start_date, end_date, provider_org, hours_per_week,
       unit, units, years, NULL, NULL, first_registered_at, end_registered_at, lineage
FROM iplos_current
);

-- records whose person could not be resolved (identifier quarantined) cannot form an episode
CREATE OR REPLACE TABLE unresolved_records AS SELECT * FROM records WHERE person_key IS NULL;
DELETE FROM records WHERE person_key IS NULL;

CREATE OR REPLACE TABLE annulled_services AS
SELECT kommune, system, service_id, lineage FROM epj_current WHERE annulled;
"""
