"""A batch of one record kind through its mapping: every rule over whole columns, the first broken wins.

The rules are applied in the order the record-at-a-time readers applied them, so a record that
breaks several rules is quarantined for the same one: the required object, the person's id type and
identifier, then the mapped columns in the mapping's order, then the period. Each rule yields a
(rule, message) column, null where it holds; the first non-null one per row is the record's fate.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from transforms.ingest.mapping.model import PERIODS, Column, Mapping, RecordMap
from transforms.ingest.readers.base import ReadContext
from transforms.ingest.readers.batch import text_column, type_column
from transforms.ingest.values import column as columns
from transforms.ingest.values import persons
from transforms.ingest.values.spec import JsonType
from transforms.privacy.identity import Pseudonymizer

CONTEXT = ("source_file", "line", "location", "system", "reporting_kommune")


@dataclass
class Evaluated:
    """`values`: one row per record with every mapped staged column (and `_identifier`, `_id_type` for
    persons); `rule`/`message`: the first broken rule per row, null where the record is good."""

    rows: pl.DataFrame
    values: pl.DataFrame
    rule: pl.Series
    message: pl.Series
    parsed: dict[str, columns.Parsed] | None = None  # per mapped column, its own outcome


def _source_text(rows: pl.DataFrame, column: Column) -> tuple[pl.Series, pl.Series | None]:
    text = rows[text_column(column.source)] if column.source else pl.Series([None] * rows.height, dtype=pl.Utf8)
    jname = type_column(column.source) if column.source else ""
    jtype = rows[jname] if jname in rows.columns else None
    if column.default is not None:
        empty = text.is_null() | (text.str.strip_chars() == "")
        text = pl.select(pl.when(empty).then(pl.lit(column.default)).otherwise(text)).to_series()
        if jtype is not None:
            jtype = pl.select(pl.when(empty).then(pl.lit(int(JsonType.STRING), dtype=pl.Int8))
                              .otherwise(jtype)).to_series()
    return text, jtype


def _parse(rows: pl.DataFrame, column: Column) -> columns.Parsed:
    if column.source is None:
        from transforms.ingest.values.vector import dtype_of

        value = pl.Series(column.target, [column.constant] * rows.height, dtype=dtype_of(column.spec))
        none = pl.Series([None] * rows.height, dtype=pl.Utf8)
        return columns.Parsed(value, none, none)
    text, jtype = _source_text(rows, column)
    return columns.parse(column.spec, text, jtype)


def _body_rule(rows: pl.DataFrame, record: RecordMap) -> tuple[pl.Series, pl.Series] | None:
    if not record.body:
        return None
    jtype = rows[type_column(record.body)]
    frame = pl.DataFrame({"j": jtype}).select(
        pl.when(pl.col("j").is_null()).then(pl.lit("field.missing"))
        .when(pl.col("j") != int(JsonType.OBJECT)).then(pl.lit("record.malformed")).alias("rule"),
        pl.when(pl.col("j").is_null()).then(pl.lit(f"required object {record.body} is missing"))
        .when(pl.col("j") != int(JsonType.OBJECT)).then(pl.lit(f"{record.body} is not a JSON object"))
        .alias("message"))
    return frame["rule"], frame["message"]


def _period(values: pl.DataFrame, record: RecordMap) -> tuple[pl.Series, pl.Series] | None:
    if record.name not in PERIODS:
        return None
    start, end, what = PERIODS[record.name]
    if start not in values.columns or end not in values.columns:
        return None
    bad = (pl.col(end) < pl.col(start)).fill_null(False)
    frame = values.select(
        pl.when(bad).then(pl.lit("period.end_before_start")).alias("rule"),
        pl.when(bad).then(pl.concat_str([pl.lit(f"{what} ends "), pl.col(end).cast(pl.Utf8),
                                         pl.lit(" before it starts "), pl.col(start).cast(pl.Utf8)]))
        .alias("message"))
    return frame["rule"], frame["message"]


def evaluate(rows: pl.DataFrame, record: RecordMap, ctx: ReadContext) -> Evaluated:
    """Apply every rule of `record` to `rows` (all of its kind, structurally sound)."""
    checks: list[tuple[pl.Series, pl.Series]] = []
    body = _body_rule(rows, record)
    if body:
        checks.append(body)
    sourced = [c for c in record.columns if c.source is not None]
    texts = [_source_text(rows, c) for c in sourced]
    many = dict(zip([c.target for c in sourced],
                    columns.parse_many([(c.spec, t, j) for c, (t, j) in zip(sourced, texts, strict=True)]),
                    strict=True))
    parsed = {c.target: many[c.target] if c.source is not None else _parse(rows, c) for c in record.columns}
    values = pl.DataFrame([p.values.alias(target) for target, p in parsed.items()]) if parsed else \
        pl.DataFrame(schema={})
    if "national_id" in parsed:
        declared = parsed["id_type"].values if "id_type" in parsed else pl.Series([None] * rows.height,
                                                                                  dtype=pl.Int32)
        if "id_type" in parsed:
            checks.append((parsed["id_type"].rule, parsed["id_type"].message))
        checks.append((parsed["national_id"].rule, parsed["national_id"].message))
        identity = persons.check(parsed["national_id"].values, declared, ctx.allow_synthetic_ids)
        checks.append((identity["rule"], identity["message"]))
        values = values.with_columns(parsed["national_id"].values.alias("_identifier"),
                                     identity["id_type"].alias("_id_type"))
    checks += [(p.rule, p.message) for p in parsed.values()]
    period = _period(values, record)
    if period:
        checks.append(period)
    if not checks:
        none = pl.Series([None] * rows.height, dtype=pl.Utf8)
        return Evaluated(rows, values, none, none, parsed)
    first = pl.DataFrame({f"r{i}": r for i, (r, _) in enumerate(checks)} |
                         {f"m{i}": m for i, (_, m) in enumerate(checks)}).select(
        pl.coalesce([pl.col(f"r{i}") for i in range(len(checks))]).alias("rule"),
        pl.coalesce([pl.when(pl.col(f"r{i}").is_not_null()).then(pl.col(f"m{i}").fill_null(pl.col(f"r{i}")))
                     for i in range(len(checks))]).alias("message"))
    return Evaluated(rows, values, first["rule"], first["message"], parsed)


def staged_frame(evaluated: Evaluated, record: RecordMap, mapping: Mapping, ctx: ReadContext, source_file: str,
                 pseudonymizer: Pseudonymizer) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The good records as rows of the staged table (change_type still as the mapping's word) and,
    for persons, their identities (person_key, fid, id_type)."""
    good = evaluated.rule.is_null()
    rows = evaluated.rows.filter(good)
    values = evaluated.values.filter(good)
    table = record.table
    frame = values.with_columns(
        pl.lit(source_file).alias("source_file"), rows["line"].alias("line"), rows["location"].alias("location"),
        pl.lit(ctx.system, dtype=pl.Utf8).alias("system"),
        pl.lit(ctx.reporting_kommune, dtype=pl.Utf8).alias("reporting_kommune"))
    identities = None
    if "_identifier" in frame.columns:
        keys = persons.pseudonyms(frame["_identifier"], pseudonymizer)
        frame = frame.with_columns(keys.alias("person_key"), pl.col("_id_type").alias("id_type"))
        identities = pl.DataFrame({"person_key": keys, "fid": frame["_identifier"], "id_type": frame["_id_type"]})
    missing = [pl.lit(None, dtype=dtype).alias(name) for name, dtype in table.schema.items()
               if name not in frame.columns]
    frame = frame.with_columns(missing)
    if "change_type" in table.schema and mapping.history == "audit-trail":
        frame = frame.with_columns(pl.col("change_type").cast(pl.Utf8))
    return frame.select([*table.column_names]), identities
