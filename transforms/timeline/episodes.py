"""Episode attributes from linked records (timeline.md, "Episode attributes").

Start: the pre-switch part of a stitched episode, otherwise the most detailed
source (EPJ, then IPLOS 3.7, then 3.6). End: the source of the latest part; when
that source's coverage ends with the service open and a later source covers the
unit without holding the episode, the end is imputed to the last covered day.
"""

from __future__ import annotations

from transforms.timeline.records import EPJ_VERSION_KEY, IPLOS_HAS_RECORD, IPLOS_RECORD_ID, REF_LINE_BITS

# Each "first record by some order" rule is an arg_min over one integer that spells that order out, most
# significant part first: NULLs last via an is-null bit, DESC via subtraction from the field's top, and
# `rid` as the final tie-break (rids follow record_id order, see RECORDS_SQL). A hash aggregate over
# integer keys costs about half of one over struct keys, whose comparisons go through sort-key blobs.
RID_BITS = 24  # rids are row numbers within a batch: at most 16.7 M records (`check_record_count`)
DAY_BITS = 23  # day numbers offset by DAY_OFFSET: years -8982..9999 fit
DAY_OFFSET = 4_000_000
# the reporting-id key needs three dates' worth of fields and fits a BIGINT only with 17-bit days: days
# since 1900-01-01, up to 2258-11-11; dates outside are taken as those ends (they only order records of
# one episode that agree on everything before, and then record_id decides among them)
NARROW_DAY_BITS = 17


def day_field(column: str) -> str:
    """A date as a non-negative day number (0 for NULL: NULLs are ordered by their own bit)."""
    return f"(coalesce({column} - DATE '1970-01-01', 0) + {DAY_OFFSET})"


def narrow_day_field(column: str) -> str:
    """A date as days since 1900 in NARROW_DAY_BITS, earlier and later dates clamped (0 for NULL)."""
    return f"least(greatest(coalesce({column} - DATE '1900-01-01', 0), 0), {(1 << NARROW_DAY_BITS) - 1})"


def check_record_count(records: int) -> None:
    """Refuse a batch whose record numbers (`rid`) would not fit the packed keys' RID_BITS."""
    if records >= 1 << RID_BITS:
        raise ValueError(f"a timeline batch of {records:,} source records exceeds the {1 << RID_BITS:,} the "
                         "episode keys can order; build with fewer staged rows per batch (rows_per_batch)")


def key(*fields: tuple[str, int]) -> str:
    """`fields` (SQL expression, bit width), most significant first, packed into one integer (rid last).

    BIGINT when the fields fit 62 bits (its arithmetic is several times cheaper), else HUGEINT.
    """
    width = RID_BITS + sum(bits for _, bits in fields)
    if width > 126:
        raise ValueError(f"a packed key of {width} bits does not fit a HUGEINT")
    kind = "BIGINT" if width <= 62 else "HUGEINT"
    parts, shift = [], RID_BITS
    for expression, bits in reversed(fields):
        parts.append(f"(CAST({expression} AS {kind}) << {shift})")
        shift += bits
    return f"({' + '.join(reversed(parts))} + CAST(rid AS {kind}))"


# latest part: ORDER BY last_covered DESC NULLS LAST, precedence, record_id
LATEST_KEY = key(("last_covered IS NULL", 1), (f"{(1 << DAY_BITS) - 1} - {day_field('last_covered')}", DAY_BITS),
                 ("precedence", 2))
# start: ORDER BY continuation, precedence, start_date NULLS LAST, record_id
START_KEY = key(("continuation", 1), ("precedence", 2), ("start_date IS NULL", 1),
                (day_field("start_date"), DAY_BITS))
# reporting id: ORDER BY precedence, the EPJ system's active_from, first IPLOS year, start_date, record_id.
# Precedence tells EPJ records (which have no year) from IPLOS records (which have no system), so the
# system's active_from and the first year share one field, and the key fits a BIGINT (as a HUGEINT, computing
# the key cost a quarter of the episode aggregate)
ID_KEY = key(("precedence", 2),
             (f"CASE WHEN kind = 'epj' THEN (CAST(system_active_from IS NULL AS INTEGER) << {NARROW_DAY_BITS}) "
              f"| {narrow_day_field('system_active_from')} "
              f"ELSE (CAST(first_year IS NULL AS INTEGER) << {NARROW_DAY_BITS}) "
              f"| least(greatest(coalesce(first_year, 0), 0), {(1 << NARROW_DAY_BITS) - 1}) END",
              NARROW_DAY_BITS + 1),
             ("start_date IS NULL", 1), (narrow_day_field("start_date"), NARROW_DAY_BITS))

