"""The source mappings that ship with the package (`format = "<name>"` in kommuner.toml)."""
