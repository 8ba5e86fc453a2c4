"""Linking source records into episodes (timeline.md, "Linking records into episodes").

Edges, in the spec's order: same service id (IPLOS 3.7 <-> EPJ), IPLOS 3.6 start
within the tolerance, an explicit `migratedFrom`, and stitching across a change of
source. Episodes are the connected components of the edges.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from transforms.timeline.records import HOLDS_YEAR
from transforms.timeline.sql import run_script

CHAIN_SQL = """
-- coverage followed along a unit's successors: 0625 in 2019 continues as 3005 in 2020, 3301 in 2024; a split
-- unit's part along its successor's numbers (Haram 1534 in 2019, 1507 in 2020-2023, 1580 from 2024)
CREATE OR REPLACE TABLE chain_segments AS
WITH chain AS (
    SELECT c.kommune, s.unit, c.day, c.source
    FROM coverage c
    JOIN unit_succession s ON s.unit_in_year = c.unit AND s.year = year(c.day) AND s.reporting_kommune = c.kommune
), islands AS (
    SELECT *, day - CAST(row_number() OVER (PARTITION BY kommune, unit, source ORDER BY day) AS INTEGER) AS grp
    FROM chain
)
SELECT kommune, unit, source, min(day) AS first_day, max(day) AS last_day
FROM islands GROUP BY kommune, unit, source, grp;

CREATE OR REPLACE TABLE transitions AS
WITH covered AS (
    SELECT *, lead(source) OVER w AS next_source, lead(first_day) OVER w AS next_first_day
    FROM chain_segments WHERE source <> 'gap'
    WINDOW w AS (PARTITION BY kommune, unit ORDER BY first_day)
)
SELECT DISTINCT kommune, source AS old_source, last_day AS old_last_day,
       next_source AS new_source, next_first_day AS new_first_day,
       next_first_day > last_day + 1 AS across_gap
