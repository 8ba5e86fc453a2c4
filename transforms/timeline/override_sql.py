"""Analyst overrides applied in the reconstruction: SQL run between its stages, only when a batch has any.

`overrides` (`overrides.override_frame`) is registered on the batch's connection; each stage's script
records what every override touched in `override_hits` (override, record, component), so the stale
check, the conflicts (`resolved_by`) and the lineage (`override:<id>`) all read one table. The stages:

1. rows (after `RECORD_ROWS_SQL`): `drop` marks an EPJ record annulled or deletes an extract record's
   rows; `keep` un-annuls an EPJ record or admits an extract record's rows from EPJ-covered years;
2. edges (after the linking edges): `link` adds an edge, `unlink` removes the direct one, `empty_gap`
   removes every edge between a record wholly before the gap and one wholly after it;
3. dates (after the episode attributes): `set_start`, `set_end`, and `empty_gap` clipping (an episode
   whose evidence starts before the gap ends the day before it, one whose evidence is all after it
   starts the day after it); a date an override sets is registered when it was decided;
4. conflicts and lineage.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import polars as pl

from transforms.timeline.linking import HOLDS
from transforms.timeline.overrides import Override, StaleOverride, override_frame
from transforms.timeline.records import CODE29, EVIDENCE_JOIN, IPLOS_RECORD_ID, IPLOS_ROWS_SELECT
from transforms.timeline.sql import run_script

EPJ_RECORD_ID = "'epj:' || {e}.system || ':' || {e}.service_id"
# an iplos_rows row's record id, as `iplos_current` spells it
ROW_KEYED = f"""(SELECT {{columns}}, CASE WHEN is37 THEN service_id END AS id37,
        CASE WHEN is37 THEN NULL ELSE {CODE29.format(c="service_code")} END AS code36,
        CASE WHEN is37 THEN NULL ELSE start_date END AS start36 FROM {{rows}})"""
ROW_RECORD_ID = IPLOS_RECORD_ID.format(p="")
EPJ_OF_OVERRIDE = EPJ_RECORD_ID.format(e="e")
EPJ_EPJ_CURRENT = EPJ_RECORD_ID.format(e="epj_current")
ROWS_KEYED = ROW_KEYED.format(columns="rowid AS row_id, *", rows="iplos_rows")
SET_ASIDE_KEYED = ROW_KEYED.format(columns="*", rows="(" + IPLOS_ROWS_SELECT.format(
    evidence=EVIDENCE_JOIN.format(join="ANTI JOIN")) + ")")
GAP_HOLDS = HOLDS.format(r="r", s="cs.source")

ROWS_SQL = f"""
CREATE OR REPLACE TABLE override_hits (override_id VARCHAR, record_id VARCHAR, component BIGINT);

CREATE OR REPLACE TABLE override_epj AS
SELECT o.override_id, o.kind, o.kommune, o.record_a AS record_id, e.annulled
FROM overrides o JOIN epj_current e
  ON o.kind IN ('drop', 'keep') AND e.kommune = o.kommune AND {EPJ_OF_OVERRIDE} = o.record_a;
INSERT INTO override_hits
SELECT override_id, record_id, NULL FROM override_epj WHERE (kind = 'drop') <> annulled;
UPDATE epj_current SET annulled = (x.kind = 'drop')
FROM override_epj x WHERE x.kommune = epj_current.kommune AND x.record_id = {EPJ_EPJ_CURRENT};

CREATE OR REPLACE TABLE override_dropped_rows AS
SELECT o.override_id, k.row_id, o.record_a AS record_id
FROM (SELECT row_id, {ROW_RECORD_ID} AS record_id, kommune FROM {ROWS_KEYED}) k
JOIN overrides o ON o.kind = 'drop' AND o.kommune = k.kommune AND o.record_a = k.record_id;
INSERT INTO override_hits SELECT DISTINCT override_id, record_id, NULL FROM override_dropped_rows;
DELETE FROM iplos_rows WHERE rowid IN (SELECT row_id FROM override_dropped_rows);