EPISODES_SQL = f"""
-- the new side of a switch, and every record that is the same service as it by id, continues an
-- earlier part: its start (typically the migration date) is an artefact
CREATE OR REPLACE TABLE continuations AS
WITH switched AS (SELECT a AS rid FROM edges WHERE link IN ('migrated_from', 'stitched'))
SELECT rid FROM switched
UNION
-- two equi-joins: a join on `IN (e.a, e.b)` is a nested loop, quadratic at national scale
SELECT e.b FROM edges e JOIN switched s ON s.rid = e.a WHERE e.link = 'same_id'
UNION
SELECT e.a FROM edges e JOIN switched s ON s.rid = e.b WHERE e.link = 'same_id';

-- what the episode rules compare, per record; the payload stays in `records`
CREATE OR REPLACE TABLE record_facts AS
SELECT r.rid, r.record_id, r.kommune, r.kind, r.source, r.unit, l.label AS component,
       c.rid IS NOT NULL AS continuation,
       CASE r.kind WHEN 'epj' THEN 1 WHEN 'i37' THEN 2 ELSE 3 END AS precedence,
       CASE WHEN r.kind = 'epj' THEN r.source ELSE 'iplos:' || r.last_year END AS last_source,
       s.active_from AS system_active_from
FROM records r
JOIN labels l USING (rid)
LEFT JOIN continuations c USING (rid)
LEFT JOIN epj_systems s ON s.kommune = r.kommune AND s.system = r.system;
DROP TABLE labels;
DROP TABLE continuations;

-- the last day the source of a record's latest data covers its unit, and whether any source covers
-- the unit after that day (the latest start of a covered segment lies beyond it)
CREATE OR REPLACE TABLE record_coverage AS
WITH last_day AS (
    SELECT f.rid, f.kommune, f.unit, max(cs.last_day) AS last_covered
    FROM record_facts f
    JOIN chain_segments cs ON cs.kommune = f.kommune AND cs.unit = f.unit AND cs.source = f.last_source
    GROUP BY f.rid, f.kommune, f.unit
), unit_last_start AS (
    SELECT kommune, unit, max(first_day) AS last_first_day FROM chain_segments WHERE source <> 'gap' GROUP BY ALL
)
SELECT d.rid, d.last_covered, coalesce(u.last_first_day > d.last_covered, FALSE) AS later_coverage
FROM last_day d LEFT JOIN unit_last_start u USING (kommune, unit);

-- the latest part decides the end; the earliest non-continuation part of the most detailed source
-- decides the start; the earliest EPJ record (else IPLOS 3.7) gives the reporting id
CREATE OR REPLACE TABLE episodes_raw AS
WITH parts AS (
    SELECT r.*, f.component, f.continuation, f.precedence, f.system_active_from, c.last_covered,
           coalesce(c.later_coverage, FALSE) AS later_coverage
    FROM records r JOIN record_facts f USING (rid) LEFT JOIN record_coverage c USING (rid)
), picked AS (
    SELECT component,
           min(kommune) AS kommune,
           min(person_key) AS person_key,
           min(service_code) AS service_code,
           -- several persons or codes (a conflict) when min and max differ; the counts are taken
           -- for those few components only (`conflicts`): distinct aggregates cost as much again
           max(person_key) AS person_key_max,
           max(service_code) AS service_code_max,
           arg_min({{'source_id': CASE WHEN kind IN ('epj', 'i37') THEN service_id END, 'user_no': user_no}},
                   {ID_KEY}) AS by_id,
           arg_min({{'start_date': start_date, 'start_registered_at': first_registered_at,
                    'start_source': CASE WHEN kind = 'epj' THEN source ELSE 'iplos:' || first_year END}},
                   {START_KEY}) AS by_start,
           arg_min({{'end_reported': end_date, 'end_registered_at': end_registered_at, 'last_covered': last_covered,
                    'later_coverage': later_coverage, 'provider_org': provider_org,
                    'hours_per_week': hours_per_week}},
                   {LATEST_KEY}) AS by_latest,
           -- sources disagree on the start when these differ (the list itself only for those, `conflicts`)
           min(start_date) FILTER (WHERE NOT continuation) AS start_min,
           max(start_date) FILTER (WHERE NOT continuation) AS start_max,
           bool_or(start_date IS NULL) FILTER (WHERE NOT continuation) AS start_null,
           bool_or(continuation) AS stitched,
           count(*) AS n_records,
           min(rid) AS first_rid,
           -- sorting each small list beats an ordered aggregate, which sorts the whole input
           list_sort(list(record_id)) AS records
    FROM parts
    GROUP BY component
)
SELECT component, kommune, person_key, service_code,
       person_key <> person_key_max OR service_code <> service_code_max AS several_persons_or_codes,
       by_id.source_id, by_id.user_no, by_start.start_date, by_start.start_registered_at,
       start_min <> start_max OR (start_null AND start_min IS NOT NULL) AS starts_disagree,
       by_latest.end_reported, by_latest.end_registered_at, by_latest.last_covered, by_latest.later_coverage,
       by_latest.provider_org, by_latest.hours_per_week, by_start.start_source, stitched, n_records, first_rid,
       records
FROM picked;
DROP TABLE record_coverage;

-- every staged row behind the episode's records, sorted, as "file:line" (a view: computed once, by the
-- output's read). The refs are integers (`LINEAGE_REF`): sorted as such, then spelled out
CREATE OR REPLACE VIEW episode_lineage AS
WITH refs AS (
    SELECT f.component, list_sort(flatten(list(x.refs))) AS refs
    FROM record_refs x JOIN record_facts f USING (record_id)
    GROUP BY f.component
), files AS (
    SELECT list(source_file ORDER BY file_no) AS names FROM lineage_files
)
SELECT r.component,
       [files.names[(x >> {REF_LINE_BITS}) + 1] || ':' || (x & {(1 << REF_LINE_BITS) - 1}) FOR x IN r.refs]
           AS lineage
FROM refs r, files;

-- narrow from here on: records and lineage rejoin the episode at the end
CREATE OR REPLACE TABLE episodes_dated AS
SELECT * EXCLUDE (records),
       end_reported IS NULL AND last_covered IS NOT NULL AND later_coverage
           AND last_covered < $as_of::DATE AS end_imputed,
       CASE WHEN end_reported IS NULL AND last_covered IS NOT NULL AND later_coverage
                 AND last_covered < $as_of::DATE THEN last_covered ELSE end_reported END AS end_date,
       coalesce(source_id, 'X' || upper(substr(md5(kommune || '|' || person_key || '|' || service_code || '|'
                                                   || strftime(start_date, '%Y-%m-%d')), 1, 11))) AS reporting_id,
       source_id IS NULL AS reporting_id_derived
FROM episodes_raw;

-- a gap bridged: a gap segment of a unit any of the episode's records was registered under, after its
-- start, before its end. Gaps are few: only the rows of municipalities with a gap are read for their units
CREATE OR REPLACE TABLE episodes_flagged AS
WITH gaps AS (
    SELECT kommune, unit, first_day, last_day FROM chain_segments WHERE source = 'gap'
), record_units AS (
    SELECT 'epj:' || system || ':' || service_id AS record_id, unit FROM epj_service_versions
    WHERE service_id IS NOT NULL AND reporting_kommune IN (SELECT kommune FROM gaps)
    UNION
    SELECT {IPLOS_RECORD_ID.format(p="")}, unit FROM iplos_keyed
    WHERE {IPLOS_HAS_RECORD} AND kommune IN (SELECT kommune FROM gaps)
), bridged AS (
    SELECT DISTINCT e.component
    FROM record_units x
    JOIN record_facts f USING (record_id)
    JOIN episodes_dated e USING (component)
    JOIN gaps g ON g.kommune = e.kommune AND g.unit = x.unit
    WHERE g.first_day > e.start_date AND (e.end_date IS NULL OR e.end_date > g.last_day)
), shared_ids AS (
    SELECT kommune, reporting_id FROM episodes_dated GROUP BY kommune, reporting_id HAVING count(*) > 1
), ranked AS (
    -- the component's smallest record id orders episodes that share a reporting id and start; the
    -- window runs over those few, not over every episode
    SELECT e.component,
           row_number() OVER (PARTITION BY e.kommune, e.reporting_id ORDER BY e.start_date, e.first_rid) AS id_rank
    FROM episodes_dated e SEMI JOIN shared_ids s ON s.kommune = e.kommune AND s.reporting_id = e.reporting_id
)
SELECT e.*, b.component IS NOT NULL AS bridged_gap, coalesce(r.id_rank, 1) AS id_rank
FROM episodes_dated e LEFT JOIN bridged b USING (component) LEFT JOIN ranked r USING (component);
DROP TABLE episodes_dated;
"""

