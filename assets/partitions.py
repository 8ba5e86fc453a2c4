"""Partitions: data years of the yearly extracts, and days from the cut-off."""

from __future__ import annotations

import dagster as dg

from transforms.core.settings import CUTOFF_DATE, FIRST_DATA_YEAR, LAST_DATA_YEAR

data_years = dg.StaticPartitionsDefinition([str(y) for y in range(FIRST_DATA_YEAR, LAST_DATA_YEAR + 1)])

days = dg.DailyPartitionsDefinition(start_date=CUTOFF_DATE.isoformat())

# A Dagster run costs seconds: a nine-year range must be one run, never one per day.
single_run = dg.BackfillPolicy.single_run()
