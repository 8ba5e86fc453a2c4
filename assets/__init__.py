"""Dagster assets and checks: thin wrappers over `transforms`."""

import warnings

from dagster import BetaWarning

# single-run backfill policies are what this project needs; Dagster still labels them beta
warnings.filterwarnings("ignore", category=BetaWarning)
