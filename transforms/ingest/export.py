"""One file of an EPJ export through its source mapping: records staged or quarantined, batch by batch.

The format reader (`readers.csv_source`, `jsonl_source`, `xml_source`) turns a batch of records into
text columns; `records.evaluate` applies the rules; this module keeps what one file's reading must
remember across batches (exact duplicates, the records already seen for new-or-changed) and hands
the outcome to the sink. Snapshot dumps take one more step (`snapshots.py`): the good records of a
dump are compared with the state the earlier dumps left.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from transforms.ingest.mapping.model import RECORD_KEYS, Mapping, RecordMap
from transforms.ingest.quarantine import mask_identifiers
from transforms.ingest.readers.base import FileRejected, ReadContext
from transforms.ingest.readers.batch import Batch, FileState, first_of_file, text_column
from transforms.ingest.readers.csv_source import read_csv
from transforms.ingest.readers.jsonl_source import JsonShape, read_jsonl
from transforms.ingest.readers.xml_source import read_xml
from transforms.ingest.records import Evaluated, evaluate, staged_frame
from transforms.ingest.sink import FileSink

_DUPLICATE = {"csv": "row", "jsonl": "line", "xml": "record"}
_CHANGE = {"new": "NY", "changed": "ENDRET", "annulled": "ANNULLERT"}


@dataclass
class GoodRecords:
    """The good records of one batch and kind, as staged rows (before any snapshot comparison)."""

    record: RecordMap
    frame: pl.DataFrame


def matches(mapping: Mapping, name: str) -> RecordMap | bool | None:
    """The record map of a CSV file, True for another format's file, None when no pattern names it."""
    lowered = name.lower()
    if mapping.format.type == "csv":
        return next((r for r in mapping.records.values() if fnmatch.fnmatch(lowered, r.file.lower())), None)
    return True if any(fnmatch.fnmatch(lowered, p.lower()) for p in mapping.format.files) else None


def batches(path: Path, mapping: Mapping) -> Iterator[Batch]:
    """The file's records in batches, or FileRejected when the file is not one of the export's."""
    found = matches(mapping, path.name)
    if found is None:
        raise FileRejected("file.unknown_layout", f"{path.name!r} is not a {mapping.name} file (expected one of "
                                                  f"{', '.join(mapping.file_patterns)})")
    if mapping.format.type == "csv":
        return read_csv(path, mapping, found)  # type: ignore[arg-type]
    if mapping.format.type == "jsonl":
        return read_jsonl(path, mapping, JsonShape(mapping))
    return read_xml(path, mapping)


def _mask(values: pl.Series, tag) -> pl.Series:
    """Identifier-like runs replaced by their pseudonym tag, looked at only where a run may be."""
    suspect = values.str.contains(r"\d{11}").fill_null(False)
    if not suspect.any():
        return values
    masked = [mask_identifiers(v, tag) for v in values.filter(suspect).to_list()]
    return values.scatter(suspect.arg_true(), pl.Series(masked, dtype=pl.Utf8))


def _rejected(frame: pl.DataFrame, rule: pl.Expr | str, message: pl.Expr | str) -> pl.DataFrame:
    rule = pl.lit(rule) if isinstance(rule, str) else rule
    message = pl.lit(message) if isinstance(message, str) else message
    element = [pl.col("_element")] if "_element" in frame.columns else []
    return frame.select("kind", "line", "location", rule.alias("rule_id"), message.alias("message"),
                        pl.col("raw").alias("raw_value"), *element)


