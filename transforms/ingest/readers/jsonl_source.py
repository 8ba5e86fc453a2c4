"""JSON Lines files of an export, read in batches into text columns with their JSON types.

A batch is parsed by Polars against a schema made from the mapping's paths; the types there are
strict, so a line whose values do not have the expected JSON types makes Polars refuse the batch,
and the batch is then read line by line with the `json` module, which also gives the exact error of
a line that is not JSON. Polars turns a number, boolean or object in a text field into text without
a word; lines that may hold such a value (found by a scan of the raw text) are therefore always read
by the `json` module.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from transforms.ingest.mapping.model import Mapping
from transforms.ingest.readers.base import FileRejected
from transforms.ingest.readers.batch import UNKNOWN_KIND, Batch, empty_lines, iter_line_chunks, text_column, type_column
from transforms.ingest.readers.csv_source import location_expr
from transforms.ingest.values.column import python_value
from transforms.ingest.values.spec import JsonType

_NUMERIC = {"year": pl.Int64, "sex": pl.Int64, "integer": pl.Int64, "hours": pl.Float64}


class JsonShape:
    """The fields a mapping reads from a JSON line, with the types Polars must find."""

    def __init__(self, mapping: Mapping):
        self.mapping = mapping
        self.kind_field = mapping.format.kind_field
        types: dict[str, Any] = {}
        for record in mapping.records.values():
            for column in record.columns:
                if column.source:
                    types[column.source] = _NUMERIC.get(column.spec.kind, pl.Utf8)
                    if column.spec.kind == "sex" and column.spec.value_map is not None:
                        types[column.source] = pl.Utf8
            for name in record.location:
                types.setdefault(name, pl.Utf8)
        if self.kind_field:
            types[self.kind_field] = pl.Utf8
        self.paths = {path: tuple(path.split(".")) for path in types}
        self.types = types
        self.bodies = {r.body for r in mapping.records.values() if r.body}
        self.by_kind = {r.select: r for r in mapping.records.values()} if self.kind_field else {}
        self.single = next(iter(mapping.records.values())) if not self.kind_field else None
        self.schema = self._schema()
        text_leaves = sorted({p[-1] for path, p in self.paths.items() if types[path] == pl.Utf8})
        # a text field holding something that is not a string or null, or a lone surrogate escape
        self.suspect = re.compile(
            r'"(?:' + "|".join(map(re.escape, text_leaves)) + r')"\s*:\s*[^"n\s]|\\u[dD][89abAB]')
        self.hint = re.compile(r'"' + re.escape(self.kind_field or "kind") + r'"\s*:\s*"([^"\\]*)"')

    def _schema(self) -> dict[str, Any]:
        tree: dict[str, Any] = {}
        for path, parts in self.paths.items():
            node = tree
            for part in parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ValueError(f"{self.mapping.origin}: {path} passes through a value")
            node.setdefault(parts[-1], self.types[path])
        for body in self.bodies:
            tree.setdefault(body, {})

        def build(node: dict) -> dict[str, Any]:
            return {k: pl.Struct(build(v)) if isinstance(v, dict) else v for k, v in node.items()}
        return build(tree)


def read_jsonl(path: Path, mapping: Mapping, shape: JsonShape, hint: int = 8 << 20) -> Iterator[Batch]:
    encoding = mapping.format.encoding
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise FileRejected("file.unreadable", f"{path.name}: {exc.strerror or exc}") from None
    next_line = 0
    with handle:
        for chunk in iter_line_chunks(handle, hint):
            first = next_line + 1
            next_line += len(chunk)
            text = _decode(chunk, first, encoding)
            if first == 1:
                text = text.removeprefix("\ufeff")
            lines = pl.Series("raw", text.split("\n")[:len(chunk)]).str.strip_chars_end("\r\n")
            frame = pl.DataFrame({"line": pl.int_range(first, first + len(chunk), eager=True), "raw": lines})
            yield Batch(_columns(frame.filter(~empty_lines(frame["raw"])), shape))


def _decode(chunk: list[bytes], first: int, encoding: str) -> str:
    try:
        return b"".join(chunk).decode(encoding)
    except UnicodeDecodeError:
        pass
    for offset, raw in enumerate(chunk):
        try:
            raw.decode(encoding)
        except UnicodeDecodeError as exc:
            shown = "UTF-8" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
            raise FileRejected("file.encoding_mismatch",
                               f"line {first + offset}: byte {raw[exc.start]:#04x} is not {shown}") from None
    raise FileRejected("file.encoding_mismatch", f"lines {first}-{first + len(chunk) - 1} are not {encoding}")


def _columns(frame: pl.DataFrame, shape: JsonShape) -> pl.DataFrame:
    if frame.height == 0:
        return _python(frame, shape)
    suspect = frame["raw"].str.contains(shape.suspect.pattern)
    parsed = _polars(frame.filter(~suspect), shape)
    if parsed is None:
        return _python(frame, shape)
    if not suspect.any():
        return parsed
    return pl.concat([parsed, _python(frame.filter(suspect), shape)], how="vertical").sort("line")


def _polars(frame: pl.DataFrame, shape: JsonShape) -> pl.DataFrame | None:
    """The lines through Polars' JSON reader, or None when it refuses them."""
    if frame.height == 0:
        return _python(frame, shape)
    try:
        data = pl.read_ndjson(io.BytesIO("\n".join(frame["raw"].to_list()).encode("utf-8")),
                              schema=shape.schema)
    except Exception:  # any refusal sends the lines to the json module, which explains it
        return None
    if data.height != frame.height:
        return None
    exprs = []
    for path, parts in shape.paths.items():
        expr = pl.col(parts[0])
        for part in parts[1:]:
            expr = expr.struct.field(part)
        dtype = shape.types[path]
        jtype = JsonType.STRING if dtype == pl.Utf8 else JsonType.FLOAT if dtype == pl.Float64 else JsonType.INT
        exprs += [expr.cast(pl.Utf8).alias(text_column(path)),
                  pl.when(expr.is_not_null()).then(pl.lit(int(jtype), dtype=pl.Int8)).alias(type_column(path))]
    for body in shape.bodies:
        exprs.append(pl.when(pl.col(body).is_not_null()).then(pl.lit(int(JsonType.OBJECT), dtype=pl.Int8))
                     .alias(type_column(body)))
    columns = data.select(exprs).get_columns()
    out = frame.with_columns(*columns, pl.lit(None, dtype=pl.Utf8).alias("pre_rule"),
                             pl.lit(None, dtype=pl.Utf8).alias("pre_message"),
                             pl.lit(None, dtype=pl.Utf8).alias("_hint"))
    return _classify(out, shape)


