"""Charts as asset metadata: the picture inline (Markdown with a data: URI) and the path of its PNG file."""

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
