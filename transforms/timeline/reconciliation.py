"""Reconciliation with the yearly extracts: the reconstruction compared with the extracts that were not
its evidence.

Where an EPJ covers every day of a unit's year, that year's extract (produced by the EPJ of the time)
is no evidence for the timeline (timeline.md, "Coverage"), but it is what the registry was told then:
comparing the two shows how far the reconstruction can be trusted. Per (municipality, unit, year):

- services matched: layout 3.7 by service id (an EPJ record of the episode with the extract's id and
  person, the linking rule 2); layout 3.6 by person, service code and start within the tolerance
  (rule 3), the nearest start;
- only in the extract (an annulled service the EPJ of the time still listed, a record a later export
  lost), only in the timeline (an episode active that year, held under that unit, no extract row);
- start and end disagreements of matched services: the extract's start against the episode's and
  against the matched record's own (a migrated record starts on the migration date, an artefact),
  the extract's end (none: open on 31 December) against the episode's end as known on 31 December;
- persons per service code on 31 December from each side.

Everything is pseudonymous (`person_key`). The statements run in their own DuckDB connection over the
written episodes and the staged tables, after the reconstruction: they add nothing to its time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl

from transforms.core import duck
from transforms.core.atomic import write_parquet
from transforms.core.config import load_kommuner
from transforms.core.settings import Settings
from transforms.core.stamps import Stamp
from transforms.reference.municipalities import municipality_codes, unit_succession
from transforms.tables import COVERAGE, EPISODES, RECONCILIATION, RECONCILIATION_PERSONS, RECONCILIATION_SERVICES
from transforms.timeline.build import plan_batches, staged_parquet
from transforms.timeline.coverage import as_of_date, staged_extracts
from transforms.timeline.partial import (
    downstream_rebuild,
    keep_downstream,
    kept_frame,
    rows_by_municipality,
    without_as_of,
)
from transforms.timeline.records import CODE29, PERSONS_SQL
from transforms.timeline.splits import assign_splits
from transforms.timeline.sql import run_script
from transforms.timeline.staged import register_staged, shared_file_owners, staged_file_index

INPUTS = ("iplos_services", "iplos_persons", "epj_persons", "epj_service_versions")
# staged service rows per batch, and each batch's DuckDB memory (it spills beyond it)
RECONCILE_BATCH_ROWS = 1_000_000
RECONCILE_MEMORY_LIMIT = "1500MB"

SIDES_SQL = f"""
-- the extracts that were not evidence: every day of the unit's year (to the as-of date) is EPJ-covered
CREATE OR REPLACE TABLE reconciled AS
SELECT c.kommune, c.unit, CAST(year(c.day) AS INTEGER) AS year,
       array_to_string(list_sort(list(DISTINCT c.source)), ', ') AS authoritative
FROM coverage c SEMI JOIN extracts x ON x.unit = c.unit AND x.year = year(c.day)
GROUP BY ALL HAVING bool_and(c.source LIKE 'epj:%');

CREATE OR REPLACE TABLE extract_rows AS
SELECT r.kommune, s.unit, s.data_year AS year, s.layout, s.source_file || ':' || s.line AS lineage,
       coalesce(a.person_key, s.person_key) AS person_key, s.service_id,
       {CODE29.format(c="s.service_code")} AS service_code, s.start_date, s.end_date
FROM iplos_services s
JOIN municipality_codes m ON m.code = s.unit
-- a split unit's rows go to the successor that received them (`timeline.splits`), not to every successor
LEFT JOIN split_iplos_rows sx ON sx.source_file = s.source_file AND sx.line = s.line
JOIN reconciled r ON r.unit = s.unit AND r.year = s.data_year AND r.kommune = coalesce(sx.kommune, m.reporting_kommune)
LEFT JOIN person_alias a ON a.alias = s.person_key
-- a split unit's row no EPJ of its successor knows was the timeline's evidence (`timeline.splits`)
WHERE s.person_key IS NOT NULL AND NOT coalesce(sx.unheld, FALSE);

