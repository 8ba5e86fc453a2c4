"""One staged column from its source column: the vectorised rule, and the scalar rule for the rest.

`parse` runs `vector.fast` over the whole column; the values it leaves undecided (a bad value, an
empty required field, a shape it does not know) go to `scalar.apply` once per distinct value, and
their outcome (a value, or the rule and message) is joined back. Bad values are rare, so nearly all
the work is columnar, and every message is the one the scalar rule writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from transforms.ingest.values import scalar, vector
from transforms.ingest.values.fields import FieldError
from transforms.ingest.values.spec import JsonType, ValueSpec

_PASSES_AS_TEXT = (int(JsonType.STRING), int(JsonType.INT), int(JsonType.FLOAT))


@dataclass(frozen=True)
class Parsed:
    """A column's staged values and, per row, the rule it broke (null where none) and the message."""

    values: pl.Series
    rule: pl.Series
    message: pl.Series


def python_value(text: str | None, jtype: int | None) -> Any:
    """The Python value a JSON field held, from its text and JSON type (text sources: the text)."""
    if jtype is None or text is None:
        return text if jtype is None else None
    kind = JsonType(jtype)
    if kind is JsonType.STRING:
        return text
    if kind is JsonType.INT:
        return int(text)
    if kind is JsonType.FLOAT:
        return float(text)
    if kind is JsonType.BOOL:
        return text == "true"
    if kind is JsonType.BAD_PARENT:
        raise FieldError("record.malformed", f"{text} is not a JSON object")
    return json.loads(text)


def _outcome(spec: ValueSpec, text: str | None, jtype: int | None) -> tuple[Any, str | None, str | None]:
    try:
        return scalar.apply(spec, python_value(text, jtype)), None, None
    except FieldError as exc:
        return None, exc.rejection.rule_id, exc.rejection.message


def parse_many(columns: list[tuple[ValueSpec, pl.Series, pl.Series | None]]) -> list[Parsed]:
    """`parse` of several columns of one frame, their vectorised rules evaluated in one Polars pass
    (a batch's fixed cost is the number of passes, so a small file pays it once per table, not per column)."""
    if not columns:
        return []
    height = len(columns[0][1])
    frame = pl.DataFrame({f"t{i}": text.cast(pl.Utf8) for i, (_, text, _) in enumerate(columns)} |
                         {f"j{i}": jtype for i, (_, _, jtype) in enumerate(columns) if jtype is not None},
                         height=height)
    exprs = []
    for i, (spec, _, jtype) in enumerate(columns):
        value, decided = vector.fast(spec, pl.col(f"t{i}"))
        if jtype is not None:
            decided = decided & (pl.col(f"j{i}").is_null() | pl.col(f"j{i}").is_in(_PASSES_AS_TEXT))
        exprs += [value.cast(vector.dtype_of(spec)).alias(f"v{i}"), decided.alias(f"ok{i}")]
    # lazily, for Polars' common-subexpression elimination: a rule's value is also in its `decided` (parsed,
    # not null, within range), and an eager select parsed each date and timestamp column up to four times
    evaluated = frame.lazy().select(exprs).collect()
    decided_all = evaluated.select([pl.col(f"ok{i}").all() for i in range(len(columns))]).row(0)
    none = pl.Series([None] * height, dtype=pl.Utf8)
    out = []
    for i, (spec, text, jtype) in enumerate(columns):
        if decided_all[i]:
            out.append(Parsed(evaluated[f"v{i}"].alias(text.name), none, none))
        else:
            out.append(parse(spec, text, jtype))
    return out


def parse(spec: ValueSpec, text: pl.Series, jtype: pl.Series | None = None) -> Parsed:
    """Parse `text` (Utf8) under `spec`; `jtype` gives the JSON type of each value of a JSON source."""
    dtype = vector.dtype_of(spec)
    frame = pl.DataFrame({"t": text.cast(pl.Utf8),
                          "j": jtype if jtype is not None else pl.Series([None] * len(text), dtype=pl.Int8)})
    value, decided = vector.fast(spec, pl.col("t"))
    if jtype is not None:
        decided = decided & (pl.col("j").is_null() | pl.col("j").is_in(_PASSES_AS_TEXT))
    frame = frame.lazy().with_columns(value.cast(dtype).alias("v"), decided.alias("ok")).collect()
    undecided = frame.filter(~pl.col("ok")).select("t", "j").unique(maintain_order=True)
    if undecided.height == 0:
        empty = pl.Series([None] * frame.height, dtype=pl.Utf8)
        return Parsed(frame["v"], empty, empty)
    outcomes = [_outcome(spec, t, j) for t, j in undecided.iter_rows()]
    slow = undecided.with_columns(
        pl.Series("sv", [o[0] for o in outcomes], dtype=dtype),
        pl.Series("rule", [o[1] for o in outcomes], dtype=pl.Utf8),
        pl.Series("message", [o[2] for o in outcomes], dtype=pl.Utf8),
        pl.lit(False).alias("ok"),
    )
    joined = frame.join(slow, on=["t", "j", "ok"], how="left", nulls_equal=True, maintain_order="left")
    return Parsed(
        joined.select(pl.when(pl.col("ok")).then(pl.col("v")).otherwise(pl.col("sv")).alias(text.name))
        .to_series(),
        joined["rule"], joined["message"],
    )
