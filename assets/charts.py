"""Charts as asset metadata: the picture inline (Markdown with a data: URI) and the path of its PNG file.

A run over a range of daily partitions records one materialisation per day, each with the run's metadata:
a 200 kB picture in each of a nine-year backfill's 3,287 cost 670 MB of event log (memory in an in-process
run, the instance's database otherwise) and seconds to record. Such assets record the picture once, as an
observation of the range's last day (`observed_chart`); each day's materialisation names the file.
"""

from collections.abc import Callable

import dagster as dg

from transforms.report.charts import Chart


def chart_metadata(context: dg.AssetExecutionContext, key: str, build: Callable[[], Chart]) -> dict:
    """`{key: picture, key_file: path}`; a chart that cannot be drawn is logged, never fails the asset.

    The asset's work (staged files, messages, ledger) is done by the time its picture is drawn,
    so a plotting problem must not turn a good materialisation into a failed one.
    """
    try:
        chart = build()
    except Exception as error:
        context.log.warning(f"{key}: chart not drawn: {error!r}")
        return {f"{key}_error": dg.MetadataValue.text(repr(error))}
    return {key: dg.MetadataValue.md(chart.markdown()), f"{key}_file": dg.MetadataValue.path(str(chart.path))}


def observed_chart(context: dg.AssetExecutionContext, asset_key: dg.AssetKey, key: str,
                   build: Callable[[], Chart]) -> dict:
    """`chart_metadata` for an asset materialised over a range of partitions: the picture is logged once, as an
    observation of the range's last partition; returned is what every partition's materialisation carries
    (the file's path, or the error)."""
    metadata = chart_metadata(context, key, build)
    if key in metadata:
        context.log_event(dg.AssetObservation(asset_key=asset_key, partition=context.partition_key_range.end,
                                              metadata=metadata))
    return {name: value for name, value in metadata.items() if name != key}
