"""A series of full dumps (history = "snapshot-series"): versions found by comparing each dump with the last.

A dump holds every record as it stood on the dump date, with no history inside. Each dump is read
like any export file (every record staged for comparison or quarantined); its good records are then
compared with the state the earlier dumps left, in DuckDB:

- a record not in the state is new (NY), one whose values differ changed (ENDRET), one whose status
  word means annulled is ANNULLERT; all registered on the dump date (unless the mapping reads a
  registration time);
- a record equal to its state is `unchanged`: no version, counted in the file's counts;
- a record of the state that the dump no longer holds (not even as a quarantined row) has
  disappeared: it is ended on the dump date or annulled, as the mapping says, staged as a version
  with line 0 (the dump as a whole), counted as a record of the dump, and listed in
  `epj_snapshot_disappeared` either way.

The state is read back from the versions staged for the earlier dumps of the system (the latest
version of each record, unless that version is a disappearance), so a new dump is compared without
re-reading the old ones; a changed old dump re-stages itself and every later dump.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import zoneinfo
from pathlib import Path

import polars as pl

from transforms.core import duck
from transforms.core.duck import sql_list, sql_literal
from transforms.ingest.export import FileReader
from transforms.ingest.mapping.model import RECORD_KEYS, RECORD_TABLES, Mapping
from transforms.ingest.readers.base import FileRejected, ReadContext
from transforms.ingest.sink import FileSink
from transforms.tables import EPJ_SNAPSHOT_DISAPPEARED
from transforms.tables.model import duckdb_type

# the values that make a record's state (lineage, registration time and change type are not state)
_STATE = {
    "persons": ("unit", "user_no", "person_key", "id_type", "sex", "birth_year", "district", "death_date"),
    "services": ("unit", "user_no", "service_code", "decision_date", "start_date", "end_date", "provider_org",
                 "hours_per_week", "migrated_from_system", "migrated_from_service_id"),
    "stops": ("unit", "from_date", "to_date"),
}
_ENDS = {"services": "end_date", "stops": "to_date"}


def dump_date(mapping: Mapping, path: Path) -> dt.date:
    """The dump's date from its file name, or FileRejected when the name holds none."""
    snapshots = mapping.snapshots
    found = re.search(snapshots.date_pattern, path.name)
    if found is None:
        raise FileRejected("file.unknown_layout", f"{path.name!r}: the file name holds no dump date "
                                                  f"(the mapping's dump_date is {snapshots.date_pattern!r})")
    try:
        return dt.datetime.strptime(found.group(1), snapshots.date_format).date()
    except ValueError:
        raise FileRejected("file.unknown_layout", f"{path.name!r}: {found.group(1)!r} is not a dump date in "
                                                  f"format {snapshots.date_format}") from None


def dated_dumps(mapping: Mapping, files: list[Path]) -> tuple[list[tuple[dt.date, Path]], list[Path]]:
    """(dumps in date order, files whose name holds no dump date)."""
    dated, undated = [], []
    for path in files:
        try:
            dated.append((dump_date(mapping, path), path))
        except FileRejected:
            undated.append(path)
    return sorted(dated), undated


def _registered(day: dt.date, zone: str) -> dt.datetime:
    """A dump's versions are registered at the start of its day, local time."""
    local = dt.datetime(day.year, day.month, day.day, tzinfo=zoneinfo.ZoneInfo(zone))
    return local.astimezone(dt.UTC)


