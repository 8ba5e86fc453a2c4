"""Concurrency pools: one per part of the data root that a run writes.

With the instance template's `pools: {granularity: run, default_limit: 1}`, a run that
contains an asset of a pool starts only when no other run holds that pool, so two
overlapping backfills queue instead of writing the same Parquet, ledger or catalog.
"""

STAGING_POOL = "ktt_staging"  # staging/, identity/
TIMELINE_POOL = "ktt_timeline"  # timeline/ (episodes, events, daily aggregates)
LEDGER_POOL = "ktt_ledger"  # ledger/, submissions/
WAREHOUSE_POOL = "ktt_warehouse"  # warehouse.duckdb
# delivery to the registry: one delivering run at a time (its state writes share the ledger with the
# writer through the lock protocol of transforms.deliver.state, so it needs no ledger pool)
DELIVERY_POOL = "ktt_delivery"

ALL_POOLS = (STAGING_POOL, TIMELINE_POOL, LEDGER_POOL, WAREHOUSE_POOL, DELIVERY_POOL)