CONFLICTS_SQL = """
CREATE OR REPLACE TABLE conflicts AS
SELECT f.kommune, f.component, 'ambiguous_link' AS conflict, f.record_id AS record_id,
       'could link (' || c.link || ') to ' || array_to_string(c.candidates, ', ') || ' at equal distance '
           || c.distance || ' days; linked to none' AS detail
FROM link_conflicts c JOIN record_facts f USING (rid)
UNION ALL
SELECT f.kommune, f.component, 'start_disagreement', NULL,
       'sources disagree on the start: '
           || array_to_string(list_sort(list(DISTINCT r.start_date) FILTER (WHERE NOT f.continuation)), ', ')
FROM record_facts f JOIN records r USING (rid)
WHERE f.component IN (SELECT component FROM episodes_raw WHERE starts_disagree)
GROUP BY f.kommune, f.component
UNION ALL
SELECT f.kommune, f.component, 'several_persons_or_codes', NULL,
       count(DISTINCT r.person_key) || ' persons, ' || count(DISTINCT r.service_code)
           || ' service codes linked into one episode'
FROM record_facts f JOIN records r USING (rid)
WHERE f.component IN (SELECT component FROM episodes_raw WHERE several_persons_or_codes)
GROUP BY f.kommune, f.component
UNION ALL
SELECT f.kommune, f.component, 'same_source_twice', min(f.record_id),
       count(*) || ' records of ' || f.source || ' in one episode: '
           || array_to_string(list_sort(list(f.record_id)), ', ')
FROM record_facts f WHERE f.kind = 'epj' GROUP BY f.kommune, f.component, f.source HAVING count(*) > 1
UNION ALL
SELECT i.kommune, NULL, 'id_person_mismatch', i.record_id,
       'service id ' || i.service_id || ' names another person in the EPJ'
FROM records i JOIN records e
  ON i.kind = 'i37' AND e.kind = 'epj' AND e.kommune = i.kommune AND e.service_id = i.service_id
 AND e.person_key <> i.person_key
UNION ALL
SELECT kommune, NULL, 'unresolved_person', record_id,
       'the service''s person has no valid identifier in its source (identifier quarantined)'
FROM unresolved_records
UNION ALL
SELECT kommune, component, 'duplicate_reporting_id', NULL,
       'reporting id ' || reporting_id || ' is shared by several episodes; later ones get a suffix'
FROM episodes_flagged WHERE id_rank > 1;
-- the analyst override that decided a conflict (`override_sql`), if any
ALTER TABLE conflicts ADD COLUMN resolved_by VARCHAR;
"""

