"""`ktt review`: one self-contained HTML page per municipality whose counts are the analyst catalog's; each
demo page opens in headless Chromium with its coverage chart (screenshots in test-artifacts/)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.run import Runner
from tests.browser import ARTIFACTS, launch, require_chromium
from transforms.submit.ledger import open_ledger

KTT = str(Path(sys.executable).with_name("ktt"))
DEMO = ("1515", "3301", "5001")
COUNT = re.compile(r'data-count="([a-zA-Z_]+)">(-?\d+)<')

CATALOG_SQL = """
SELECT count(*) AS episodes, count(*) FILTER (WHERE end_date IS NULL) AS open_episodes,
       count(*) FILTER (WHERE stitched) AS stitched, count(*) FILTER (WHERE end_imputed) AS imputed_ends,
       count(*) FILTER (WHERE bridged_gap) AS bridged,
       (SELECT coalesce(sum(days), 0) FROM gaps WHERE kommune = $k) AS gap_days,
       (SELECT count(*) FROM conflicts WHERE kommune = $k) AS conflicts,
       (SELECT count(*) FROM conflicts WHERE kommune = $k AND resolved_by IS NOT NULL) AS conflicts_resolved,
       (SELECT coalesce(sum(only_in_extract + only_in_timeline + start_disagreements + end_disagreements), 0)
        FROM reconciliation WHERE kommune = $k) AS discrepancies,
       (SELECT count(*) FROM quarantine q WHERE q.source_file LIKE 'raw/epj/' || $k || '-%'
           OR EXISTS (SELECT 1 FROM municipality_codes m WHERE m.reporting_kommune = $k
                      AND q.source_file LIKE 'raw/iplos/%/' || m.code || '.xml')) AS quarantined
FROM episodes WHERE kommune = $k
"""


@pytest.fixture(scope="module")
def reviewed(sent_root, tmp_path_factory, key_file) -> Path:
    """The demo sent to 2025-06-30 for Herøy and Trondheim (Drammen not yet), reconciled, with its catalog."""
    root = tmp_path_factory.mktemp("review") / "data"
    shutil.copytree(sent_root, root)
    runner = Runner(root, key_file)
    runner.reconciliation()
    runner.warehouse()
    result = subprocess.run([KTT, "review", "--data-root", str(root)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def _page(root: Path, kommune: str) -> Path:
    return root / "reports" / "review" / f"{kommune}.html"


def _catalog(root: Path, kommune: str) -> dict[str, int]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        cursor = con.execute(CATALOG_SQL, {"k": kommune})
        names = [d[0] for d in cursor.description]
        figures = dict(zip(names, cursor.fetchone(), strict=True))
    with open_ledger(root, read_only=True) as con:
        for status in ("N", "M", "C"):
            figures[f"notifications_{status}"] = con.execute(
                "SELECT count(*) FROM notifications WHERE kommune = ? AND status = ?", [kommune, status]).fetchone()[0]
    return {name: int(value) for name, value in figures.items()}


@pytest.mark.parametrize("kommune", DEMO)
def test_a_page_is_self_contained_and_counts_as_the_catalog(reviewed, kommune):
    html = _page(reviewed, kommune).read_text(encoding="utf-8")
    # nothing loaded from elsewhere: every picture is a data URI, no script, no stylesheet link
    assert not re.search(r'(src|href)="(?!data:image/png;base64,|#|[0-9]{4}\.html)', html)
    assert "<script" not in html and html.count('src="data:image/png;base64,') >= 2
    shown = {name: int(value) for name, value in COUNT.findall(html)}
    expected = _catalog(reviewed, kommune)
    if kommune == "3301":  # nothing sent yet: the page shows what a backfill would send instead
        assert expected["notifications_N"] == 0 and shown["notifications_N"] > 1000
        assert "What a backfill would send" in html
        for status in ("N", "M", "C"):
            expected.pop(f"notifications_{status}"), shown.pop(f"notifications_{status}")
    assert shown == expected
    assert shown["episodes"] > 100
    for section in ("coverage-section", "conflicts-section", "imputed-section", "quarantine-section",
                    "reconciliation-section", "ledger-section"):
        assert f'id="{section}"' in html
    index = (reviewed / "reports" / "review" / "index.html").read_text(encoding="utf-8")
    assert f'href="{kommune}.html"' in index


def test_the_review_command_takes_municipalities(reviewed, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(reviewed, root, ignore=shutil.ignore_patterns("reports"))
    result = subprocess.run([KTT, "review", "--data-root", str(root), "--kommune", "1515"], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (root / "reports" / "review").iterdir()) == ["1515.html", "index.html"]
    bad = subprocess.run([KTT, "review", "--data-root", str(root), "--kommune", "9999"], capture_output=True,
                         text=True, timeout=600)
    assert bad.returncode != 0 and "9999" in bad.stdout + bad.stderr


def test_every_demo_page_opens_in_headless_chromium(reviewed):
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        for kommune in DEMO:
            page.goto(_page(reviewed, kommune).as_uri(), wait_until="load")
            expect(page.get_by_role("heading", level=1)).to_contain_text(kommune)
            chart = page.locator("img[data-chart=coverage]")
            expect(chart).to_be_visible()
            assert chart.evaluate("image => image.complete && image.naturalWidth") > 400
            shown = {name: int(page.locator(f"[data-count={name}]").inner_text())
                     for name in ("episodes", "gap_days", "conflicts", "imputed_ends", "discrepancies")}
            expected = _catalog(reviewed, kommune)
            assert shown == {name: expected[name] for name in shown}
            page.screenshot(path=str(ARTIFACTS / f"review-{kommune}.png"), full_page=True)
        browser.close()
    assert all((ARTIFACTS / f"review-{k}.png").stat().st_size > 10_000 for k in DEMO)