-- an extract's record kept: its rows of the years an EPJ covered count too
CREATE OR REPLACE TABLE override_kept_rows AS
SELECT o.override_id, r.* EXCLUDE (id37, code36, start36, record_id), r.record_id
FROM (SELECT *, {ROW_RECORD_ID} AS record_id FROM {SET_ASIDE_KEYED}) r
JOIN overrides o ON o.kind = 'keep' AND o.kommune = r.kommune AND o.record_a = r.record_id;
INSERT INTO override_hits SELECT DISTINCT override_id, record_id, NULL FROM override_kept_rows;
INSERT INTO iplos_rows SELECT * EXCLUDE (override_id, record_id) FROM override_kept_rows;
"""

EDGES_SQL = f"""
CREATE OR REPLACE TABLE override_pairs AS
SELECT o.override_id, o.kind, a.rid AS x, b.rid AS y, o.record_a
FROM overrides o
JOIN records a ON a.kommune = o.kommune AND a.record_id = o.record_a
JOIN records b ON b.kommune = o.kommune AND b.record_id = o.record_b
WHERE o.kind IN ('link', 'unlink');
INSERT INTO override_hits SELECT override_id, record_a, NULL FROM override_pairs WHERE kind = 'link';
INSERT INTO override_hits
SELECT DISTINCT p.override_id, p.record_a, NULL FROM override_pairs p JOIN edges e
  ON p.kind = 'unlink' AND ((e.a = p.x AND e.b = p.y) OR (e.a = p.y AND e.b = p.x));
DELETE FROM edges WHERE EXISTS (SELECT 1 FROM override_pairs p WHERE p.kind = 'unlink'
    AND ((edges.a = p.x AND edges.b = p.y) OR (edges.a = p.y AND edges.b = p.x)));
INSERT INTO edges SELECT x, y, 'override' FROM override_pairs WHERE kind = 'link';

-- a gap stated empty: the first and last day each record's sources cover its unit, and the records whose
-- unit the gap is in
CREATE OR REPLACE TABLE override_gaps AS
SELECT override_id, kommune, unit, first_day, last_day, decided_at FROM overrides
WHERE kind = 'empty_gap' AND last_day IS NOT NULL;
INSERT INTO override_hits SELECT override_id, NULL, NULL FROM override_gaps;
CREATE OR REPLACE TABLE override_spans AS
SELECT r.rid, min(cs.first_day) AS first_covered, max(cs.last_day) AS last_covered
FROM records r JOIN chain_segments cs ON cs.kommune = r.kommune AND cs.unit = r.unit
 AND {GAP_HOLDS}
WHERE r.kommune IN (SELECT kommune FROM override_gaps)
GROUP BY r.rid;
CREATE OR REPLACE TABLE override_gap_records AS
SELECT DISTINCT g.override_id, r.rid
FROM override_gaps g JOIN records r ON r.kommune = g.kommune
JOIN chain_segments cs ON cs.kommune = r.kommune AND cs.unit = r.unit AND cs.source = 'gap'
 AND cs.first_day = g.first_day AND cs.last_day = g.last_day;
DELETE FROM edges WHERE EXISTS (
    SELECT 1 FROM override_gaps g
    JOIN override_gap_records ga ON ga.override_id = g.override_id AND ga.rid = edges.a
    JOIN override_gap_records gb ON gb.override_id = g.override_id AND gb.rid = edges.b
    JOIN override_spans sa ON sa.rid = edges.a
    JOIN override_spans sb ON sb.rid = edges.b
    WHERE (sa.last_covered < g.first_day AND sb.first_covered > g.last_day)
       OR (sb.last_covered < g.first_day AND sa.first_covered > g.last_day));
"""

DATES_SQL = """
CREATE OR REPLACE TABLE override_episode_ids AS
SELECT component, kommune || ':' || reporting_id || CASE WHEN id_rank > 1 THEN '#' || id_rank ELSE '' END
           AS episode_id
FROM episodes_flagged;
UPDATE override_hits SET component = f.component
FROM record_facts f WHERE f.record_id = override_hits.record_id AND override_hits.component IS NULL;

CREATE OR REPLACE TABLE override_dated AS
SELECT o.override_id, o.kind, i.component, o.start_date, o.end_date, o.reopen, o.decided_at
FROM overrides o JOIN override_episode_ids i ON i.episode_id = o.episode_id
WHERE o.kind IN ('set_start', 'set_end');
INSERT INTO override_hits SELECT override_id, NULL, component FROM override_dated;
UPDATE episodes_flagged SET start_date = d.start_date, start_registered_at = d.decided_at
FROM override_dated d WHERE d.kind = 'set_start' AND d.component = episodes_flagged.component;
UPDATE episodes_flagged SET end_date = CASE WHEN d.reopen THEN NULL ELSE d.end_date END, end_imputed = FALSE,
       end_registered_at = d.decided_at
FROM override_dated d WHERE d.kind = 'set_end' AND d.component = episodes_flagged.component;

-- the episodes of a gap stated empty, with the days their records' sources cover
CREATE OR REPLACE TABLE override_gap_episodes AS
SELECT g.override_id, g.first_day, g.last_day, g.decided_at, f.component,
       min(s.first_covered) AS first_covered, max(s.last_covered) AS last_covered