def _key_sql(record: str, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return " || chr(31) || ".join(f"CAST({prefix}{k} AS VARCHAR)" for k in RECORD_KEYS[record])


def stage_dump(path: Path, day: dt.date, earlier: list[Path], mapping: Mapping, sink: FileSink, ctx: ReadContext
               ) -> None:
    """Read one dump and stage what changed since the state the `earlier` dumps left."""
    reader = FileReader(mapping, sink, ctx)
    scratch = sink.scratch / "dump"
    scratch.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    for good in reader.read(path):
        n = written.get(good.record.name, 0)
        good.frame.write_parquet(scratch / f"{good.record.name}-{n:05d}.parquet")
        written[good.record.name] = n + 1
    for name, keys in reader.present.items():
        pl.concat(keys).to_frame().write_parquet(scratch / f"present-{name}.parquet")
    with duck.connect(memory_limit="2GB") as con:
        for name, record in mapping.records.items():
            _compare(con, name, record.kind, scratch, written.get(name, 0) > 0, earlier, day, mapping, sink)
    shutil.rmtree(scratch, ignore_errors=True)


def _compare(con, name: str, kind: str, scratch: Path, any_good: bool, earlier: list[Path], day: dt.date,
             mapping: Mapping, sink: FileSink) -> None:
    table = RECORD_TABLES[name]
    columns = list(table.column_names)
    empty = "SELECT " + ", ".join(f"NULL::{duckdb_type(table.schema[c])} AS {c}" for c in columns) + " WHERE false"
    current = f"SELECT * FROM read_parquet({sql_literal(scratch / f'{name}-*.parquet')})" if any_good else empty
    present_file = scratch / f"present-{name}.parquet"
    present = f"SELECT key FROM read_parquet({sql_literal(present_file)})" if present_file.exists() else \
        "SELECT NULL::VARCHAR AS key WHERE false"
    earlier_parts = [p for dump in earlier for p in sink.staged_parts(table, sink.root.relative(dump))]
    order = ", ".join(f"({sql_literal(sink.root.relative(d))}, {i})" for i, d in enumerate(earlier)) or "(NULL, 0)"
    # the staged folders are named `system=<kommune>-<system>`: read as hive partitions they would replace
    # the rows' own `system` column with the folder's name
    previous = (f"""SELECT p.* FROM read_parquet({sql_list(earlier_parts)}, hive_partitioning = false) p
                   JOIN (VALUES {order}) o(file, rank) ON o.file = p.source_file
                   QUALIFY row_number() OVER (PARTITION BY {_key_sql(name, 'p')}
                                              ORDER BY o.rank DESC, p.line DESC) = 1"""
                if earlier_parts else empty)
    con.execute(f"CREATE OR REPLACE TEMP TABLE cur AS SELECT *, {_key_sql(name)} AS _key FROM ({current})")
    con.execute(f"CREATE OR REPLACE TEMP TABLE prev AS SELECT *, {_key_sql(name)} AS _key FROM ({previous}) "
                "WHERE line <> 0")
    state = _STATE[name]
    same = " AND ".join(f"c.{c} IS NOT DISTINCT FROM p.{c}" for c in state)
    annulled = "coalesce(c.change_type = 'annulled', FALSE)" if "change_type" in columns else "FALSE"
    was_annulled = "coalesce(p.change_type = 'ANNULLERT', FALSE)" if "change_type" in columns else "FALSE"
    registered = sql_literal(_registered(day, mapping.format.time_zone).isoformat())
    select_cur = ", ".join(
        f"coalesce(c.registered_at, CAST({registered} AS TIMESTAMPTZ)) AS registered_at" if c == "registered_at"
        else (f"CASE WHEN {annulled} THEN 'ANNULLERT' WHEN p._key IS NULL THEN 'NY' ELSE 'ENDRET' END "
              "AS change_type") if c == "change_type" else f"c.{c}" for c in columns)
    versions = con.execute(f"""
        SELECT {select_cur} FROM cur c LEFT JOIN prev p ON p._key = c._key
        WHERE p._key IS NULL OR NOT ({same}) OR ({annulled}) <> ({was_annulled})
        ORDER BY c.line""").pl()
    unchanged = con.execute(f"""SELECT count(*) FROM cur c JOIN prev p ON p._key = c._key
        WHERE ({same}) AND ({annulled}) = ({was_annulled})""").fetchone()[0]
    gone = con.execute(f"""SELECT p.* FROM prev p
        WHERE p._key NOT IN (SELECT _key FROM cur) AND p._key NOT IN (SELECT key FROM ({present}))
        ORDER BY p._key""").pl()
    if versions.height:
        sink.stage_frame(table.name, kind, versions.select(columns))
    sink.unchanged[kind] += unchanged
    if gone.height:
        _disappeared(gone.drop("_key"), name, kind, day, mapping, sink, columns)


def _disappeared(gone: pl.DataFrame, name: str, kind: str, day: dt.date, mapping: Mapping, sink: FileSink,
                 columns: list[str]) -> None:
    """Records the dump no longer holds: a version that ends or annuls each (persons: none), and a finding."""
    sink.seen(kind, gone.height)
    mode = mapping.snapshots.disappeared
    registered = _registered(day, mapping.format.time_zone)
    base = gone.with_columns(pl.lit(sink.rel_path).alias("source_file"), pl.lit(0, dtype=pl.Int64).alias("line"),
                             pl.lit(registered).alias("registered_at"))
    if name == "persons":
        versions, action = base.clear(), pl.lit("none")
    elif mode == "annul":
        versions = base.with_columns(pl.lit("ANNULLERT").alias("change_type"))
        action = pl.lit("annulled")
    else:
        end = _ENDS[name]
        open_or_later = pl.col(end).is_null() | (pl.col(end) > day)
        versions = base.filter(open_or_later).with_columns(pl.lit(day).alias(end),
                                                           pl.lit("ENDRET").alias("change_type"))
        action = pl.when(open_or_later).then(pl.lit("ended")).otherwise(pl.lit("none"))
    if versions.height:
        sink.stage_frame(RECORD_TABLES[name].name, kind, versions.select(columns))
    sink.unchanged[kind] += gone.height - versions.height
    keys = gone.select(pl.concat_str([pl.col(k).cast(pl.Utf8) for k in RECORD_KEYS[name]], separator="/")
                       .alias("record_key"))
    finding = gone.select(
        pl.lit(sink.rel_path).alias("source_file"), "system", "reporting_kommune", pl.lit(kind).alias("record_kind"),
        keys["record_key"], pl.col("source_file").alias("last_seen_in"), pl.lit(day).alias("dump_date"),
        action.alias("action"))
    sink.add_finding(EPJ_SNAPSHOT_DISAPPEARED, finding)
