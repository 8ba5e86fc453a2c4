"""Source mappings of the synthetic formats that ship as data, not code (copied into a generated data root)."""
