"""Daily operation: each morning, yesterday's message, with whatever the sources learned overnight, delivered."""

import dagster as dg

from assets import delivery, ingestion, submissions, timeline

daily_operation = dg.define_asset_job(
    "daily_operation",
    selection=dg.AssetSelection.assets(
        ingestion.epj_histories, ingestion.identity_vault, ingestion.municipality_numbers, timeline.timeline,
        timeline.reconciliation, submissions.service_events,
        timeline.daily_allocation, submissions.daily_submissions, delivery.kpr_delivery, timeline.warehouse,
    ),
    description="Re-read the EPJ exports, rebuild episodes and events, write the day's message "
                "(late registrations and corrections go into it), deliver it to the registry (after "
                "anything still pending), refresh the warehouse.",
)

daily_schedule = dg.build_schedule_from_partitioned_job(
    daily_operation, hour_of_day=6, minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every morning at 06:00: yesterday's partition of daily_operation.",
)
