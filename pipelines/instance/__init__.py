"""Committed Dagster instance templates (`dagster.yaml`) that `ktt ui` copies into DAGSTER_HOME."""
