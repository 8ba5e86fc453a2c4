"""Every table the pipeline writes, declared once (PUDL's habit): `TABLES` by name.

Declarations live by stage (`ingest`, `reference`, `timeline`, `submit`); each is a `Table` with its
path under the data root, columns (type, description), row order, the asset it belongs to and the
tables it is made from. Writers conform their frames to it, the asset specs and their dependencies
are made from it (`assets/specs.py`), and so are the warehouse views and their column comments.
"""

from __future__ import annotations

from transforms.tables.deliver import DELIVERIES
from transforms.tables.ingest import (
    EPJ_PERSONS,
    EPJ_SERVICE_VERSIONS,
    EPJ_SNAPSHOT_DISAPPEARED,
    EPJ_STOPS,
    EPJ_TABLES,
    FILE_COUNTS,
    FINDING_TABLES,
    IDENTITY_PARTS,
    IDENTITY_VAULT,
    IPLOS_ASSESSMENTS,
    IPLOS_DIAGNOSES,
    IPLOS_PERSONS,
    IPLOS_SERVICES,
    IPLOS_STOPS,
    IPLOS_TABLES,
    QUARANTINE,
    STAGED_TABLES,
)
from transforms.tables.model import Column, Table, duckdb_type, type_label
from transforms.tables.reference import MUNICIPALITY_CODES
from transforms.tables.submit import (
    EVENTS,
    LEDGER_TABLES,
    MANIFEST,
    MESSAGE_FRAME,
    NOTIFICATIONS,
    PERSONS,
    PLAN,
    WRITTEN_DAYS,
)
from transforms.tables.timeline import (
    COMBINED_TABLES,
    CONFLICTS,
    COVERAGE,
    COVERAGE_SEGMENTS,
    DAILY_ALLOCATION,
    EPISODE_STOPS,
    EPISODES,
    GAPS,
    MISSING_EXTRACTS,
    PROVIDER_CHANGES,
    RECONCILIATION,
    RECONCILIATION_PERSONS,
    RECONCILIATION_SERVICES,
    SPLIT_ASSIGNMENTS,
    STREAMED_TABLES,
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        *IPLOS_TABLES, *EPJ_TABLES, EPJ_SNAPSHOT_DISAPPEARED, QUARANTINE, FILE_COUNTS, IDENTITY_PARTS, IDENTITY_VAULT,
        MUNICIPALITY_CODES,
        COVERAGE, COVERAGE_SEGMENTS, GAPS, MISSING_EXTRACTS, EPISODES, EPISODE_STOPS, PROVIDER_CHANGES, CONFLICTS,
        SPLIT_ASSIGNMENTS,
        DAILY_ALLOCATION, RECONCILIATION, RECONCILIATION_SERVICES, RECONCILIATION_PERSONS,
        EVENTS, NOTIFICATIONS, WRITTEN_DAYS, PERSONS, MANIFEST, PLAN, MESSAGE_FRAME,
        DELIVERIES,
    )
}


def tables_of_asset(asset: str) -> list[Table]:
    """The tables that belong to one asset, in declaration order (the first is its main table)."""
    return [t for t in TABLES.values() if t.asset == asset]


def _assets_of(name: str) -> list[str]:
    """The asset(s) that write a table: its own, or those of the tables it is written with."""
    table = TABLES[name]
    if table.asset:
        return [table.asset]
    return [a for other in table.written_with for a in _assets_of(other)]


def assets_read_by(asset: str) -> list[str]:
    """The assets an asset depends on: those that write the tables its tables are made from."""
    found: list[str] = []
    for table in tables_of_asset(asset):
        for name in table.reads:
            for upstream in _assets_of(name):
                if upstream != asset and upstream not in found:
                    found.append(upstream)
    return found


def _check_registry() -> None:
    for table in TABLES.values():
        unknown = [name for name in (*table.reads, *table.written_with) if name not in TABLES]
        if unknown:
            raise ValueError(f"table {table.name} reads undeclared tables {unknown}")


_check_registry()

__all__ = [
    "COMBINED_TABLES", "CONFLICTS", "COVERAGE", "COVERAGE_SEGMENTS", "DAILY_ALLOCATION", "DELIVERIES", "EPISODES",
    "EPISODE_STOPS", "EPJ_PERSONS", "EPJ_SERVICE_VERSIONS", "EPJ_SNAPSHOT_DISAPPEARED", "EPJ_STOPS", "EPJ_TABLES",
    "EVENTS", "FILE_COUNTS", "FINDING_TABLES", "GAPS", "IDENTITY_PARTS", "IDENTITY_VAULT", "IPLOS_ASSESSMENTS",
    "IPLOS_DIAGNOSES", "IPLOS_PERSONS", "IPLOS_SERVICES", "IPLOS_STOPS", "IPLOS_TABLES", "LEDGER_TABLES",
    "MANIFEST", "MESSAGE_FRAME", "MISSING_EXTRACTS", "MUNICIPALITY_CODES", "NOTIFICATIONS", "PERSONS", "PLAN",
    "PROVIDER_CHANGES", "QUARANTINE", "RECONCILIATION", "RECONCILIATION_PERSONS", "RECONCILIATION_SERVICES",
    "SPLIT_ASSIGNMENTS", "STAGED_TABLES", "STREAMED_TABLES", "TABLES", "WRITTEN_DAYS", "Column", "Table",
    "assets_read_by", "duckdb_type", "tables_of_asset", "type_label",
]
