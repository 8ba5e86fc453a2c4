"""Timeline reconstruction: coverage, episodes, day-level allocation (DuckDB SQL)."""
