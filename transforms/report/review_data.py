"""What a municipality's review page shows, read from the outputs on disk (never from the raw sources).

Every figure a page shows is computed here once, from the same Parquet files and ledger the analyst
catalog (`warehouse.duckdb`) has views over, so the page and a query in the catalog agree. Persons
appear only as pseudonyms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from transforms.core import duck
from transforms.core.config import load_kommuner
from transforms.core.settings import Settings
from transforms.reference.municipalities import municipality_codes
from transforms.submit.ledger import open_ledger
from transforms.tables import (
    CONFLICTS,
    COVERAGE_SEGMENTS,
    EPISODES,
    GAPS,
    QUARANTINE,
    RECONCILIATION,
    RECONCILIATION_SERVICES,
    Table,
)

ROWS_LISTED = 50  # rows of a long list shown on a page (the counts cover them all)
EXTRACT_UNIT = r"^raw/iplos/[0-9]{4}/([0-9]{4})[.]xml$"  # a yearly extract's unit, from its path


@dataclass
class ReviewData:
    """One municipality's figures and lists (frames are small: at most ROWS_LISTED rows each)."""

    kommune: str
    name: str
    counts: dict[str, int]
    segments: pl.DataFrame
    gaps: pl.DataFrame  # with the number of episodes bridged across each
    bridged: pl.DataFrame
    conflicts: pl.DataFrame
    conflicts_by_kind: pl.DataFrame
    imputed: pl.DataFrame
    quarantine: pl.DataFrame
    reconciliation: pl.DataFrame
    discrepancies: pl.DataFrame
    notifications: pl.DataFrame  # per event type and status, a column per year: from the ledger or the plan
    notification_days: pl.DataFrame  # (day, status, notifications): the chart's input
    messages: dict[str, object] = field(default_factory=dict)  # first and last message
    source: str = "ledger"  # 'ledger' (what was sent) or 'plan' (what a backfill would send)


def _read(con: duckdb.DuckDBPyConnection, root: Path, table: Table, sql: str, params: dict) -> pl.DataFrame:
    """`sql` over the table's file as `t`; the table's empty frame when it was not written yet."""
    if not table.files(root):
        return pl.DataFrame()
    source = table.glob(root) if table.partitioned else table.location(root)
    hive = str(table.hive_partitioning).lower()  # else `system=...` folders would overwrite the column
    con.execute(f"CREATE OR REPLACE VIEW t AS SELECT * FROM read_parquet('{source}', hive_partitioning = {hive}, "
                "union_by_name = true)")
    return con.execute(sql, params).pl()


def _owned_files(settings: Settings, kommune: str) -> tuple[list[str], list[str]]:
    """What of the quarantine is the municipality's: yearly extracts of its units (any number they had), and
    the folders of its EPJ exports."""
    units = municipality_codes().filter(pl.col("reporting_kommune") == kommune)["code"].to_list()
    folders = [system.path.rstrip("/") + "/" for m in load_kommuner(settings.root.kommuner_toml)
               if m.nr == kommune for system in m.epj]
    return units, folders


def _ledger_side(settings: Settings, kommune: str, plan: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.DataFrame,
                                                                                       dict, str]:
    """Notifications by type and year, per day, and the first and last message: from the ledger, or from
    `plan` (a dry run's) when the ledger holds nothing for the municipality."""
    with open_ledger(settings.data_root, read_only=True) as con:
        sent = con.execute("SELECT day, status, event_type FROM notifications WHERE kommune = ?", [kommune]).pl()
        messages = con.execute(
            "SELECT min(day) AS first_day, max(day) AS last_day, count(*) AS files, "
            "arg_min(file, day) AS first_file, arg_max(file, day) AS last_file FROM written_days "
            "WHERE kommune = ? AND file IS NOT NULL", [kommune]).fetchone()
    source = "ledger"
    info = dict(zip(("first_day", "last_day", "files", "first_file", "last_file"), messages, strict=True))
    if sent.height == 0 and plan is not None:
        sent = plan.filter(pl.col("kommune") == kommune).select("day", "status", "event_type")
        source = "plan"
        info = {"first_day": sent["day"].min(), "last_day": sent["day"].max(),
                "files": sent["day"].n_unique(), "first_file": None, "last_file": None}
    by_type = (sent.with_columns(year=pl.col("day").dt.year())
               .group_by("event_type", "year", "status").len()
               .pivot(on="status", index=["event_type", "year"], values="len").fill_null(0))
    for status in ("N", "M", "C"):
        if status not in by_type.columns:
            by_type = by_type.with_columns(pl.lit(0, pl.UInt32).alias(status))
    # one row per event type and status, one column per year: a page stays short for nine years
    by_type = (by_type.unpivot(index=["event_type", "year"], on=["N", "M", "C"], variable_name="status",
                               value_name="n")
               .filter(pl.col("n").sum().over("event_type", "status") > 0)
               .with_columns(pl.col("year").cast(pl.Utf8))
               .sort("year")
               .pivot(on="year", index=["event_type", "status"], values="n").fill_null(0)
               .with_columns(pl.col("status").replace_strict({"N": 0, "M": 1, "C": 2}, return_dtype=pl.Int8)
                             .alias("_order"))
               .sort("event_type", "_order").drop("_order"))
    days = sent.group_by("day", "status").len("notifications").sort("day", "status")
    return by_type, days, info, source