EPISODES_OUT_SQL = """
CREATE OR REPLACE TABLE episodes AS
SELECT e.kommune || ':' || e.reporting_id || CASE WHEN e.id_rank > 1 THEN '#' || e.id_rank ELSE '' END
           AS episode_id,
       e.kommune,
       e.reporting_id || CASE WHEN e.id_rank > 1 THEN '#' || e.id_rank ELSE '' END AS reporting_id,
       e.reporting_id_derived,
       e.person_key, e.user_no, e.service_code, e.start_date, e.end_date, e.provider_org, e.hours_per_week,
       e.start_registered_at,
       -- an imputed end is known the day the next source starts covering without the episode
       CASE WHEN e.end_imputed THEN CAST(e.last_covered + 1 AS TIMESTAMPTZ) ELSE e.end_registered_at END
           AS end_registered_at,
       e.stitched, e.end_imputed, e.bridged_gap,
       e.component IN (SELECT component FROM conflicts WHERE component IS NOT NULL) AS conflict,
       e.start_source, e.n_records, e.component
FROM episodes_flagged e
-- in output order, so the output's read (`episodes_out`) sorts narrow rows here, not those with the lists
ORDER BY episode_id;
DROP TABLE episodes_flagged;

-- the output rows: the narrow table above with the record and lineage lists, joined once when read (the
-- joins probe with `episodes`, so on one thread they keep its order; `build._sorted_output` checks that)
CREATE OR REPLACE VIEW episodes_out AS
SELECT e.*, r.records, l.lineage
FROM episodes e JOIN episodes_raw r USING (component) LEFT JOIN episode_lineage l USING (component);

CREATE OR REPLACE TABLE conflicts_out AS
SELECT c.kommune, e.episode_id, c.conflict, c.record_id, c.detail, c.resolved_by
FROM conflicts c LEFT JOIN episodes e ON e.component = c.component;
"""

