"""What every stage shares: settings, the municipality configuration, the data-root layout, atomic
writes and DuckDB connections."""
