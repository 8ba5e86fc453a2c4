"""Ingestion: every source file to staged Parquet, every record staged or quarantined with its rule."""
