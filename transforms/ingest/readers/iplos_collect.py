"""A yearly extract's records collected into columns with `lxml.etree.iterparse`, a batch of persons at a time.

Only person elements are handed to Python (iterparse's `tag` filter); a person's services, stops,
assessments (with their scores) and diagnoses are its children, read from it while it is whole.
Values go into plain lists, one per field; the elements of a batch stay in the tree until the batch
has been judged, so a quarantined record's raw text comes from the element itself, and are then
cleared: memory is bounded by the batch, not the file.
"""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from lxml import etree

from transforms.ingest.readers.base import FileRejected
from transforms.ingest.readers.iplos_layouts import XmlLayout, layout_for_root
from transforms.ingest.readers.xml_source import release, xml_error
from transforms.ingest.values import fields as f

PERSONS_PER_BATCH = 10_000
Element = etree._Element


def _reader(paths: dict[str, str], layout: XmlLayout) -> Callable[[Element], list[str | None]]:
    """One function reading every field of an element: attributes by `get`, child values from the
    first child of each tag (one pass over the children), as the layout's paths say."""
    names = list(paths)
    plan = []
    for name in names:
        path = paths[name]
        if path == ".":
            plan.append(("text", None, None))
        elif path.startswith("@"):
            plan.append(("attr", path[1:], None))
        else:
            child, _, attr = path.partition("/@")
            plan.append(("child", layout.q(child), attr or None))
    needs_children = any(kind == "child" for kind, _, _ in plan)
    if all(kind == "attr" for kind, _, _ in plan):  # layout 3.7: attributes only, one C call each
        attributes = [key for _, key, _ in plan]

        def read_attributes(elem: Element) -> list[str | None]:
            get = elem.get
            return [get(a) for a in attributes]
        return read_attributes

    def read(elem: Element) -> list[str | None]:
        first: dict[str, Element] = {}
        if needs_children:
            for child in elem:
                first.setdefault(child.tag, child)
        out = []
        for kind, key, attr in plan:
            if kind == "attr":
                out.append(elem.get(key))
            elif kind == "text":
                out.append(elem.text)
            else:
                child = first.get(key)
                out.append(None if child is None else (child.get(attr) if attr else child.text))
        return out
    return read


@dataclass
class Header:
    """The file's data year, unit and extract date, as its header says."""

    year: int | None = None
    unit: str | None = None
    extract_date: dt.date | None = None


@dataclass
class Collected:
    """One batch: per record kind a frame of its fields (text), lines and positions, and its elements."""

    persons: pl.DataFrame
    services: pl.DataFrame
    stops: pl.DataFrame
    assessments: pl.DataFrame
    scores: pl.DataFrame
    diagnoses: pl.DataFrame
    elements: dict[str, list[Element]] = field(default_factory=dict)


class _Lists:
    def __init__(self, names: list[str], *extra: str):
        self.names = [*extra, *names]
        self.columns: list[list] = [[] for _ in self.names]

    def add(self, values: list) -> None:
        for column, value in zip(self.columns, values, strict=False):
            column.append(value)

    def frame(self, ints: tuple[str, ...]) -> pl.DataFrame:
        return pl.DataFrame({n: pl.Series(c, dtype=pl.Int64 if n in ints else pl.Utf8)
                             for n, c in zip(self.names, self.columns, strict=True)})


