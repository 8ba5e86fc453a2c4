"""Synthetic data generator: a world of persons and care services shown through every source format.

`generate(data_root, scale, seed)` writes `config/kommuner.toml`, yearly IPLOS extracts
(layouts 3.6 and 3.7), EPJ history exports (epj-a-csv, epj-b-jsonl), a bad-input corpus
and the ground truth (`truth/*.parquet`) the pipeline's output can be checked against.
No Dagster here: the CLI and the assets call this.
"""

from .generator import GenerationSummary, generate
from .scales import SCALES, Scale

__all__ = ["SCALES", "GenerationSummary", "Scale", "generate"]
