"""The review report as an asset: one HTML page per municipality, linked from the asset's metadata."""

import dagster as dg
from pydantic import Field

from assets.pools import WAREHOUSE_POOL
from assets.resources import KttResource
from transforms.report.review import review_folder, write_review
from transforms.tables import CONFLICTS, COVERAGE_SEGMENTS, EPISODES, GAPS, NOTIFICATIONS, RECONCILIATION

GROUP = "report"


class ReviewConfig(dg.Config):
    """Which municipalities get a page (default: every one in config/kommuner.toml)."""

    kommuner: list[str] = Field(default_factory=list)


@dg.asset(group_name=GROUP, kinds={"html"}, pool=WAREHOUSE_POOL,
          deps=[EPISODES.asset, CONFLICTS.asset, COVERAGE_SEGMENTS.asset, GAPS.asset, RECONCILIATION.asset,
                NOTIFICATIONS.asset])
def review_pages(ktt: KttResource, config: ReviewConfig) -> dg.MaterializeResult:
    """reports/review/<kommune>.html: coverage and gaps, conflicts and overrides, imputed ends, quarantine,
    reconciliation with the yearly extracts, and what the ledger holds or a backfill would send."""
    settings = ktt.run_settings()
    pages = write_review(settings, config.kommuner or None)
    index = review_folder(settings) / "index.html"
    links = "\n".join(f"- [{page.stem}](file://{page})" for page in pages)
    return dg.MaterializeResult(metadata={
        "index": dg.MetadataValue.url(f"file://{index}"),
        "pages": dg.MetadataValue.md(links or "_no municipality configured_"),
        "folder": dg.MetadataValue.path(str(index.parent)),
        **{f"page/{page.stem}": dg.MetadataValue.path(str(page)) for page in pages},
    })
