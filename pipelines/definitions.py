"""The one Definitions of the code location (`ktt ui`, `dagster dev -w workspace.yaml`)."""

import dagster as dg

from assets import delivery, ingestion, report, submissions, timeline
from pipelines.resources import RESOURCES
from pipelines.schedules import daily_operation, daily_schedule
from pipelines.sensors import (
    deliver_pending,
    ingest_epj_exports,
    ingest_yearly_extracts,
    pending_deliveries_sensor,
    raw_files_sensor,
)

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingestion, timeline, submissions, report, delivery]),
    jobs=[ingest_yearly_extracts, ingest_epj_exports, daily_operation, deliver_pending],
    schedules=[daily_schedule],
    sensors=[raw_files_sensor, pending_deliveries_sensor],
    resources=RESOURCES,
)
