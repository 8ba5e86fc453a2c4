"""Asset specs made from the table registry: key, description, dependencies and column metadata.

An asset's tables are declared in `transforms.tables` (the first is its main table); the spec takes
the main table's description and columns (shown under *Columns* in the UI), lists the paths of all of
them, and depends on the assets that write the tables they are made from. So the graph's edges are
the registry's `reads`, and a new input of a table is one edit there.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from transforms.tables import Table, assets_read_by, tables_of_asset, type_label


def column_schema(table: Table) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(c.name, type_label(c.dtype), description=c.description)
                                   for c in table.columns])


def table_metadata(tables: Iterable[Table]) -> dict[str, dg.MetadataValue]:
    """The path (relative to the data root) of each of an asset's tables."""
    return {f"table/{t.name}": dg.MetadataValue.text(t.path) for t in tables}


def asset_spec(asset: str, group: str, kinds: set[str], extra_deps: Iterable[str] = ()) -> dg.AssetSpec:
    tables = tables_of_asset(asset)
    if not tables:
        raise ValueError(f"asset {asset} has no table in the registry (transforms.tables)")
    main = tables[0]
    deps = [*assets_read_by(asset), *(d for d in extra_deps if d not in assets_read_by(asset))]
    return dg.AssetSpec(
        asset, group_name=group, kinds=kinds, deps=deps,
        description=main.description + (f" ({main.path})" if main.path else ""),
        metadata={"dagster/column_schema": column_schema(main), **table_metadata(tables)},
    )
