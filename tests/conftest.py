"""Shared fixtures: a key file per test session and the spec's worked example as a data root.

Everything a test reads from outside the package is a copy under `tests/fixtures/` (origins in
its README.md): a user's clone has no shared material beside it, so no test may look outside the checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from transforms.privacy.keys import init_key_file

REPO = Path(__file__).resolve().parents[1]  # the checkout
FIXTURES = REPO / "tests" / "fixtures"
EXAMPLE_ROOT = FIXTURES / "examples" / "data-root"  # the spec's worked example
EXAMPLE_MESSAGES = FIXTURES / "examples" / "xpr56"  # the spec's two schema-valid messages
OFFICIAL = FIXTURES / "xpr-ipl-56.0.0"  # Helsedirektoratet's published XPR 56.0.0 schema set
CODE_LISTS = FIXTURES / "reference" / "codes"  # code lists 9151, 9032, function variables
SSB_GROUPING = FIXTURES / "reference" / "kommuner" / "ssb-kommune-grouping-1994-2024.csv"


@pytest.fixture(scope="session", autouse=True)
def key_file(tmp_path_factory) -> Path:
    """Every test runs with its own throwaway keys and synthetic identifiers allowed."""
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    init_key_file(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KTT_KEY_FILE", str(path))
        mp.setenv("KTT_ALLOW_SYNTHETIC_IDS", "1")
        yield path


@pytest.fixture(scope="session")
def example_root(tmp_path_factory, key_file) -> Path:
    """The spec's example data root, copied (ingestion writes into it) and ingested."""
    from pipelines.run import run_ingestion

    root = tmp_path_factory.mktemp("example") / "data-root"
    shutil.copytree(EXAMPLE_ROOT, root)
    run_ingestion(root, key_file)
    return root


def _generate_and_ingest(tmp_path_factory, key_file: Path, scale: str) -> Path:
    """Generate a synthetic world and ingest it through the CLI, keeping the log for scanning."""
    from transforms.synthetic import generate

    root = tmp_path_factory.mktemp(scale) / "data"
    generate(root, scale, 42)
    result = subprocess.run([str(Path(sys.executable).with_name("ktt")), "-v", "ingest", "--data-root", str(root)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    (root / "ingest.log").write_text(result.stdout + result.stderr)
    return root


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory, key_file) -> Path:
    """The demo world, generated and ingested once per test session."""
    return _generate_and_ingest(tmp_path_factory, key_file, "demo")


@pytest.fixture(scope="session")
def small_root(tmp_path_factory, key_file) -> Path:
    return _generate_and_ingest(tmp_path_factory, key_file, "small")


@pytest.fixture(scope="session")
def written_demo(demo_root, tmp_path_factory) -> Path:
    """The ingested demo world with its messages written 2017-01-01..2025-12-31 and nothing delivered."""
    from tests.integration.test_submissions import backfill, prepare

    root = tmp_path_factory.mktemp("written-demo") / "data"
    shutil.copytree(demo_root, root, ignore=shutil.ignore_patterns("ledger", "submissions", "outbox"))
    prepare(root)
    backfill(root)
    return root


@pytest.fixture(scope="session")
def sent_root(demo_root, tmp_path_factory, key_file) -> Path:
    """The demo as it was before its EPJs annulled the planted services, written to 2025-06-30."""
    from tests.phantoms import sent_before_annulment

    return sent_before_annulment(demo_root, tmp_path_factory.mktemp("sent") / "data", key_file)


@pytest.fixture(scope="session")
def synthetic_demo(tmp_path_factory) -> Path:
    """The demo world as generated (not ingested), shared by the generator's tests."""
    from transforms.synthetic import generate

    path = tmp_path_factory.mktemp("synthetic-demo")
    generate(path, "demo", seed=42)
    return path


@pytest.fixture(scope="session")
def small_timeline(small_root):
    """The small world's timeline, built once per session: (settings, TimelineSummary)."""
    import dataclasses
    import datetime as dt

    from transforms.core.settings import load_settings
    from transforms.timeline.build import build_timeline

    settings = dataclasses.replace(load_settings(small_root), as_of_date=dt.date(2025, 12, 31))
    return settings, build_timeline(settings)