-- the EPJ records of the episodes with their current start and end, and the unit each version was
-- registered under (the number valid on its registration day)
CREATE OR REPLACE TABLE epj_record_facts AS
-- (a split unit's record belongs to the successor it was assigned to, not to the export's holder)
SELECT 'epj:' || v.system || ':' || v.service_id AS record_id,
       coalesce(sx.kommune, v.reporting_kommune) AS kommune, v.service_id,
       arg_max(v.start_date, v.registered_at) AS start_date, arg_max(v.end_date, v.registered_at) AS end_date
FROM epj_service_versions v
LEFT JOIN split_epj_records sx ON sx.system = v.system AND sx.service_id = v.service_id
WHERE v.service_id IS NOT NULL GROUP BY ALL;

CREATE OR REPLACE TABLE epj_version_units AS
SELECT 'epj:' || system || ':' || service_id AS record_id, CAST(timezone('Europe/Oslo', registered_at) AS DATE)
           AS registered_on, unit
FROM epj_service_versions WHERE service_id IS NOT NULL AND registered_at IS NOT NULL AND unit IS NOT NULL;

CREATE OR REPLACE TABLE episode_records AS
SELECT e.kommune, e.episode_id, e.person_key, e.service_code, e.start_date, e.end_date, e.record_id,
       f.service_id, f.start_date AS record_start, f.end_date AS record_end
FROM (SELECT kommune, episode_id, person_key, service_code, start_date, end_date, unnest(records) AS record_id
      FROM episodes) e
JOIN epj_record_facts f ON f.record_id = e.record_id AND f.kommune = e.kommune;

-- the timeline's side of each reconciled extract: episodes active on some day of the year through a record
-- that was held under the unit then (the unit of its last version registered by 31 December, as numbered
-- that year)
CREATE OR REPLACE TABLE timeline_side AS
WITH active AS (
    SELECT r.kommune, r.unit, r.year, x.*
    FROM reconciled r
    JOIN episode_records x ON x.kommune = r.kommune
     AND greatest(x.start_date, x.record_start) <= make_date(r.year, 12, 31)
     AND least(coalesce(x.end_date, DATE '9999-12-31'), coalesce(x.record_end, DATE '9999-12-31'))
         >= make_date(r.year, 1, 1)
)
SELECT DISTINCT a.kommune, a.unit, a.year, a.episode_id, a.person_key, a.service_code, a.start_date, a.end_date
FROM active a
ASOF JOIN epj_version_units v ON v.record_id = a.record_id AND make_date(a.year, 12, 31) >= v.registered_on
JOIN unit_succession u ON u.unit = v.unit AND u.year = a.year AND u.unit_in_year = a.unit;
"""

MATCH_SQL = """
CREATE OR REPLACE TABLE candidates AS
SELECT x.*, e.episode_id, e.start_date AS timeline_start, e.end_date AS timeline_end, e.record_start,
       least(abs(datediff('day', x.start_date, e.start_date)),
             abs(datediff('day', x.start_date, e.record_start))) AS distance
FROM extract_rows x JOIN episode_records e
  ON e.kommune = x.kommune AND e.person_key = x.person_key
 AND CASE WHEN x.layout = '3.7' THEN e.service_id = x.service_id
          ELSE e.service_code = x.service_code
           AND (abs(datediff('day', x.start_date, e.start_date)) <= $tolerance
                OR abs(datediff('day', x.start_date, e.record_start)) <= $tolerance) END;

-- one episode per extract row: the nearest start, then the smallest episode id
CREATE OR REPLACE TABLE matched AS
SELECT * FROM candidates
QUALIFY row_number() OVER (PARTITION BY lineage ORDER BY distance, episode_id, record_start) = 1;

CREATE OR REPLACE TABLE discrepancies AS
WITH compared AS (
    SELECT *, start_date IS DISTINCT FROM timeline_start AND start_date IS DISTINCT FROM record_start
              AS start_disagrees,
           -- the episode as known on 31 December: an end after it is still open then
           end_date IS DISTINCT FROM CASE WHEN timeline_end <= make_date(year, 12, 31) THEN timeline_end END
              AS end_disagrees
    FROM matched
)
SELECT kommune, unit, year, 'start_disagrees' AS discrepancy, episode_id, service_id, person_key, service_code,
       start_date AS extract_start, end_date AS extract_end, timeline_start, timeline_end, lineage
