"""Source mappings: how one EPJ export is written, as data (`docs/source-mappings.md`)."""

from transforms.core.config import bundled_mapping_names
from transforms.ingest.mapping.load import MappingError, load_mapping
from transforms.ingest.mapping.model import Column, FileFormat, Mapping, RecordMap, Snapshots

__all__ = ["Column", "FileFormat", "Mapping", "MappingError", "RecordMap", "Snapshots",
           "bundled_mapping_names", "load_mapping"]