STOPS_SQL = f"""
-- the current version of each stop by one arg_max aggregate (as epj_current); a stop without a service
-- or stop id has no history to follow
CREATE OR REPLACE TABLE epj_stop_current AS
WITH history AS (
    SELECT reporting_kommune, system, service_id, stop_id,
           arg_max({{'from_date': from_date, 'to_date': to_date}}, {EPJ_VERSION_KEY}) AS c,
           bool_or(change_type = 'ANNULLERT') AS annulled,
           min(registered_at) AS registered_at,
           list({{'to_date': to_date, 'at': registered_at}}) AS ends,
           -- small lists sorted each (an ordered aggregate sorts the whole input); equal times and lines
           -- fall back to the reference itself
           [x.ref FOR x IN list_sort(list({{'rn': registered_at IS NULL, 'r': registered_at, 'l': line,
                                            'ref': source_file || ':' || line}}))] AS lineage
    FROM epj_stops
    WHERE reporting_kommune IS NOT NULL AND system IS NOT NULL AND service_id IS NOT NULL AND stop_id IS NOT NULL
    GROUP BY reporting_kommune, system, service_id, stop_id
)
SELECT reporting_kommune AS kommune, system, service_id, stop_id, c.from_date, c.to_date, annulled, registered_at,
       list_min([x.at FOR x IN ends IF x.to_date IS NOT DISTINCT FROM c.to_date]) AS end_registered_at, lineage
FROM history;

CREATE OR REPLACE TABLE iplos_stop_current AS
SELECT 'i37:' || m.reporting_kommune || ':' || s.service_id || ':' || coalesce(a.person_key, s.person_key)
           AS record_id,
       m.reporting_kommune AS kommune, s.stop_id,
       arg_min(s.from_date, s.data_year) AS from_date,
       arg_max(s.to_date, s.data_year) AS to_date,
       arg_min(s.unit, s.data_year) AS unit,
       CAST(min(s.extract_date) AS TIMESTAMPTZ) AS registered_at,
       CAST(arg_max(s.extract_date, s.data_year) AS TIMESTAMPTZ) AS end_registered_at,
       [x.ref FOR x IN list_sort(list({{'y': s.data_year, 'ref': s.source_file || ':' || s.line}}))] AS lineage
FROM iplos_stops s
JOIN municipality_codes m ON m.code = s.unit
LEFT JOIN person_alias a ON a.alias = s.person_key
GROUP BY ALL;

CREATE OR REPLACE TABLE record_episode AS
SELECT f.record_id, e.episode_id FROM record_facts f JOIN episodes e USING (component);

CREATE OR REPLACE TABLE epj_episode_stops AS
SELECT re.episode_id, s.stop_id, s.from_date, s.to_date, 'epj:' || s.system AS source, s.registered_at,
       s.end_registered_at, s.lineage
FROM epj_stop_current s
JOIN record_episode re ON re.record_id = 'epj:' || s.system || ':' || s.service_id
WHERE NOT s.annulled;

-- IPLOS stops count only where IPLOS is the authoritative source, and never over an EPJ stop
CREATE OR REPLACE TABLE episode_stops_raw AS
SELECT * FROM epj_episode_stops
UNION ALL
SELECT re.episode_id, s.stop_id, s.from_date, s.to_date, 'iplos:' || year(s.from_date), s.registered_at,
       s.end_registered_at, s.lineage
FROM iplos_stop_current s
JOIN record_episode re USING (record_id)
JOIN coverage c ON c.kommune = s.kommune AND c.unit = s.unit AND c.day = s.from_date
WHERE c.source = 'iplos:' || year(s.from_date)
  AND NOT EXISTS (SELECT 1 FROM epj_episode_stops x
                  WHERE x.episode_id = re.episode_id
                    AND x.from_date <= coalesce(s.to_date, DATE '9999-12-31')
                    AND coalesce(x.to_date, DATE '9999-12-31') >= s.from_date);

-- two systems may number their stops alike (S-51 in the old and the new EPJ): within one episode the
-- stop id names one stop, so a repeated id is qualified by the source it came from
CREATE OR REPLACE TABLE episode_stops AS
WITH qualified AS (
    SELECT * REPLACE (CASE WHEN count(*) OVER (PARTITION BY episode_id, stop_id) > 1
                           THEN replace(source, 'epj:', '') || '/' || stop_id ELSE stop_id END AS stop_id)
    FROM episode_stops_raw
)
SELECT * EXCLUDE (n) REPLACE (CASE WHEN n > 1 THEN stop_id || '#' || n ELSE stop_id END AS stop_id)
FROM (SELECT *, row_number() OVER (PARTITION BY episode_id, stop_id ORDER BY from_date, source) AS n
      FROM qualified);
DROP TABLE epj_stop_current;
DROP TABLE iplos_stop_current;
DROP TABLE epj_episode_stops;
DROP TABLE episode_stops_raw;
"""