def _value(value: Any) -> tuple[str | None, int | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        return value, JsonType.STRING
    if isinstance(value, bool):
        return ("true" if value else "false"), JsonType.BOOL
    if isinstance(value, int):
        return str(value), JsonType.INT
    if isinstance(value, float):
        return repr(value), JsonType.FLOAT
    return json.dumps(value, ensure_ascii=False), (JsonType.OBJECT if isinstance(value, dict) else JsonType.ARRAY)


def _get(event: dict, parts: tuple[str, ...]) -> tuple[str | None, int | None]:
    value: Any = event
    for i, key in enumerate(parts):
        if value is None:
            return None, None
        if not isinstance(value, dict):
            return ".".join(parts[:i]), JsonType.BAD_PARENT
        value = value.get(key)
    return _value(value)


def _python(frame: pl.DataFrame, shape: JsonShape) -> pl.DataFrame:
    """The lines one by one through the `json` module (exact errors, exact JSON types)."""
    names = [*shape.paths, *shape.bodies]
    texts: dict[str, list] = {n: [] for n in names}
    types: dict[str, list] = {n: [] for n in names}
    pre_message: list[str | None] = []
    hints: list[str | None] = []
    for raw in frame["raw"].to_list():
        hint = None
        try:
            event = json.loads(raw)
            problem = None if isinstance(event, dict) else f"a JSON {type(event).__name__}, not an object"
        except (ValueError, RecursionError) as exc:
            event, problem = None, f"not valid JSON: {exc}"
            found = shape.hint.search(raw)
            record = shape.by_kind.get(found.group(1)) if found else shape.single
            hint = record.kind if record else None
        pre_message.append(problem)
        hints.append(hint)
        event = event if problem is None else {}
        for n in names:
            text, jtype = _get(event, shape.paths.get(n, (n,)))
            texts[n].append(text)
            types[n].append(None if jtype is None else int(jtype))
    out = frame.with_columns(
        pl.Series("pre_message", pre_message, dtype=pl.Utf8),
        pl.Series("_hint", hints, dtype=pl.Utf8),
        *[pl.Series(text_column(n), texts[n], dtype=pl.Utf8) for n in shape.paths],
        *[pl.Series(type_column(n), types[n], dtype=pl.Int8) for n in names],
    ).with_columns(pl.when(pl.col("pre_message").is_not_null()).then(pl.lit("record.malformed")).alias("pre_rule"))
    return _classify(out, shape)


def _kind_message(shape: JsonShape, text: str | None, jtype: int | None) -> tuple[str, str]:
    value = python_value(text, jtype)
    if value is None or value == "":
        return "field.missing", f"required field {shape.kind_field} is empty"
    return "code.unknown_value", f"{shape.kind_field} {value!r} is not one of {', '.join(shape.by_kind)}"


def _usable(names: tuple[str, ...]) -> list[tuple[str, pl.Expr]]:
    """Location values: strings and integers only (a number-like id is still an id)."""
    return [(n, pl.when(pl.col(type_column(n)).is_in([int(JsonType.STRING), int(JsonType.INT)]))
             .then(pl.col(text_column(n)))) for n in names]


def _classify(frame: pl.DataFrame, shape: JsonShape) -> pl.DataFrame:
    """Record kind, kind errors, location and duplicate key of every line."""
    ok = pl.col("pre_rule").is_null()
    records = list(shape.mapping.records.values())
    if shape.kind_field:
        kind_text = pl.col(text_column(shape.kind_field))
        is_text = pl.col(type_column(shape.kind_field)) == int(JsonType.STRING)
        words = list(shape.by_kind)
        record = pl.when(ok & is_text).then(kind_text.replace_strict(
            words, [shape.by_kind[w].name for w in words], default=None))
    else:
        record = pl.when(ok).then(pl.lit(records[0].name))
    frame = frame.with_columns(record.alias("record"))
    location = _location(records[0].location)
    for rec in records:
        location = pl.when(pl.col("record") == rec.name).then(_location(rec.location)).otherwise(location)
    line = pl.concat_str([pl.lit("line="), pl.col("line").cast(pl.Utf8)])
    kinds = {r.name: r.kind for r in records}
    frame = frame.with_columns(
        pl.coalesce(pl.col("record").replace_strict(kinds, default=None), pl.col("_hint"), pl.lit(UNKNOWN_KIND))
        .alias("kind"),
        pl.when(ok).then(location).otherwise(line).alias("location"),
        pl.when(ok).then(pl.col("raw")).alias("dup"),
    ).drop("_hint")
    unknown = frame.select(ok & pl.col("record").is_null()).to_series()
    post_rule = [None] * frame.height
    post_message = [None] * frame.height
    if shape.kind_field and unknown.any():
        kind_col, type_col = text_column(shape.kind_field), type_column(shape.kind_field)
        for i in unknown.arg_true().to_list():
            post_rule[i], post_message[i] = _kind_message(shape, frame[kind_col][i], frame[type_col][i])
    return frame.with_columns(pl.Series("post_rule", post_rule, dtype=pl.Utf8),
                              pl.Series("post_message", post_message, dtype=pl.Utf8))


def _location(names: tuple[str, ...]) -> pl.Expr:
    return location_expr(_usable(names))