FROM compared WHERE start_disagrees
UNION ALL
SELECT kommune, unit, year, 'end_disagrees', episode_id, service_id, person_key, service_code,
       start_date, end_date, timeline_start, timeline_end, lineage
FROM compared WHERE end_disagrees
UNION ALL
SELECT x.kommune, x.unit, x.year, 'only_in_extract', NULL, x.service_id, x.person_key, x.service_code,
       x.start_date, x.end_date, NULL, NULL, x.lineage
FROM extract_rows x ANTI JOIN matched m ON m.lineage = x.lineage
UNION ALL
SELECT t.kommune, t.unit, t.year, 'only_in_timeline', t.episode_id, NULL, t.person_key, t.service_code,
       NULL, NULL, t.start_date, t.end_date, NULL
FROM timeline_side t
ANTI JOIN matched m ON m.kommune = t.kommune AND m.unit = t.unit AND m.year = t.year AND m.episode_id = t.episode_id;

CREATE OR REPLACE TABLE summary AS
WITH counts AS (
    SELECT r.kommune, r.unit, r.year, r.authoritative,
           (SELECT count(*) FROM extract_rows x WHERE x.kommune = r.kommune AND x.unit = r.unit AND x.year = r.year)
               AS extract_services,
           (SELECT count(*) FROM timeline_side t WHERE t.unit = r.unit AND t.year = r.year
                                                 AND t.kommune = r.kommune) AS timeline_services,
           (SELECT count(*) FROM matched m WHERE m.kommune = r.kommune AND m.unit = r.unit AND m.year = r.year)
               AS matched,
           (SELECT count(DISTINCT lineage) FROM discrepancies d WHERE d.kommune = r.kommune AND d.unit = r.unit
                AND d.year = r.year
                AND d.discrepancy IN ('start_disagrees', 'end_disagrees')) AS disagreeing
    FROM reconciled r
), kinds AS (
    SELECT kommune, unit, year, count(*) FILTER (WHERE discrepancy = 'only_in_extract') AS only_in_extract,
           count(*) FILTER (WHERE discrepancy = 'only_in_timeline') AS only_in_timeline,
           count(*) FILTER (WHERE discrepancy = 'start_disagrees') AS start_disagreements,
           count(*) FILTER (WHERE discrepancy = 'end_disagrees') AS end_disagreements
    FROM discrepancies GROUP BY ALL
)
SELECT c.kommune, c.unit, c.year, c.authoritative, c.extract_services, c.timeline_services, c.matched,
       coalesce(k.only_in_extract, 0) AS only_in_extract, coalesce(k.only_in_timeline, 0) AS only_in_timeline,
       coalesce(k.start_disagreements, 0) AS start_disagreements,
       coalesce(k.end_disagreements, 0) AS end_disagreements,
       CASE WHEN c.matched + coalesce(k.only_in_extract, 0) + coalesce(k.only_in_timeline, 0) > 0
            THEN (c.matched - c.disagreeing)
                 / (c.matched + coalesce(k.only_in_extract, 0) + coalesce(k.only_in_timeline, 0)) END AS agreement
FROM counts c LEFT JOIN kinds k USING (kommune, unit, year);

-- persons per service code on 31 December, from each side
CREATE OR REPLACE TABLE persons_31dec AS
WITH extract_side AS (
    SELECT kommune, unit, year, service_code, count(DISTINCT person_key) AS n FROM extract_rows
    WHERE start_date <= make_date(year, 12, 31) AND (end_date IS NULL OR end_date >= make_date(year, 12, 31))
    GROUP BY ALL
), timeline_31 AS (
    SELECT kommune, unit, year, service_code, count(DISTINCT person_key) AS n FROM timeline_side
    WHERE start_date <= make_date(year, 12, 31) AND coalesce(end_date, DATE '9999-12-31') >= make_date(year, 12, 31)
    GROUP BY ALL
)
SELECT coalesce(x.kommune, t.kommune) AS kommune, coalesce(x.unit, t.unit) AS unit, coalesce(x.year, t.year) AS year,
       coalesce(x.service_code, t.service_code) AS service_code, coalesce(x.n, 0) AS extract_persons,
       coalesce(t.n, 0) AS timeline_persons, coalesce(t.n, 0) - coalesce(x.n, 0) AS difference