# Only services whose provider differs between versions can have a change (`provider_varies`, from the
# record aggregates): the version windows run over those few instead of every staged row.
PROVIDERS_SQL = """
CREATE OR REPLACE TABLE provider_changes AS
WITH epj_versions AS (
    SELECT 'epj:' || v.system || ':' || v.service_id AS record_id, v.registered_at,
           CAST(timezone('Europe/Oslo', v.registered_at) AS DATE) AS change_date, v.provider_org,
           lag(v.provider_org) OVER (PARTITION BY v.reporting_kommune, v.system, v.service_id
                                     ORDER BY v.registered_at, v.source_file, v.line) AS previous_org,
           v.source_file || ':' || v.line AS lineage
    FROM epj_service_versions v
    SEMI JOIN (SELECT kommune, system, service_id FROM epj_current WHERE provider_varies) p
      ON p.kommune = v.reporting_kommune AND p.system = v.system AND p.service_id = v.service_id
    WHERE v.change_type <> 'ANNULLERT'
), iplos_years AS (
    SELECT r.record_id, CAST(s.extract_date AS TIMESTAMPTZ) AS registered_at,
           make_date(s.data_year, 1, 1) AS change_date, s.provider_org, s.unit, s.kommune,
           lag(s.provider_org) OVER (PARTITION BY r.record_id ORDER BY s.data_year) AS previous_org,
           lf.source_file || ':' || s.line AS lineage
    FROM iplos_keyed s
    LEFT JOIN lineage_files lf USING (file_no)
    JOIN (SELECT record_id, kommune, person, is37, id37, code36, start36 FROM iplos_current
          WHERE provider_varies) p
      ON p.kommune = s.kommune AND p.person = s.person AND p.is37 = s.is37
     AND p.id37 IS NOT DISTINCT FROM s.id37 AND p.code36 IS NOT DISTINCT FROM s.code36
     AND p.start36 IS NOT DISTINCT FROM s.start36
    -- only the rows with the record's current service code
    JOIN records r ON r.record_id = p.record_id AND r.service_code = s.code29
), changes AS (
    SELECT record_id, change_date, provider_org, FALSE AS imputed, registered_at, lineage FROM epj_versions
    WHERE previous_org IS NOT NULL AND provider_org IS NOT NULL AND provider_org <> previous_org
    UNION ALL
    SELECT y.record_id, y.change_date, y.provider_org, TRUE, y.registered_at, y.lineage FROM iplos_years y
    JOIN coverage c ON c.kommune = y.kommune AND c.unit = y.unit AND c.day = y.change_date
    WHERE y.previous_org IS NOT NULL AND y.provider_org IS NOT NULL AND y.provider_org <> y.previous_org
      AND c.source = 'iplos:' || year(y.change_date)
)
SELECT re.episode_id, greatest(c.change_date, e.start_date) AS change_date,
       arg_max(c.provider_org, (c.change_date, c.registered_at, c.provider_org)) AS provider_org,
       bool_and(c.imputed) AS imputed, max(c.registered_at) AS registered_at,
       list_sort(list(c.lineage)) AS lineage
FROM changes c
JOIN record_episode re USING (record_id)
JOIN episodes e USING (episode_id)
WHERE e.end_date IS NULL OR c.change_date <= e.end_date
GROUP BY re.episode_id, greatest(c.change_date, e.start_date);
"""