class IplosCollector:
    """Collects persons and their records; `batch()` hands over what it holds and starts anew."""

    def __init__(self, layout: XmlLayout):
        self.layout = layout
        q = layout.q
        self.tags = {q(layout.service): "service", q(layout.assessment): "assessment"}
        if layout.stop:
            self.stop_tag = q(layout.stop)
        if layout.diagnosis:
            self.tags[q(layout.diagnosis)] = "diagnosis"
        self.read_person = _reader(layout.person_fields, layout)
        self.read_service = _reader(layout.service_fields, layout)
        self.read_stop = _reader(layout.stop_fields, layout) if layout.stop else None
        self.read_diagnosis = _reader(layout.diagnosis_fields, layout) if layout.diagnosis else None
        self.score_tag = q(layout.score)
        self.read_score = _reader({"variable": layout.score_variable, "value": layout.score_value}, layout)
        self.read_date = _reader({"date": layout.assessment_date}, layout)
        self.person_count = 0
        self.reset()

    def reset(self) -> None:
        layout = self.layout
        self.persons = _Lists(list(layout.person_fields), "p", "line")
        self.services = _Lists(list(layout.service_fields), "s", "p", "i", "line")
        self.stops = _Lists(list(layout.stop_fields), "s", "j", "line")
        self.assessments = _Lists(["date"], "a", "p", "i", "line")
        self.scores = _Lists(["variable", "value"], "a", "k")
        self.diagnoses = _Lists(list(layout.diagnosis_fields), "d", "p", "i", "line")
        self.elements: dict[str, list[Element]] = {"person": [], "service": [], "stop": [], "assessment": [],
                                                   "diagnosis": []}

    def __len__(self) -> int:
        return len(self.elements["person"])

    def add(self, person: Element) -> None:
        self.person_count += 1
        elements = self.elements
        p = len(elements["person"])
        elements["person"].append(person)
        self.persons.add([self.person_count, person.sourceline, *self.read_person(person)])
        counts = {"service": 0, "assessment": 0, "diagnosis": 0}
        for child in person:
            kind = self.tags.get(child.tag)
            if kind is None:
                continue
            counts[kind] += 1
            number = len(elements[kind])
            elements[kind].append(child)
            if kind == "service":
                self.services.add([number, p, counts[kind], child.sourceline, *self.read_service(child)])
                if self.read_stop is not None:
                    for j, stop in enumerate(child.iterfind(self.stop_tag), start=1):
                        elements["stop"].append(stop)
                        self.stops.add([number, j, stop.sourceline, *self.read_stop(stop)])
            elif kind == "assessment":
                self.assessments.add([number, p, counts[kind], child.sourceline, *self.read_date(child)])
                read_score = self.read_score
                pairs = [read_score(score) for score in child.iterfind(self.score_tag)]
                columns = self.scores.columns
                columns[0].extend([number] * len(pairs))
                columns[1].extend(range(1, len(pairs) + 1))
                columns[2].extend([p[0] for p in pairs])
                columns[3].extend([p[1] for p in pairs])
            else:
                self.diagnoses.add([number, p, counts[kind], child.sourceline, *self.read_diagnosis(child)])

    def batch(self) -> Collected:
        ints = ("p", "line", "s", "i", "j", "a", "k", "d")
        collected = Collected(self.persons.frame(ints), self.services.frame(ints), self.stops.frame(ints),
                              self.assessments.frame(ints), self.scores.frame(ints), self.diagnoses.frame(ints),
                              self.elements)
        return collected


def _read_header(layout: XmlLayout, header: Header, elem: Element, at_end: bool) -> None:
    """Header fields held by `elem`: attributes (any time) or child texts (once the element has ended)."""
    for which in ("year", "unit", "extract_date"):
        where, path = getattr(layout, which)
        matches = elem.tag == layout.q(where or layout.root) and (path.startswith("@") or at_end)
        if matches and getattr(header, which) is None:
            value = _reader({which: path}, layout)(elem)[0]
            try:
                if which == "year":
                    header.year = f.parse_int(value, "data year")
                elif which == "unit":
                    header.unit = (value or "").strip() or None
                else:
                    header.extract_date = f.parse_date(value, layout.date_format, "extract date")
            except f.FieldError as exc:
                raise FileRejected("file.unknown_layout", f"header {which}: {exc}") from None


def root_layout(path: Path) -> XmlLayout:
    """The layout named by the file's root element (the first start event is enough)."""
    try:
        for _event, elem in etree.iterparse(str(path), events=("start",)):
            layout = layout_for_root(elem.tag)
            if layout is None:
                raise FileRejected("file.unknown_layout", f"root element {elem.tag!r} is not a known layout")
            return layout
    except etree.XMLSyntaxError as exc:
        raise xml_error(exc) from None
    raise FileRejected("file.unreadable", "the file is empty")


def iter_batches(path: Path, layout: XmlLayout, header: Header, on_first: Callable[[], None],
                 persons_per_batch: int = PERSONS_PER_BATCH) -> Iterator[Collected]:
    """Batches of persons; `on_first` runs once the header is known (at the first person, or at the end)."""
    collector = IplosCollector(layout)
    header_tags = {layout.q(where or layout.root) for where, _ in (layout.year, layout.unit, layout.extract_date)}
    first = True
    collecting = gc.isenabled()
    gc.disable()  # millions of small lists and strings, no cycles: the cyclic collector only costs time
    try:
        context = etree.iterparse(str(path), events=("end",), tag=layout.q(layout.person), remove_comments=True)
        for _event, elem in context:
            if first:
                ancestors = list(elem.iterancestors())
                for ended in elem.getroottree().getroot().iter(*header_tags):
                    if ended not in ancestors:
                        _read_header(layout, header, ended, at_end=True)
                for ancestor in ancestors:
                    _read_header(layout, header, ancestor, at_end=False)
                on_first()
                first = False
            collector.add(elem)
            if len(collector) >= persons_per_batch:
                yield collector.batch()
                release(collector.elements["person"])
                collector.reset()
    except etree.XMLSyntaxError as exc:
        raise xml_error(exc) from None
    finally:
        if collecting:
            gc.enable()
    if first:  # no person: the header is whatever the (whole, small) tree holds
        for ended in context.root.iter(*header_tags):
            _read_header(layout, header, ended, at_end=True)
        on_first()
    if len(collector):
        yield collector.batch()
        release(collector.elements["person"])
