"""The one resource every asset uses: where the data root is and how to get the keys."""

from __future__ import annotations

import dagster as dg

from transforms.core.settings import Settings, load_settings
from transforms.privacy.keys import Keys, load_keys


class KttResource(dg.ConfigurableResource):
    """Data root and key file; empty values fall back to `KTT_DATA_ROOT` / `KTT_KEY_FILE`."""

    data_root: str = ""
    key_file: str = ""

    def run_settings(self) -> Settings:
        return load_settings(self.data_root or None)

    def secret_keys(self) -> Keys:
        from pathlib import Path

        return load_keys(Path(self.key_file) if self.key_file else None)
