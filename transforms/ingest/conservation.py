"""Record conservation: per source file, records in = staged + quarantined (+ unchanged, for snapshot dumps).

The staged and quarantined counts are taken from the Parquet actually written,
not from the readers' own counters, so a reader that drops a record or stages it
twice is caught.
"""

from __future__ import annotations

import polars as pl

from transforms.core import duck
from transforms.core.duck import sql_list
from transforms.core.settings import Settings
from transforms.tables import (
    EPJ_PERSONS,
    EPJ_SERVICE_VERSIONS,
    EPJ_STOPS,
    FILE_COUNTS,
    IPLOS_ASSESSMENTS,
    IPLOS_DIAGNOSES,
    IPLOS_PERSONS,
    IPLOS_SERVICES,
    IPLOS_STOPS,
    QUARANTINE,
    Table,
)

# record kind -> (staged table, what counts as one record)
KIND_TABLES: dict[str, list[tuple[Table, str]]] = {
    "person": [(IPLOS_PERSONS, "count(*)"), (EPJ_PERSONS, "count(*)")],
    "service": [(IPLOS_SERVICES, "count(*)"), (EPJ_SERVICE_VERSIONS, "count(*)")],
    "stop": [(IPLOS_STOPS, "count(*)"), (EPJ_STOPS, "count(*)")],
    # one assessment element gives one row per scored variable
    "assessment": [(IPLOS_ASSESSMENTS, "count(DISTINCT location)")],
    "diagnosis": [(IPLOS_DIAGNOSES, "count(*)")],
}


def conservation_table(settings: Settings) -> pl.DataFrame:
    """One row per (source file, record kind) with records_in, staged, quarantined and `balanced`."""
    counts_files = settings.root.files(FILE_COUNTS)
    if not counts_files:
        return pl.DataFrame(schema={"source_file": pl.Utf8, "record_kind": pl.Utf8, "records_in": pl.Int64,
                                    "staged": pl.Int64, "quarantined": pl.Int64, "unchanged": pl.Int64,
                                    "balanced": pl.Boolean})
    parts = []
    for kind, tables in KIND_TABLES.items():
        for table, measure in tables:
            files = settings.root.files(table)
            if files:
                parts.append(f"SELECT source_file, '{kind}' AS record_kind, {measure} AS n "
                             f"FROM read_parquet({sql_list(files)}) GROUP BY source_file")
    staged_sql = " UNION ALL ".join(parts) if parts else \
        "SELECT NULL::VARCHAR AS source_file, NULL::VARCHAR AS record_kind, 0 AS n WHERE false"
    quarantine_files = settings.root.files(QUARANTINE)
    quarantine_sql = (
        f"SELECT source_file, record_kind, count(*) AS n FROM read_parquet({sql_list(quarantine_files)}) "
        "GROUP BY ALL" if quarantine_files else
        "SELECT NULL::VARCHAR AS source_file, NULL::VARCHAR AS record_kind, 0 AS n WHERE false"
    )
    sql = f"""
        WITH counted AS (
            SELECT source_file, record_kind, sum(records_in) AS records_in, sum(unchanged) AS unchanged
            FROM read_parquet({sql_list(counts_files)}, union_by_name = true) GROUP BY ALL
        ), staged AS (
            SELECT source_file, record_kind, sum(n) AS n FROM ({staged_sql}) GROUP BY ALL
        ), quarantined AS ({quarantine_sql})
        SELECT
            coalesce(c.source_file, s.source_file, q.source_file) AS source_file,
            coalesce(c.record_kind, s.record_kind, q.record_kind) AS record_kind,
            coalesce(c.records_in, 0)::BIGINT AS records_in,
            coalesce(s.n, 0)::BIGINT AS staged,
            coalesce(q.n, 0)::BIGINT AS quarantined,
            coalesce(c.unchanged, 0)::BIGINT AS unchanged
        FROM counted c
        FULL JOIN staged s ON s.source_file = c.source_file AND s.record_kind = c.record_kind
        FULL JOIN quarantined q
            ON q.source_file = coalesce(c.source_file, s.source_file)
            AND q.record_kind = coalesce(c.record_kind, s.record_kind)
        ORDER BY 1, 2
    """
    with duck.connect() as con:
        frame = con.sql(sql).pl()
    return frame.with_columns(
        balanced=pl.col("records_in") == pl.col("staged") + pl.col("quarantined") + pl.col("unchanged"))


def quarantine_frame(settings: Settings) -> pl.DataFrame:
    files = settings.root.files(QUARANTINE)
    if not files:
        return QUARANTINE.empty()
    return pl.read_parquet(files)  # one scan of every file: a national root has thousands
