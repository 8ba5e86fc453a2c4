"""The one Definitions of the code location (`dagster dev -w workspace.yaml`)."""

import dagster as dg

from assets import ingestion, submissions, timeline
from pipelines.resources import RESOURCES
from pipelines.schedules import daily_operation, daily_schedule

ingest_job = dg.define_asset_job(
    "ingest_yearly_extracts",
    selection=dg.AssetSelection.assets(ingestion.iplos_extracts),
    description="Stage the yearly extracts of the selected data years.",
)

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingestion, timeline, submissions]),
    jobs=[ingest_job, daily_operation],
    schedules=[daily_schedule],
    resources=RESOURCES,
)
