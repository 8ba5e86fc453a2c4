"""Headless Chromium for the browser tests: Debian's chromium (installed by `.ci/run`), driven by playwright."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("KTT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("KTT_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_chromium() -> None:
    """Skip without a browser, unless KTT_REQUIRE_BROWSER=1 (as in CI) makes that a failure."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("KTT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing (CI installs Debian's chromium in .ci/run)")
        pytest.skip(f"{CHROMIUM} is not installed")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
