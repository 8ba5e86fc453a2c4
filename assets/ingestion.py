"""Ingestion assets: yearly extracts and EPJ histories into staged Parquet.

Thin wrappers: reading, validation and writing live in `transforms`; here we only
choose what to read and record what happened as metadata and checks.
"""


from collections import Counter

import dagster as dg
import polars as pl
from dagster import AssetExecutionContext

from assets.charts import chart_metadata
from assets.partitions import data_years, single_run
from assets.pools import STAGING_POOL
from assets.resources import KttResource
from assets.specs import asset_spec
from transforms.ingest import staging as ingest
from transforms.ingest.conservation import conservation_table, quarantine_frame
from transforms.ingest.touched import municipalities_touched
from transforms.privacy.identity import merge_vault
from transforms.reference.municipalities import write_municipality_codes
from transforms.report.charts import quarantine_chart
from transforms.report.markdown import markdown_table
from transforms.tables import (
    EPJ_SERVICE_VERSIONS,
    EPJ_TABLES,
    IDENTITY_VAULT,
    IPLOS_SERVICES,
    IPLOS_TABLES,
    MUNICIPALITY_CODES,
)

GROUP = "ingestion"
IPLOS_ASSETS = tuple(t.asset for t in IPLOS_TABLES)
EPJ_ASSETS = tuple(t.asset for t in EPJ_TABLES)


def _conservation_check(asset_key: str, settings, source: str) -> dg.AssetCheckResult:
    table = conservation_table(settings, source)
    broken = table.filter(~pl.col("balanced"))
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name="records_conserved",
        passed=broken.height == 0,
        metadata={
            "files": table["source_file"].n_unique(),
            "unbalanced": broken.height,
            "first_unbalanced": dg.MetadataValue.md(markdown_table(broken, 20)),
        },
    )


def _report_metadata(context: AssetExecutionContext, report: ingest.IngestReport, settings, source: str) -> dict:
    quarantine = quarantine_frame(settings).filter(pl.col("source_file").str.starts_with(f"raw/{source}/"))
    by_rule = Counter(quarantine["rule_id"].to_list())
    touched = municipalities_touched(settings, report.changed_files)
    return {
        "files_read": len(report.files),
        "files_unchanged": len(report.unchanged),
        "files_removed": len(report.removed),
        "municipalities_touched": dg.MetadataValue.json(touched),
        "files_quarantined_whole": len(report.files_rejected),
        "records_in": report.records_in,
        "rows_staged": report.staged,
        "rows_quarantined": report.quarantined,
        "quarantined_by_rule": dg.MetadataValue.json(dict(sorted(by_rule.items()))),
        **chart_metadata(context, "quarantined_by_rule_chart",
                         lambda: quarantine_chart(settings.data_root, source)),
    }


@dg.multi_asset(
    specs=[asset_spec(name, GROUP, {"parquet"}) for name in IPLOS_ASSETS],
    check_specs=[dg.AssetCheckSpec("records_conserved", asset=IPLOS_SERVICES.asset,
                                   description="per file: records in = staged + quarantined")],
    partitions_def=data_years,
    backfill_policy=single_run,
    pool=STAGING_POOL,
)
def iplos_extracts(context: AssetExecutionContext, ktt: KttResource):
    """Read every yearly extract of the selected data years (3.6 or 3.7 by the file's root)."""
    settings, keys = ktt.run_settings(), ktt.secret_keys()
    years = [int(year) for year in context.partition_keys]
    report = ingest.ingest_iplos_years(settings, keys, years)
    context.log.info(f"data years {years[0]}-{years[-1]}: {len(report.files)} files read ({len(report.unchanged)} "
                     f"unchanged, not read), {report.staged} staged, {report.quarantined} quarantined")
    metadata = _report_metadata(context, report, settings, "iplos")
    for name in IPLOS_ASSETS:
        yield dg.MaterializeResult(asset_key=name, metadata=metadata)
    yield _conservation_check(IPLOS_SERVICES.asset, settings, "iplos")


@dg.multi_asset(
    specs=[asset_spec(name, GROUP, {"parquet"}) for name in EPJ_ASSETS],
    check_specs=[dg.AssetCheckSpec("records_conserved", asset=EPJ_SERVICE_VERSIONS.asset,
                                   description="per file: records in = staged + quarantined")],
    pool=STAGING_POOL,
)
def epj_histories(context: AssetExecutionContext, ktt: KttResource):
    """Read the EPJ exports listed in config/kommuner.toml."""
    settings, keys = ktt.run_settings(), ktt.secret_keys()
    report = ingest.ingest_epj(settings, keys)
    context.log.info(f"EPJ: {len(report.files)} files read ({len(report.unchanged)} unchanged, not read), "
                     f"{report.staged} staged, {report.quarantined} quarantined")
    metadata = _report_metadata(context, report, settings, "epj")
    for name in EPJ_ASSETS:
        yield dg.MaterializeResult(asset_key=name, metadata=metadata)
    yield _conservation_check(EPJ_SERVICE_VERSIONS.asset, settings, "epj")


@dg.multi_asset(specs=[asset_spec(IDENTITY_VAULT.asset, GROUP, {"parquet"})], pool=STAGING_POOL)
def identity_vault(ktt: KttResource) -> dg.MaterializeResult:
    """Merge the per-file identity parts into one encrypted identity table.

    Only the message writer reads it; every other table carries pseudonyms.
    """
    vault = merge_vault(ktt.run_settings(), ktt.secret_keys())
    return dg.MaterializeResult(metadata={
        "persons": vault["person_key"].n_unique(),
        "identifiers": vault.height,
        "by_type": dg.MetadataValue.json({str(k): v for k, v in
                                          vault.group_by("id_type").len().sort("id_type").iter_rows()}),
    })


@dg.multi_asset(specs=[asset_spec(MUNICIPALITY_CODES.asset, GROUP, {"parquet"})], pool=STAGING_POOL)
def municipality_numbers(ktt: KttResource) -> dg.MaterializeResult:
    """Every kommunenummer valid 2017-2025 mapped to today's reporting municipality."""
    frame, target = write_municipality_codes(ktt.run_settings().data_root)
    return dg.MaterializeResult(metadata={
        "codes": frame.height,
        "reporting_municipalities": frame["reporting_kommune"].drop_nulls().n_unique(),
        "split_codes": frame.filter(pl.col("split")).height,
        "path": str(target),
    })