FROM override_gaps g
JOIN override_gap_records gr ON gr.override_id = g.override_id
JOIN record_facts fr ON fr.rid = gr.rid
JOIN record_facts f ON f.component = fr.component
JOIN override_spans s ON s.rid = f.rid
GROUP BY ALL;
CREATE OR REPLACE TABLE override_clipped AS
SELECT g.*, CASE WHEN g.first_covered < g.first_day THEN 'end' ELSE 'start' END AS side
FROM override_gap_episodes g JOIN episodes_flagged e USING (component)
WHERE e.start_date <= g.last_day AND coalesce(e.end_date, DATE '9999-12-31') >= g.first_day
  AND (g.first_covered < g.first_day OR g.first_covered > g.last_day);
INSERT INTO override_hits SELECT override_id, NULL, component FROM override_clipped;
UPDATE episodes_flagged SET end_date = c.first_day - 1, end_imputed = FALSE, end_registered_at = c.decided_at,
       bridged_gap = FALSE
FROM override_clipped c WHERE c.side = 'end' AND c.component = episodes_flagged.component;
UPDATE episodes_flagged SET start_date = c.last_day + 1, start_registered_at = c.decided_at, bridged_gap = FALSE
FROM override_clipped c WHERE c.side = 'start' AND c.component = episodes_flagged.component;
"""

CONFLICTS_SQL = """
CREATE OR REPLACE TABLE override_components AS
SELECT component, string_agg(DISTINCT override_id, ', ' ORDER BY override_id) AS ids
FROM override_hits WHERE component IS NOT NULL GROUP BY component;
UPDATE conflicts SET resolved_by = c.ids FROM override_components c WHERE c.component = conflicts.component;
UPDATE conflicts SET resolved_by = h.ids
FROM (SELECT record_id, string_agg(DISTINCT override_id, ', ' ORDER BY override_id) AS ids
      FROM override_hits WHERE record_id IS NOT NULL GROUP BY record_id) h
WHERE h.record_id = conflicts.record_id AND conflicts.resolved_by IS NULL;
-- a decision that resolved no listed conflict is listed itself
INSERT INTO conflicts
SELECT o.kommune, h.component, 'analyst_decision', h.record_id, o.detail, o.override_id
FROM overrides o
JOIN (SELECT override_id, min(component) AS component, min(record_id) AS record_id FROM override_hits
      GROUP BY override_id) h USING (override_id)
WHERE o.override_id NOT IN (SELECT trim(unnest(string_split(resolved_by, ','))) FROM conflicts
                            WHERE resolved_by IS NOT NULL);
"""

LINEAGE_SQL = """
CREATE OR REPLACE TABLE override_lineage AS
SELECT e.episode_id, list_sort(list(DISTINCT 'override:' || h.override_id)) AS entries
FROM override_hits h JOIN episodes e USING (component) GROUP BY e.episode_id;
ALTER VIEW episodes_out RENAME TO episodes_before_overrides;
CREATE OR REPLACE VIEW episodes_out AS
SELECT b.* REPLACE (list_concat(coalesce(b.lineage, []), coalesce(o.entries, [])) AS lineage)
FROM episodes_before_overrides b LEFT JOIN override_lineage o ON o.episode_id = b.episode_id;
"""


class BatchOverrides:
    """The overrides of one batch's municipalities, registered on its connection, and their stages."""

    def __init__(self, con: duckdb.DuckDBPyConnection, overrides: Iterable[Override], gaps: pl.DataFrame):
        self.con = con
        self.overrides = tuple(overrides)
        if self.overrides:
            con.register("overrides", override_frame(self.overrides, gaps).to_arrow())

    def run(self, script: str) -> None:
        if self.overrides:
            run_script(self.con, script)

    def check_stale(self) -> None:
        """Fail naming every override that matched nothing in this batch."""
        if not self.overrides:
            return
        hit = {row[0] for row in self.con.execute("SELECT DISTINCT override_id FROM override_hits").fetchall()}
        stale = [o for o in self.overrides if o.id not in hit]
        if stale:
            raise StaleOverride("config/overrides.toml: " + "; ".join(
                f"override {o.id} ({o.kind}) matches nothing any more: {describe(o)}" for o in stale))


def describe(o: Override) -> str:
    """What an override names, for a person reading why it is stale."""
    if o.kind in ("link", "unlink"):
        return (f"records {o.records[0]} and {o.records[1]} of {o.kommune} "
                + ("are not both source records" if o.kind == "link" else "are not linked directly"))
    if o.kind in ("drop", "keep"):
        return f"record {o.records[0]} of {o.kommune} is " + (
            "no evidence (absent or annulled)" if o.kind == "drop" else "not set aside (absent or already counted)")
    if o.kind in ("set_start", "set_end"):
        return f"episode {o.episode} does not exist"
    return f"no gap segment of unit {o.unit} in {o.kommune} starts on {o.first_day}"
