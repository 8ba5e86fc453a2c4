"""Sensors: `raw/` files that changed request their ingestion; pending deliveries are retried.

A sensor on `raw/`: new, changed or removed source files request their ingestion partitions.

It compares `raw/` with what staging last read (`staging/sources.json`, written by ingestion),
not with what it saw on its own last tick, so a file dropped in while the UI was down is found
too. The run key carries the fingerprint: the same state of a group is requested once.
"""

import dagster as dg

from assets import delivery, ingestion
from assets.resources import KttResource
from transforms.ingest.fingerprints import EPJ_GROUP, changed_groups

ingest_yearly_extracts = dg.define_asset_job(
    "ingest_yearly_extracts",
    selection=dg.AssetSelection.assets(ingestion.iplos_extracts),
    description="Stage the yearly extracts of the selected data years.",
)

ingest_epj_exports = dg.define_asset_job(
    "ingest_epj_exports",
    selection=dg.AssetSelection.assets(ingestion.epj_histories, ingestion.identity_vault),
    description="Stage every configured EPJ export and merge the identity vault.",
)


@dg.sensor(
    jobs=[ingest_yearly_extracts, ingest_epj_exports],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every minute: files under raw/ that differ from what staging read request their "
                "ingestion (a data year's partition, or the EPJ exports).",
)
def raw_files_sensor(context: dg.SensorEvaluationContext, ktt: KttResource):
    changed = changed_groups(ktt.run_settings())
    if not changed:
        return dg.SkipReason("raw/ holds exactly the files staging last read")
    requests = []
    for group, fingerprint in sorted(changed.items()):
        run_key = f"{group}@{fingerprint[:16]}"
        if group == EPJ_GROUP:
            requests.append(dg.RunRequest(run_key=run_key, job_name=ingest_epj_exports.name,
                                          tags={"ktt/changed_sources": group}))
        else:
            year = group.split("/", 1)[1]
            requests.append(dg.RunRequest(run_key=run_key, job_name=ingest_yearly_extracts.name,
                                          partition_key=year, tags={"ktt/changed_sources": group}))
    context.log.info(f"changed source groups: {', '.join(sorted(changed))}")
    return requests


deliver_pending = dg.define_asset_job(
    "deliver_pending",
    selection=dg.AssetSelection.assets(delivery.kpr_delivery),
    description="Send the messages still pending (a registry that was down, answers that were lost).",
)

ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED]


@dg.sensor(
    job=deliver_pending,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every five minutes: messages left pending or in flight by an earlier delivery (not those "
                "behind a rejection, which wait for a person) are sent again, without anyone asking.",
)
def pending_deliveries_sensor(context: dg.SensorEvaluationContext, ktt: KttResource):
    from transforms.core.config import ConfigError
    from transforms.deliver.config import load_delivery_config
    from transforms.deliver.state import LedgerSession
    from transforms.deliver.status import pending_range
    from transforms.submit.ledger import LedgerBusy

    settings = ktt.run_settings()
    try:
        if load_delivery_config(settings.data_root).transport == "none":
            return dg.SkipReason("transport none: nothing is delivered")
    except ConfigError as exc:
        return dg.SkipReason(f"delivery misconfigured: {exc}")
    if not settings.root.ledger_db.exists():
        return dg.SkipReason("no ledger yet")
    busy = context.instance.get_runs(dg.RunsFilter(job_name=deliver_pending.name, statuses=ACTIVE), limit=1) or \
        context.instance.get_runs(dg.RunsFilter(job_name="daily_operation", statuses=ACTIVE), limit=1)
    if busy:
        return dg.SkipReason("a delivering run is queued or running")
    try:
        with LedgerSession(settings.data_root, lock_timeout=5, announce=True) as session:
            pending = session.run(pending_range)
    except LedgerBusy:
        return dg.SkipReason("the ledger is being written; next tick")
    if pending is None:
        return dg.SkipReason("nothing pending")
    first, last, kommuner, count = pending
    context.log.info(f"{count} messages pending in {', '.join(kommuner)}, {first}..{last}")
    return dg.RunRequest(
        run_key=None, run_config={"ops": {"kpr_delivery": {"config": {"kommuner": kommuner}}}},
        tags={"dagster/asset_partition_range_start": str(first), "dagster/asset_partition_range_end": str(last),
              "ktt/pending_messages": str(count)})
