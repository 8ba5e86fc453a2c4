"""The one Definitions of the code location (`dagster dev -w workspace.yaml`)."""

from __future__ import annotations

import dagster as dg

from assets import ingestion
from pipelines.resources import RESOURCES

ingestion_assets = dg.load_assets_from_modules([ingestion])

ingest_job = dg.define_asset_job(
    "ingest_yearly_extracts",
    selection=dg.AssetSelection.assets(ingestion.iplos_extracts),
    description="Stage the yearly extracts of the selected data years.",
)

defs = dg.Definitions(
    assets=ingestion_assets,
    jobs=[ingest_job],
    resources=RESOURCES,
)