class FileReader:
    """Reads one file of an export into a sink, yielding each batch's good records.

    A snapshot dump holds one row per record: a second good row for a record already in the dump is
    quarantined (`record.duplicate`), and the keys of quarantined rows are kept (`present`): such a
    record is still in the dump, though unreadable, so it has not disappeared.
    """

    def __init__(self, mapping: Mapping, sink: FileSink, ctx: ReadContext):
        self.mapping = mapping
        self.sink = sink
        self.ctx = ctx
        self.state = FileState()
        self.snapshot = mapping.history == "snapshot-series"
        self.present: dict[str, list[pl.Series]] = {}
        self.observer = None  # called with (record, evaluated) for every batch (`ktt sources check`)

    def read(self, path: Path) -> Iterator[GoodRecords]:
        for batch in batches(path, self.mapping):
            yield from self.batch(batch)

    def batch(self, batch: Batch) -> Iterator[GoodRecords]:
        sink, frame = self.sink, batch.frame
        if frame.height == 0:
            return
        tag = sink.pseudonymizer.tag
        frame = frame.with_columns(_mask(frame["location"], tag).alias("location"))
        if batch.raw_of is not None:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias("raw"))
        sink.seen_kinds(frame["kind"])
        first = first_of_file(self.state, frame["dup"])
        frame = frame.with_columns(
            pl.when(pl.col("pre_rule").is_not_null()).then(pl.lit("pre"))
            .when(~first).then(pl.lit("dup"))
            .when(pl.col("post_rule").is_not_null()).then(pl.lit("post")).alias("_fate"))
        rejects = [
            _rejected(frame.filter(pl.col("_fate") == "pre"), pl.col("pre_rule"), pl.col("pre_message")),
            _rejected(frame.filter(pl.col("_fate") == "dup"), "record.duplicate",
                      f"exact duplicate of an earlier {_DUPLICATE[self.mapping.format.type]} of this file"),
            _rejected(frame.filter(pl.col("_fate") == "post"), pl.col("post_rule"), pl.col("post_message")),
        ]
        for record in self.mapping.records.values():
            rows = frame.filter(pl.col("_fate").is_null() & (pl.col("record") == record.name))
            if rows.height == 0:
                continue
            evaluated = evaluate(rows, record, self.ctx)
            if self.observer is not None:
                self.observer(record, evaluated)
            if self.snapshot:
                evaluated = self.one_row_per_record(evaluated, record)
            bad = evaluated.rule.is_not_null()
            if self.snapshot and bad.any():
                self.present.setdefault(record.name, []).append(_key_text(rows.filter(bad), record))
            if bad.any():
                messages = evaluated.message.filter(bad)
                rejects.append(_rejected(rows.filter(bad), pl.lit(evaluated.rule.filter(bad)),
                                         pl.lit(_mask(messages, tag))))
            good = self.good(evaluated, record)
            if good.height:
                yield GoodRecords(record, good)
        rejected = pl.concat([r for r in rejects if r.height]) if any(r.height for r in rejects) else None
        if rejected is not None:
            if batch.raw_of is not None:
                rejected = rejected.with_columns(batch.raw_of(rejected).alias("raw_value")).drop("_element")
            sink.reject_frame(rejected.sort("line"))

    def one_row_per_record(self, evaluated: Evaluated, record: RecordMap) -> Evaluated:
        """Good rows whose record was already in the dump become `record.duplicate`."""
        good = evaluated.rule.is_null()
        keys = _key_values(evaluated.values, record)
        seen = self.state.seen_keys.get(record.name, pl.DataFrame(schema={"key": pl.Utf8}))
        first = keys.is_first_distinct() & ~keys.is_in(seen["key"].implode())
        again = good & ~first
        self.state.seen_keys[record.name] = pl.concat([seen, pl.DataFrame({"key": keys.filter(good & first)})])
        if not again.any():
            return evaluated
        names = ", ".join(RECORD_KEYS[record.name])
        rule = pl.select(pl.when(again).then(pl.lit("record.duplicate")).otherwise(evaluated.rule)).to_series()
        message = pl.select(pl.when(again).then(pl.lit(f"another record of this dump has the same {names}"))
                            .otherwise(evaluated.message)).to_series()
        return Evaluated(evaluated.rows, evaluated.values, rule, message, evaluated.parsed)

    def good(self, evaluated: Evaluated, record: RecordMap) -> pl.DataFrame:
        frame, identities = staged_frame(evaluated, record, self.mapping, self.ctx, self.sink.rel_path,
                                         self.sink.pseudonymizer)
        if identities is not None:
            self.sink.register_identities(identities)
        if "change_type" in frame.columns and self.mapping.history == "audit-trail":
            frame = self.change_types(frame, record)
        return frame

    def change_types(self, frame: pl.DataFrame, record: RecordMap) -> pl.DataFrame:
        """Map words to NY/ENDRET/ANNULLERT; new-or-changed is NY for a record's first staged version in
        the file (whatever its status) and ENDRET after it."""
        keys = list(RECORD_KEYS[record.name])
        key = pl.concat_str([pl.col(k) for k in keys], separator="\x1f")
        seen = self.state.seen_keys.get(record.name, pl.DataFrame(schema={"key": pl.Utf8}))
        frame = frame.with_columns(key.alias("_key"))
        first = frame["_key"].is_first_distinct() & ~frame["_key"].is_in(seen["key"].implode())
        self.state.seen_keys[record.name] = pl.concat([seen, frame.select(pl.col("_key").alias("key")).unique()])
        word = pl.col("change_type")
        return frame.with_columns(
            pl.when(word == "new-or-changed").then(pl.when(first).then(pl.lit("NY")).otherwise(pl.lit("ENDRET")))
            .otherwise(word.replace_strict(_CHANGE, default=None)).alias("change_type")).drop("_key")


def _key_values(values: pl.DataFrame, record: RecordMap) -> pl.Series:
    return values.select(pl.concat_str([pl.col(k).cast(pl.Utf8) for k in RECORD_KEYS[record.name]],
                                       separator="\x1f")).to_series().alias("key")


def _key_text(rows: pl.DataFrame, record: RecordMap) -> pl.Series:
    """The key of quarantined rows as written (stripped), where the mapping reads it from a field."""
    parts = []
    for target in RECORD_KEYS[record.name]:
        column = record.column(target)
        if column is None or column.source is None:
            return pl.Series("key", [], dtype=pl.Utf8)
        parts.append(pl.col(text_column(column.source)).str.strip_chars())
    return rows.select(pl.concat_str(parts, separator="\x1f").alias("key")).to_series().drop_nulls()


def read_export_file(path: Path, sink: FileSink, ctx: ReadContext, mapping: Mapping) -> None:
    """Stage one file of an audit-trail export; raise FileRejected when the file cannot be read."""
    reader = FileReader(mapping, sink, ctx)
    for good in reader.read(path):
        sink.stage_frame(good.record.table.name, good.record.kind, good.frame)