FROM covered WHERE next_source IS NOT NULL AND next_source <> source;
"""

# a record "holds" a source: EPJ records their system, IPLOS records each data year they appear in
HOLDS = """(({r}.kind = 'epj' AND {r}.source = {s})
          OR ({r}.kind <> 'epj' AND {s} LIKE 'iplos:%'
              AND """ + HOLDS_YEAR.format(y="CAST(substr({s}, 7) AS INTEGER)", bits="{r}.year_bits") + "))"
FIRST_HOLDS = """(({r}.kind = 'epj' AND {r}.source = {s})
          OR ({r}.kind <> 'epj' AND {s} = 'iplos:' || {r}.first_year))"""

EDGES_SQL = f"""
CREATE OR REPLACE TABLE edge_candidates AS
-- 1/2: same service id between IPLOS 3.7 and EPJ
SELECT i.rid AS a, e.rid AS b, 'same_id' AS link, 0 AS distance, 0 AS rank_key
FROM records i JOIN records e
  ON i.kind = 'i37' AND e.kind = 'epj' AND e.kommune = i.kommune AND e.service_id = i.service_id
 AND e.person_key = i.person_key
UNION ALL
-- 3: IPLOS 3.6 to each other and to later sources: same person and code, start within the tolerance
SELECT x.rid, y.rid, 'start_tolerance',
       abs(datediff('day', x.start_date, y.start_date)),
       CASE y.kind WHEN 'i36' THEN 1 WHEN 'i37' THEN 2 ELSE 3 END
FROM records x JOIN records y
  ON x.kind = 'i36' AND y.rid <> x.rid AND y.kommune = x.kommune
 AND y.person_key = x.person_key AND y.service_code = x.service_code
 AND abs(datediff('day', x.start_date, y.start_date)) <= $start_tolerance
 AND (y.kind <> 'i36' OR y.first_year > x.last_year)
 AND (x.end_date IS NULL OR y.start_date <= x.end_date)
UNION ALL
-- 4a: an explicit migratedFrom
SELECT n.rid, o.rid, 'migrated_from', 0, 0
FROM records n JOIN records o
  ON n.kind = 'epj' AND o.kind = 'epj' AND o.kommune = n.kommune
 AND o.system = n.migrated_from_system AND o.service_id = n.migrated_from_id
 AND o.person_key = n.person_key
UNION ALL
-- 4b: stitching across a change of source
SELECT n.rid, o.rid, 'stitched',
       abs(datediff('day', o.start_date, n.start_date)), 0
FROM transitions t
JOIN records n ON n.kommune = t.kommune AND {FIRST_HOLDS.format(r="n", s="t.new_source")}
 AND n.migrated_from_system IS NULL
 AND n.start_date BETWEEN t.old_last_day - $switch_window AND t.new_first_day + $switch_window
JOIN records o ON o.kommune = n.kommune AND o.person_key = n.person_key AND o.service_code = n.service_code
 AND o.rid <> n.rid AND {HOLDS.format(r="o", s="t.old_source")}
 AND o.start_date <= t.old_last_day AND (o.end_date IS NULL OR o.end_date >= t.old_last_day);

-- a record that could link to several: the nearest start wins; a tie is a conflict, not a guess
CREATE OR REPLACE TABLE edge_ranked AS
SELECT *, count(*) OVER (PARTITION BY a, link, distance, rank_key) AS tied,
       rank() OVER (PARTITION BY a, link ORDER BY distance, rank_key) AS place
FROM (SELECT DISTINCT * FROM edge_candidates);
DROP TABLE edge_candidates;

CREATE OR REPLACE TABLE edges AS
SELECT a, b, link FROM edge_ranked
WHERE link IN ('same_id', 'migrated_from') OR (place = 1 AND tied = 1);

CREATE OR REPLACE TABLE link_conflicts AS
SELECT x.rid, x.link, list_sort(list(r.record_id)) AS candidates, min(x.distance) AS distance
FROM (SELECT a AS rid, b, link, distance FROM edge_ranked
      WHERE link IN ('start_tolerance', 'stitched') AND place = 1 AND tied > 1) x
JOIN records r ON r.rid = x.b
GROUP BY x.rid, x.link;
DROP TABLE edge_ranked;
"""

# only records with an edge can change label: the rest are components of their own
LABELS_INIT = """
CREATE OR REPLACE TABLE undirected AS SELECT a, b FROM edges UNION SELECT b, a FROM edges;
CREATE OR REPLACE TABLE linked_labels AS SELECT DISTINCT a AS rid, a AS label FROM undirected;
"""

LABELS_STEP = """
CREATE OR REPLACE TABLE labels_next AS
SELECT l.rid, least(l.label, min(n.label)) AS label, min(n.label) < l.label AS changed
FROM linked_labels l
JOIN undirected u ON u.a = l.rid
JOIN linked_labels n ON n.rid = u.b
GROUP BY l.rid, l.label;
"""

LABELS_DONE = """
CREATE OR REPLACE TABLE labels AS
SELECT r.rid, coalesce(l.label, r.rid) AS label FROM records r LEFT JOIN linked_labels l USING (rid);
DROP TABLE undirected;
DROP TABLE linked_labels;
"""


def link_records(con: duckdb.DuckDBPyConnection, start_tolerance: int, switch_window: int,
                 max_rounds: int = 100, edit_edges: Callable[[], None] | None = None) -> int:
    """Create `chain_segments`, `transitions`, `edges`, `link_conflicts` and `labels`; return rounds used.

    Components are found by label propagation over integer record ids (`rid`; a label
    only names a component, no output depends on its value): each round every linked
    record takes the smallest label among its neighbours; records without an edge keep
    their own. Chains are short (a handful of sources), so this converges in a few
    rounds; the loop is over rounds, never over rows.
    """
    run_script(con, CHAIN_SQL)
    run_script(con, EDGES_SQL, {"start_tolerance": start_tolerance, "switch_window": switch_window})
    if edit_edges is not None:  # analyst overrides: links added or removed
        edit_edges()
    run_script(con, LABELS_INIT)
    for rounds in range(1, max_rounds + 1):
        run_script(con, LABELS_STEP)
        # each row says whether its label changed, so the round's outcome needs no join with the last
        # round; the new labels replace the old by a rename, not a copy
        changed = con.execute("SELECT bool_or(changed) FROM labels_next").fetchone()[0]
        con.execute("DROP TABLE linked_labels")
        con.execute("ALTER TABLE labels_next RENAME TO linked_labels")
        if not changed:
            run_script(con, LABELS_DONE)
            return rounds
    raise RuntimeError(f"linking did not converge in {max_rounds} rounds")
