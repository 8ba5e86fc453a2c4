"""XML files of an export: record elements found by path, their fields collected into columns.

`lxml.etree.iterparse` hands over each record element when it ends; its fields (`@attr`, `Child`,
`Child/@attr`, `.`) are appended to plain lists, and every `batch_records` records the lists become
a batch. The batch's elements stay in the tree until the batch has been judged, so a rejected
record's raw text is serialised from the element itself; then they are cleared, so memory is
bounded by the batch, not the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
from lxml import etree

from transforms.ingest.mapping.model import Mapping, RecordMap
from transforms.ingest.readers.base import FileRejected
from transforms.ingest.readers.batch import Batch, text_column
from transforms.ingest.readers.csv_source import location_expr

Getter = Callable[[etree._Element], str | None]


def getter(path: str) -> Getter:
    """`@attr`, `Child`, `Child/@attr` or `.` relative to a record element, namespaces ignored."""
    if path == ".":
        return lambda elem: elem.text
    if path.startswith("@"):
        attribute = path[1:]
        return lambda elem: elem.get(attribute)
    child_path, _, attribute = path.partition("/@")
    child_tag = "/".join(f"{{*}}{step}" for step in child_path.split("/"))

    def get(elem: etree._Element) -> str | None:
        child = elem.find(child_tag)
        if child is None:
            return None
        return child.get(attribute) if attribute else child.text
    return get


def xml_error(exc: etree.XMLSyntaxError) -> FileRejected:
    """A parse error as the whole file's rejection: an encoding problem or a file that is not XML."""
    message = str(exc)
    lowered = message.lower()
    if "encoding" in lowered or "utf-8" in lowered or "char 0x" in lowered:
        return FileRejected("file.encoding_mismatch", f"bytes do not match the declared encoding: {message}")
    return FileRejected("file.unparseable", f"not well-formed XML: {message}")


def _steps(path: str) -> tuple[str, ...]:
    return tuple(s for s in path.strip("/").split("/") if s)


def _local_path(elem: etree._Element) -> tuple[str, ...]:
    steps = []
    while elem is not None:
        steps.append(etree.QName(elem).localname)
        elem = elem.getparent()
    return tuple(reversed(steps))


class _Collector:
    def __init__(self, mapping: Mapping):
        self.records = {_steps(r.select): r for r in mapping.records.values()}
        self.by_tag = {steps[-1]: (steps, r) for steps, r in self.records.items()}
        self.getters = {r.name: [(s, getter(s)) for s in r.sources] for r in mapping.records.values()}
        self.roots = {steps[0] for steps in self.records}
        self.reset()

    def reset(self) -> None:
        self.elements: list[etree._Element] = []
        self.lines: list[int] = []
        self.names: list[str] = []
        self.values: dict[str, dict[str, list]] = {r: {s: [] for s, _ in g} for r, g in self.getters.items()}

    def add(self, elem: etree._Element, steps: tuple[str, ...], record: RecordMap) -> None:
        if _local_path(elem) != steps:
            return
        self.elements.append(elem)
        self.lines.append(elem.sourceline)
        self.names.append(record.name)
        for name, values in self.values.items():
            if name == record.name:
                for source, get in self.getters[name]:
                    values[source].append(get(elem))
            else:
                for column in values.values():
                    column.append(None)

    def batch(self) -> Batch:
        elements = self.elements
        columns: dict[str, list] = {}
        for values in self.values.values():
            for source, column in values.items():
                existing = columns.get(source)
                columns[source] = column if existing is None else [a if b is None else b for a, b in
                                                                   zip(existing, column, strict=True)]
        frame = pl.DataFrame({"line": pl.Series(self.lines, dtype=pl.Int64),
                              "record": pl.Series(self.names, dtype=pl.Utf8),
                              **{text_column(s): pl.Series(v, dtype=pl.Utf8) for s, v in columns.items()}})
        frame = frame.with_row_index("_element")
        location = pl.lit(None, dtype=pl.Utf8)
        for record in {r.name: r for _, r in self.by_tag.values()}.values():
            parts = [(s.replace("@", ""), pl.col(text_column(s))) for s in record.location]
            location = pl.when(pl.col("record") == record.name).then(location_expr(parts)).otherwise(location)
        kinds = {r.name: r.kind for _, r in self.by_tag.values()}
        fields = [pl.col(c) for c in frame.columns if c.startswith("f:")]
        frame = frame.with_columns(
            pl.col("record").replace_strict(kinds).alias("kind"), location.alias("location"),
            pl.concat_str([pl.col("record"), *[f.fill_null("\x00") for f in fields]], separator="\x1f").alias("dup"),
            pl.lit(None, dtype=pl.Utf8).alias("raw"),
            *[pl.lit(None, dtype=pl.Utf8).alias(c) for c in ("pre_rule", "pre_message", "post_rule", "post_message")],
        )

        def raw_of(rejected: pl.DataFrame) -> pl.Series:
            return pl.Series([etree.tostring(elements[i], encoding="unicode", with_tail=False)
                              for i in rejected["_element"].to_list()], dtype=pl.Utf8)
        return Batch(frame, raw_of)


def read_xml(path: Path, mapping: Mapping, batch_records: int = 20_000) -> Iterator[Batch]:
    collector = _Collector(mapping)
    tags = [f"{{*}}{tag}" for tag in collector.by_tag]
    seen_any = False
    try:
        for _event, elem in etree.iterparse(str(path), events=("end",), tag=tags, remove_comments=True):
            if not seen_any:
                root = elem.getroottree().getroot()
                if etree.QName(root).localname not in collector.roots:
                    raise FileRejected("file.unknown_layout", f"root element {etree.QName(root).localname!r} is "
                                                              f"not the {mapping.name} layout's")
                seen_any = True
            steps, record = collector.by_tag[etree.QName(elem).localname]
            collector.add(elem, steps, record)
            if len(collector.elements) >= batch_records:
                yield collector.batch()
                release(collector.elements)
                collector.reset()
    except etree.XMLSyntaxError as exc:
        raise xml_error(exc) from None
    if collector.elements:
        yield collector.batch()
        release(collector.elements)
    if not seen_any and path.stat().st_size == 0:
        raise FileRejected("file.unreadable", "the file is empty")


def release(elements: list[etree._Element]) -> None:
    """Free judged records and everything before them: flat memory."""
    if not elements:
        return
    for elem in elements:
        elem.clear(keep_tail=False)
    last = elements[-1]
    parent = last.getparent()
    while parent is not None and last.getprevious() is not None:
        del parent[0]
