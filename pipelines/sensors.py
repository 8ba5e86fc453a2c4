"""A sensor on `raw/`: new, changed or removed source files request their ingestion partitions.

It compares `raw/` with what staging last read (`staging/sources.json`, written by ingestion),
not with what it saw on its own last tick, so a file dropped in while the UI was down is found
too. The run key carries the fingerprint: the same state of a group is requested once.
"""

import dagster as dg

from assets import ingestion
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
