"""CSV files of an export, read in batches of lines into text columns.

The whole batch is decoded in one call and split with Polars; a line with a quote or a stray carriage
return is split by the `csv` module instead (quoting rules), one line at a time. Fields are found by
header name, so column order does not matter; a file whose header lacks a column the mapping reads
is rejected whole. Encoding is strict: bytes the declared encoding does not define, NUL bytes
(UTF-16) and, for a single-byte encoding, lines that are valid UTF-8 (which Windows-1252 would turn
into 'StrÃ¸msÃ¸' without complaint) reject the whole file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from transforms.ingest.mapping.model import Mapping, RecordMap
from transforms.ingest.readers.base import FileRejected
from transforms.ingest.readers.batch import Batch, empty_lines, iter_line_chunks, text_column

_MULTIBYTE = ("utf-8", "utf_8", "utf8", "utf-8-sig", "utf-16", "utf-32")


def _check_encoding(lines: list[bytes], first_line: int, encoding: str) -> str:
    """The lines decoded as one text, or FileRejected naming the first line that is not `encoding`."""
    data = b"".join(lines)
    single_byte = encoding.lower().replace("_", "-") not in _MULTIBYTE
    try:
        text = data.decode(encoding)
        clean = b"\x00" not in data
    except UnicodeDecodeError:
        text, clean = "", False
    if clean and (not single_byte or data.isascii()):
        return text
    for offset, raw in enumerate(lines):
        line_no = first_line + offset
        if b"\x00" in raw:
            raise FileRejected("file.encoding_mismatch", f"line {line_no} holds NUL bytes: not a {encoding} file")
        try:
            raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise FileRejected("file.encoding_mismatch",
                               f"line {line_no}: byte {raw[exc.start]:#04x} is not {encoding}") from None
        if single_byte and not raw.isascii():
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            raise FileRejected("file.encoding_mismatch", f"line {line_no} is UTF-8 encoded, the format is {encoding}")
    return text


def _split_one(text: str, delimiter: str) -> list[str] | None:
    try:
        return next(csv.reader((text,), delimiter=delimiter, strict=False))
    except csv.Error:
        return None


def _header(handle, path: Path, mapping: Mapping, record: RecordMap) -> tuple[dict[str, int], int, int, int]:
    """(source column -> field index, fields in a row, named fields, lines the header took)."""
    fmt = mapping.format
    wanted = [s.lower() for s in record.sources]
    if not fmt.header:
        names = [n.lower() for n in record.header_names]
        return {name: names.index(name) for name in wanted}, len(names), len(names), 0
    first = handle.readline()
    text = _check_encoding([first], 1, fmt.encoding).rstrip("\r\n") if first else ""
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise FileRejected("file.unreadable", f"{path.name}: empty file or empty header line")
    names = [n.strip().lower() for n in (_split_one(text, fmt.delimiter) or [])]
    width = len(names)
    while names and not names[-1]:
        names.pop()
    missing = [c for c in wanted if c not in names]
    extra = [n or "(empty name)" for n in names if n not in wanted] if fmt.unknown_columns == "reject" else []
    doubled = sorted({n for n in names if names.count(n) > 1 and (n in wanted or fmt.unknown_columns == "reject")})
    if missing or extra or doubled:
        parts = []
        if missing:
            parts.append(f"missing columns {', '.join(missing)}")
        if extra:
            parts.append(f"unknown columns {', '.join(extra)}")
        if doubled:
            parts.append(f"repeated columns {', '.join(doubled)}")
        raise FileRejected("file.unknown_layout",
                           f"{path.name}: header does not match the {mapping.name} layout: {'; '.join(parts)}")
    return {name: names.index(name) for name in wanted}, width, len(names), 1


def read_csv(path: Path, mapping: Mapping, record: RecordMap, hint: int = 8 << 20) -> Iterator[Batch]:
    """Batches of one CSV file's rows, for `record`."""
    fmt = mapping.format
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise FileRejected("file.unreadable", f"{path.name}: {exc.strerror or exc}") from None
    with handle:
        index, width, named, next_line = _header(handle, path, mapping, record)
        for chunk in iter_line_chunks(handle, hint):
            first = next_line + 1
            next_line += len(chunk)
            text = _check_encoding(chunk, first, fmt.encoding)
            yield Batch(_frame(text, first, len(chunk), record, index, width, named, fmt.delimiter))


def location_expr(parts: list[tuple[str, pl.Expr]]) -> pl.Expr:
    """`name=value,...` of the location fields; `line=N` where every one is empty (or there are none)."""
    if not parts:
        return pl.concat_str([pl.lit("line="), pl.col("line").cast(pl.Utf8)])
    values = [v.str.strip_chars() for _, v in parts]
    joined = pl.concat_str([pl.concat_str([pl.lit(f"{name}="), v.fill_null("")]) for (name, _), v in
                            zip(parts, values, strict=True)], separator=",")
    empty = pl.all_horizontal([v.fill_null("") == "" for v in values])
    return pl.when(empty).then(pl.concat_str([pl.lit("line="), pl.col("line").cast(pl.Utf8)])).otherwise(joined)


def _frame(text: str, first: int, n_lines: int, record: RecordMap, index: dict[str, int], width: int,
           named: int, delimiter: str) -> pl.DataFrame:
    lines = pl.Series("raw", text.split("\n")[:n_lines]).str.strip_chars_end("\r\n")
    frame = pl.DataFrame({"line": pl.int_range(first, first + n_lines, eager=True), "raw": lines})
    frame = frame.filter(~empty_lines(frame["raw"]))
    special = frame["raw"].str.contains('["\r]')
    fields = frame["raw"].str.split(delimiter)
    if special.any():
        slow = [_split_one(t, delimiter) for t in frame["raw"].filter(special).to_list()]
        fields = fields.scatter(special.arg_true(), pl.Series(slow, dtype=pl.List(pl.Utf8)))
    frame = frame.with_columns(fields.alias("_fields"))
    count = pl.col("_fields").list.len()
    beyond = (pl.lit(False) if width <= named else
              pl.col("_fields").list.slice(named, width - named).list.eval(
                  pl.element().str.strip_chars() != "").list.any())
    frame = frame.with_columns(
        pl.when(pl.col("_fields").is_null()).then(pl.lit("the row's quoting cannot be read"))
        .when(count != width).then(pl.concat_str([count.cast(pl.Utf8), pl.lit(f" fields, the header has {width}")]))
        .when(beyond).then(pl.lit("a value in a column the header does not name"))
        .alias("pre_message"))
    ok = pl.col("pre_message").is_null()
    frame = frame.with_columns(
        [pl.when(ok).then(pl.col("_fields").list.get(index[src.lower()], null_on_oob=True)).alias(text_column(src))
         for src in record.sources])
    location = location_expr([(src, pl.col(text_column(src))) for src in record.location])
    return frame.with_columns(
        pl.lit(record.name).alias("record"), pl.lit(record.kind).alias("kind"),
        pl.when(ok).then(location).otherwise(pl.concat_str([pl.lit("line="), pl.col("line").cast(pl.Utf8)]))
        .alias("location"),
        pl.when(ok).then(None).otherwise(pl.lit("record.malformed")).alias("pre_rule"),
        pl.when(ok).then(pl.col("raw")).alias("dup"),
        pl.lit(None, dtype=pl.Utf8).alias("post_rule"), pl.lit(None, dtype=pl.Utf8).alias("post_message"),
    ).drop("_fields")