def review_data(settings: Settings, kommune: str, plan: pl.DataFrame | None = None) -> ReviewData:
    root, p = settings.data_root, {"k": kommune}
    names = dict(municipality_codes().select("reporting_kommune", "reporting_name").unique().drop_nulls()
                 .iter_rows())
    units, folders = _owned_files(settings, kommune)
    with duck.connect() as con:
        segments = _read(con, root, COVERAGE_SEGMENTS, "SELECT * FROM t WHERE kommune = $k ORDER BY unit, first_day", p)
        gaps = _read(con, root, GAPS, "SELECT * FROM t WHERE kommune = $k ORDER BY unit, first_day", p)
        episodes = EPISODES.location(root)
        con.execute(f"CREATE OR REPLACE VIEW e AS SELECT * EXCLUDE (records, lineage) FROM '{episodes}'")
        counts = dict(zip(("episodes", "open_episodes", "stitched", "imputed_ends", "bridged"), con.execute(
            "SELECT count(*), count(*) FILTER (WHERE end_date IS NULL), count(*) FILTER (WHERE stitched), "
            "count(*) FILTER (WHERE end_imputed), count(*) FILTER (WHERE bridged_gap) FROM e WHERE kommune = $k",
            p).fetchone(), strict=True))
        bridged = con.execute("SELECT episode_id, service_code, start_date, end_date, start_source FROM e "
                              f"WHERE kommune = $k AND bridged_gap ORDER BY episode_id LIMIT {ROWS_LISTED}", p).pl()
        if gaps.height:
            con.register("gap_rows", gaps.to_arrow())
            gaps = con.execute("""
                SELECT g.unit, g.first_day, g.last_day, g.days,
                       (SELECT count(*) FROM e WHERE e.kommune = $k AND e.bridged_gap AND e.start_date < g.first_day
                          AND coalesce(e.end_date, DATE '9999-12-31') > g.last_day) AS services_bridged
                FROM gap_rows g ORDER BY g.unit, g.first_day""", p).pl()
        imputed = con.execute("SELECT episode_id, service_code, start_date, end_date, start_source FROM e "
                              f"WHERE kommune = $k AND end_imputed ORDER BY episode_id LIMIT {ROWS_LISTED}", p).pl()
        conflicts = _read(con, root, CONFLICTS, "SELECT * FROM t WHERE kommune = $k ORDER BY conflict, episode_id, "
                          "record_id", p)
        if conflicts.height:
            con.register("conflict_rows", conflicts.to_arrow())
            conflicts = con.execute(f"""
                SELECT c.conflict, c.episode_id, c.record_id, c.detail, c.resolved_by,
                       array_to_string(r.records, ', ') AS candidate_records
                FROM conflict_rows c LEFT JOIN (SELECT episode_id, records FROM '{episodes}') r USING (episode_id)
                ORDER BY c.conflict, c.episode_id, c.record_id""").pl()
        by_kind = (conflicts.group_by("conflict").agg(pl.len().alias("conflicts"),
                                                      pl.col("resolved_by").is_not_null().sum().alias("resolved"))
                   .sort("conflict") if conflicts.height else pl.DataFrame())
        quarantine = pl.DataFrame()
        if QUARANTINE.files(root):
            quarantine = con.execute(f"""
                SELECT rule_id, count(*) AS records, count(DISTINCT source_file) AS files
                FROM read_parquet('{QUARANTINE.glob(root)}', union_by_name = true) q
                WHERE list_contains($units, regexp_extract(q.source_file, $extract_unit, 1))
                   OR len(list_filter($folders, f -> starts_with(q.source_file, f))) > 0
                GROUP BY rule_id ORDER BY records DESC, rule_id""",
                {"units": units, "folders": folders, "extract_unit": EXTRACT_UNIT}).pl()
        reconciliation = _read(con, root, RECONCILIATION, "SELECT * EXCLUDE (kommune) FROM t WHERE kommune = $k "
                               "ORDER BY year, unit", p)
        discrepancies = _read(con, root, RECONCILIATION_SERVICES, "SELECT * EXCLUDE (kommune, person_key) FROM t "
                              f"WHERE kommune = $k ORDER BY year, unit, discrepancy LIMIT {ROWS_LISTED}", p)
    counts["conflicts"] = conflicts.height
    counts["conflicts_resolved"] = int(conflicts["resolved_by"].is_not_null().sum()) if conflicts.height else 0
    counts["gap_segments"] = gaps.height
    counts["gap_days"] = int(gaps["days"].sum()) if gaps.height else 0
    counts["quarantined"] = int(quarantine["records"].sum()) if quarantine.height else 0
    counts["discrepancies"] = int(reconciliation.select(pl.sum_horizontal(
        "only_in_extract", "only_in_timeline", "start_disagreements", "end_disagreements")).sum().item()
    ) if reconciliation.height else 0
    notifications, days, messages, source = _ledger_side(settings, kommune, plan)
    years = [c for c in notifications.columns if c not in ("event_type", "status")]
    for status in ("N", "M", "C"):
        mine = notifications.filter(pl.col("status") == status) if notifications.height else notifications
        counts[f"notifications_{status}"] = int(mine.select(pl.sum_horizontal(years)).sum().item()) if (
            mine.height and years) else 0
    return ReviewData(kommune, names.get(kommune, kommune), counts, segments, gaps, bridged, conflicts.head(
        ROWS_LISTED), by_kind, imputed, quarantine, reconciliation, discrepancies, notifications, days, messages,
        source)
