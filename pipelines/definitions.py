"""The one Definitions of the code location (`dagster dev -w workspace.yaml`)."""

import dagster as dg

from assets import ingestion, timeline
from pipelines.resources import RESOURCES

ingest_job = dg.define_asset_job(
    "ingest_yearly_extracts",
    selection=dg.AssetSelection.assets(ingestion.iplos_extracts),
    description="Stage the yearly extracts of the selected data years.",
)

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingestion, timeline]),
    jobs=[ingest_job],
    resources=RESOURCES,
)