FROM extract_side x FULL JOIN timeline_31 t USING (kommune, unit, year, service_code);
"""


@dataclasses.dataclass(frozen=True)
class Reconciliation:
    summary: pl.DataFrame  # RECONCILIATION
    services: pl.DataFrame  # RECONCILIATION_SERVICES
    persons: pl.DataFrame  # RECONCILIATION_PERSONS


def reconcile(settings: Settings, rows_per_batch: int = RECONCILE_BATCH_ROWS,
              rebuild: set[str] | None = None, extracts: pl.DataFrame | None = None) -> Reconciliation:
    """Compare the written episodes with the extracts that were not their evidence; write the three tables.

    A batch of municipalities at a time (`plan_batches`, about `rows_per_batch` staged service rows each), on
    a connection with a bounded memory limit: every statement joins within a reporting municipality, so the
    batches are independent and their results, concatenated and sorted, are those of one pass over the
    country; one pass held every staged file's rows at once (6.2 GiB at national scale). `rebuild` compares
    those municipalities only and keeps the others' rows from the tables being replaced (`partial`).
    `extracts` is `staged_extracts(settings)` when the caller already read it.
    """
    root: Path = settings.data_root
    as_of = as_of_date(settings)
    files, shared = staged_file_index(settings), shared_file_owners(settings)
    splits = assign_splits(settings, files, shared)
    lookups = {"municipality_codes": municipality_codes(),
               "unit_succession": unit_succession(settings.cutoff_date.year, as_of.year),
               "extracts": staged_extracts(settings) if extracts is None else extracts,
               "split_iplos_rows": splits.iplos_rows, "split_epj_records": splits.epj_records}
    parts: list[Reconciliation] = []
    if rebuild is not None:
        kept = {m.nr for m in load_kommuner(settings.root.kommuner_toml)} - rebuild
        parts.append(Reconciliation(*(kept_frame(t.location(root), kept) for t in OUTPUTS)))
    for batch in plan_batches(settings, rows_per_batch, files, rebuild):
        with duck.connect(memory_limit=RECONCILE_MEMORY_LIMIT) as con:
            con.execute("SET parquet_metadata_cache = true")
            register_staged(con, settings, batch, files, INPUTS, shared)
            members = ", ".join(duck.sql_literal(k) for k in sorted(batch))
            for table in (EPISODES, COVERAGE):  # the batch's rows (the files are sorted by municipality)
                con.execute(f"CREATE OR REPLACE VIEW {table.name} AS SELECT * FROM read_parquet("
                            f"{duck.sql_literal(table.location(root))}) WHERE kommune IN ({members})")
            for name, frame in lookups.items():
                con.register(name, frame.to_arrow())
            run_script(con, PERSONS_SQL)
            run_script(con, SIDES_SQL)
            run_script(con, MATCH_SQL, {"tolerance": settings.tolerances.iplos36_start_days})
            parts.append(Reconciliation(con.execute("SELECT * FROM summary").pl(),
                                        con.execute("SELECT * FROM discrepancies").pl(),
                                        con.execute("SELECT * FROM persons_31dec").pl()))
    result = Reconciliation(*(_conformed(table, [getattr(p, field) for p in parts]) for table, field in (
        (RECONCILIATION, "summary"), (RECONCILIATION_SERVICES, "services"), (RECONCILIATION_PERSONS, "persons"))))
    for table, frame in ((RECONCILIATION, result.summary), (RECONCILIATION_SERVICES, result.services),
                         (RECONCILIATION_PERSONS, result.persons)):
        write_parquet(frame, table.location(root))
    return result


OUTPUTS = (RECONCILIATION, RECONCILIATION_SERVICES, RECONCILIATION_PERSONS)


def reconcile_or_keep(settings: Settings) -> tuple[Reconciliation, bool]:
    """`reconcile`, unless its outputs are those of the current inputs already (the staged files, the
    episodes and coverage, the as-of date; `core.stamps`): then they are read back. When the timeline
    rebuilt only some municipalities (`partial`), only they are compared again. Returns the tables and
    whether anything was compared."""
    root = settings.data_root
    stamp = Stamp(root, RECONCILIATION.location(root).with_name(".reconciliation.stamp.json"),
                  tuple(t.location(root) for t in OUTPUTS))
    # the as-of date reaches the comparison through its year (the unit succession) and the coverage of the
    # extracts' years only: a later as-of date in a year with no extract (the daily run's) keeps it
    shaping, year = without_as_of(settings), as_of_date(settings).year
    extracts = staged_extracts(settings)  # every file count read: once, for the digest and the comparison
    coverage = compared_coverage(root, extracts)
    digest = stamp.inputs_digest(shaping, [*staged_parquet(settings), EPISODES.location(root)], year,
                                 *sorted(coverage.items()))
    own_base = stamp.inputs_digest(shaping, [], year)
    if (kept := stamp.kept(digest)) is not None:
        keep_downstream(stamp, digest, kept, own_base, (EPISODES,), with_inputs=True, extra=coverage)
        return Reconciliation(*(pl.read_parquet(t.location(root)) for t in OUTPUTS)), False
    rebuild, figures = downstream_rebuild(root, stamp.recorded_figures(), own_base, (EPISODES,),
                                          with_inputs=True, extra=coverage)
    stamp.forget()
    if rebuild == set():
        stamp.record(digest, figures)
        return Reconciliation(*(pl.read_parquet(t.location(root)) for t in OUTPUTS)), False
    result = reconcile(settings, rebuild=rebuild, extracts=extracts)
    stamp.record(digest, figures)
    return result, True


def compared_coverage(root: Path, extracts: pl.DataFrame) -> dict[str, str]:
    """Per municipality, the digest (`rows_by_municipality`) of the coverage rows the comparison reads
    (`SIDES_SQL`: the days of its units' extract years); empty before the first timeline."""
    path = COVERAGE.location(root)
    if not path.exists():
        return {}
    with duck.connect() as con:
        con.register("extracts", extracts.to_arrow())
        return rows_by_municipality(
            con, f"(SELECT c.kommune, c.unit, c.day, c.source FROM read_parquet({duck.sql_literal(path)}) c "
                 "SEMI JOIN extracts x ON x.unit = c.unit AND x.year = year(c.day))", "kommune")


def _conformed(table, parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The batches' parts as one frame of the declared schema, in the table's order."""
    frames = [table.conform(p) for p in parts]
    return table.sorted(pl.concat(frames) if frames else table.empty())


def agreement_by_year(summary: pl.DataFrame) -> pl.DataFrame:
    """Agreement per municipality and year (the units of a year pooled), the chart's and the check's figure."""
    return (
        summary.group_by("kommune", "year")
        .agg(pl.col("matched").sum(), pl.col("only_in_extract").sum(), pl.col("only_in_timeline").sum(),
             pl.col("extract_services").sum(), pl.col("timeline_services").sum(),
             (pl.col("agreement").fill_null(1.0) * (pl.col("matched") + pl.col("only_in_extract")
                                                    + pl.col("only_in_timeline"))).sum().alias("_agreeing"))
        .with_columns(
            agreement=pl.when(pl.col("matched") + pl.col("only_in_extract") + pl.col("only_in_timeline") > 0)
            .then(pl.col("_agreeing") / (pl.col("matched") + pl.col("only_in_extract") + pl.col("only_in_timeline"))))
        .drop("_agreeing").sort("kommune", "year")
    )


def below_threshold(summary: pl.DataFrame, threshold: float) -> pl.DataFrame:
    """The (municipality, year) pairs whose agreement is below `threshold`: the non-blocking check's finding."""
    return agreement_by_year(summary).filter(pl.col("agreement") < threshold)
