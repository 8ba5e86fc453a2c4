"""A yearly extract's records collected into columns with `lxml.etree.iterparse`, a batch of persons at a time.

Only person elements are handed to Python (iterparse's `tag` filter); a person's services, stops,
assessments (with their scores) and diagnoses are its children, read from it while it is whole.
Values go into one flat list per record kind; the persons of a batch stay in the tree until the batch
has been judged, so a quarantined record's raw text comes from the element itself, and are then
cleared: memory is bounded by the batch, not the file.
"""

from __future__ import annotations

import datetime as dt
import gc
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, islice
from pathlib import Path

import polars as pl
from lxml import etree

from transforms.ingest.readers.base import FileRejected
from transforms.ingest.readers.iplos_layouts import XmlLayout, layout_for_root
from transforms.ingest.readers.xml_source import release, xml_error
from transforms.ingest.values import fields as f

PERSONS_PER_BATCH = 20_000
Element = etree._Element


def _reader(paths: dict[str, str], layout: XmlLayout) -> Callable[[Element], Iterable[str | None]]:
    """One function reading every field of an element, in the paths' order: attributes by `get`, child
    values from the first child of each tag, as the layout's paths say. Attributes only (layout 3.7's
    records) is one C-level `map`; one child tag is one filtered `iterchildren`; several (layout 3.6)
    are found in one pass over the children."""
    plan = []
    for path in paths.values():
        if path == ".":
            plan.append(("text", None, None))
        elif path.startswith("@"):
            plan.append(("attr", path[1:], None))
        else:
            child, _, attr = path.partition("/@")
            plan.append(("child", layout.q(child), attr or None))
    if all(kind == "attr" for kind, _, _ in plan):
        attributes = [key for _, key, _ in plan]
        return lambda elem: map(elem.get, attributes)
    child_tags = {key for kind, key, _ in plan if kind == "child"}
    only_tag = next(iter(child_tags)) if len(child_tags) == 1 else None

    def read(elem: Element) -> list[str | None]:
        first: dict[str, Element] = {}
        if only_tag is not None:
            found = next(elem.iterchildren(only_tag), None)
            if found is not None:
                first[only_tag] = found
        elif child_tags:
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
    """One batch: per record kind a frame of its fields (text), lines and positions; the person elements.

    A record below a person is found again from its person and its position (`element`) only when its
    raw text is wanted (a quarantined record): holding on to every record's element would make freeing
    each of them cost more than reading it."""

    persons: pl.DataFrame
    services: pl.DataFrame
    stops: pl.DataFrame
    assessments: pl.DataFrame
    scores: pl.DataFrame
    diagnoses: pl.DataFrame
    person_elements: Sequence[Element] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # record kind -> its element's qualified tag

    def element(self, kind: str, n: int) -> Element:
        """The `n`-th record element of `kind` in the batch (the row number of its frame)."""
        if kind == "person":
            return self.person_elements[n]
        if kind == "stop":
            parent, position = self.element("service", self.stops["s"][n]), self.stops["j"][n]
        else:
            frame = {"service": self.services, "assessment": self.assessments, "diagnosis": self.diagnoses}[kind]
            parent, position = self.person_elements[frame["p"][n]], frame["i"][n]
        return next(islice(parent.iterchildren(self.tags[kind]), position - 1, None))


class _Rows:
    """One record kind's values, row after row in one flat list (`width` values a row): appending a row is
    one `extend`, and the columns are strided slices of the list, cut only when the batch is handed over."""

    def __init__(self, names: list[str], *extra: str):
        self.names = [*extra, *names]
        self.width = len(self.names)
        self.flat: list = []

    def frame(self, ints: tuple[str, ...]) -> pl.DataFrame:
        flat, width = self.flat, self.width
        return pl.DataFrame({n: pl.Series(flat[i::width], dtype=pl.Int64 if n in ints else pl.Utf8)
                             for i, n in enumerate(self.names)})


class IplosCollector:
    """Collects persons and their records; `batch()` hands over what it holds and starts anew.

    A person's records are found with `iterchildren(tag)`, one C-level filter per record kind (the
    order within a kind is the document's, as the record numbers need), and each record's values go
    into its kind's flat list: no per-element tag string, list or dict."""

    def __init__(self, layout: XmlLayout):
        self.layout = layout
        q = layout.q
        self.service_tag, self.assessment_tag, self.score_tag = q(layout.service), q(layout.assessment), q(layout.score)
        self.stop_tag = q(layout.stop) if layout.stop else None
        self.diagnosis_tag = q(layout.diagnosis) if layout.diagnosis else None
        self.read_person = _reader(layout.person_fields, layout)
        self.read_service = _reader(layout.service_fields, layout)
        self.read_stop = _reader(layout.stop_fields, layout) if layout.stop else None
        self.read_diagnosis = _reader(layout.diagnosis_fields, layout) if layout.diagnosis else None
        self.read_score = _reader({"variable": layout.score_variable, "value": layout.score_value}, layout)
        self.read_date = _reader({"date": layout.assessment_date}, layout)
        self.person_count = 0
        self.reset()

    def reset(self) -> None:
        layout = self.layout
        self.persons = _Rows(list(layout.person_fields), "p", "line")
        self.services = _Rows(list(layout.service_fields), "s", "p", "i", "line")
        self.stops = _Rows(list(layout.stop_fields), "s", "j", "line")
        self.assessments = _Rows(["date"], "a", "p", "i", "line")
        self.scores = _Rows(["variable", "value"], "a", "k")
        self.diagnoses = _Rows(list(layout.diagnosis_fields), "d", "p", "i", "line")
        self.person_elements: list[Element] = []
        self.counts = {"service": 0, "assessment": 0, "diagnosis": 0}  # records of each kind so far

    def __len__(self) -> int:
        return len(self.person_elements)

    def add(self, person: Element) -> None:
        self.person_count += 1
        p = len(self.person_elements)
        self.person_elements.append(person)
        rows = self.persons.flat
        rows += (self.person_count, person.sourceline)
        rows += self.read_person(person)
        counts = self.counts
        number, rows = counts["service"], self.services.flat
        read, stop_tag = self.read_service, self.stop_tag
        for i, service in enumerate(person.iterchildren(self.service_tag), start=1):
            rows += (number, p, i, service.sourceline)
            rows += read(service)
            if stop_tag is not None:
                stop_rows, read_stop = self.stops.flat, self.read_stop
                for j, stop in enumerate(service.iterchildren(stop_tag), start=1):
                    stop_rows += (number, j, stop.sourceline)
                    stop_rows += read_stop(stop)
            number += 1
        counts["service"] = number
        number, rows = counts["assessment"], self.assessments.flat
        score_rows, read_score, score_tag = self.scores.flat, self.read_score, self.score_tag
        for i, assessment in enumerate(person.iterchildren(self.assessment_tag), start=1):
            rows += (number, p, i, assessment.sourceline)
            rows += self.read_date(assessment)
            for k, score in enumerate(assessment.iterchildren(score_tag), start=1):
                score_rows += (number, k)
                score_rows += read_score(score)
            number += 1
        counts["assessment"] = number
        if self.diagnosis_tag is not None:
            number, rows, read = counts["diagnosis"], self.diagnoses.flat, self.read_diagnosis
            for i, diagnosis in enumerate(person.iterchildren(self.diagnosis_tag), start=1):
                rows += (number, p, i, diagnosis.sourceline)
                rows += read(diagnosis)
                number += 1
            counts["diagnosis"] = number

    def batch(self) -> Collected:
        ints = ("p", "line", "s", "i", "j", "a", "k", "d")
        tags = {"service": self.service_tag, "assessment": self.assessment_tag, "stop": self.stop_tag or "",
                "diagnosis": self.diagnosis_tag or ""}
        return Collected(self.persons.frame(ints), self.services.frame(ints), self.stops.frame(ints),
                         self.assessments.frame(ints), self.scores.frame(ints), self.diagnoses.frame(ints),
                         self.person_elements, tags)


def combine(batches: list[Collected]) -> Collected:
    """Batches of several files as one: each frame gains `f` (the batch's position in `batches`), and the
    record numbers that are row numbers (`p` of the records, `s`, `a`, `d`) are shifted past the batches
    before it, so that they are row numbers of the concatenated frames (a person's own `p`, the person
    number in its file, stays as it is)."""
    frames: dict[str, list[pl.DataFrame]] = {n: [] for n in ("persons", "services", "stops", "assessments",
                                                               "scores", "diagnoses")}
    parts: list[Sequence[Element]] = []
    shift = {"person": 0, "service": 0, "assessment": 0, "diagnosis": 0}
    for position, batch in enumerate(batches):
        file = pl.lit(position, dtype=pl.Int64).alias("f")
        p, s = pl.col("p") + shift["person"], pl.col("s") + shift["service"]
        a, d = pl.col("a") + shift["assessment"], pl.col("d") + shift["diagnosis"]
        frames["persons"].append(batch.persons.with_columns(file))
        frames["services"].append(batch.services.with_columns(file, s, p))
        frames["stops"].append(batch.stops.with_columns(file, s))
        frames["assessments"].append(batch.assessments.with_columns(file, a, p))
        frames["scores"].append(batch.scores.with_columns(file, a))
        frames["diagnoses"].append(batch.diagnoses.with_columns(file, d, p))
        parts.append(batch.person_elements)
        for kind, frame in (("person", batch.persons), ("service", batch.services),
                            ("assessment", batch.assessments), ("diagnosis", batch.diagnoses)):
            shift[kind] += frame.height
    persons: Sequence[Element] = ([e for part in parts for e in part] if all(isinstance(p, list) for p in parts)
                                  else ChainedElements(parts))
    return Collected(*(pl.concat(chunks) if len(chunks) > 1 else chunks[0] for chunks in frames.values()),
                     person_elements=persons, tags=batches[0].tags)


class ChainedElements(Sequence):
    """The person elements of several batches as one sequence, without asking for any of them until one is
    wanted (a batch collected by `iplos_fast` finds its elements only when a record's raw text is needed)."""

    def __init__(self, parts: list[Sequence[Element]]):
        self.parts = parts
        self.starts = list(accumulate((len(p) for p in parts), initial=0))

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, n):
        if isinstance(n, slice):
            return [self[i] for i in range(*n.indices(len(self)))]
        if n < 0:
            n += len(self)
        part = bisect_right(self.starts, n) - 1
        if not 0 <= n < len(self):
            raise IndexError(n)
        return self.parts[part][n - self.starts[part]]


def _read_header(layout: XmlLayout, header: Header, elem: Element, at_end: bool) -> None:
    """Header fields held by `elem`: attributes (any time) or child texts (once the element has ended)."""
    for which in ("year", "unit", "extract_date"):
        where, path = getattr(layout, which)
        matches = elem.tag == layout.q(where or layout.root) and (path.startswith("@") or at_end)
        if matches and getattr(header, which) is None:
            value = next(iter(_reader({which: path}, layout)(elem)))
            try:
                if which == "year":
                    header.year = f.parse_int(value, "data year")
                elif which == "unit":
                    header.unit = (value or "").strip() or None
                else:
                    header.extract_date = f.parse_date(value, layout.date_format, "extract date")
            except f.FieldError as exc:
                raise FileRejected("file.unknown_layout", f"header {which}: {exc}") from None


_FIRST_READ = 32768  # what `iterparse` reads (and parses) before it hands over its first event


class _Found(Exception):
    """Raised by `_RootTag` at the first start tag: nothing after it is needed."""


class _RootTag:
    """A parser target that stops at the first start tag, keeping it."""

    def __init__(self) -> None:
        self.tag: str | None = None

    def start(self, tag: str, attrib: dict) -> None:
        self.tag = tag
        raise _Found

    def close(self) -> None:
        return None


class NoTree:
    """A parser target without callbacks: libxml2 checks the bytes and builds no tree."""

    def close(self) -> None:
        return None


def _first_tag(path: Path) -> str | None:
    """The root's tag, when the first bytes `iterparse` would parse hold it and no error (else None).

    `iterparse` builds a tree and an element for every event of its first 32 kB (about a millisecond
    per file, some 3,400 files in a national ingestion); a parser without a tree checks the same bytes
    in a fraction of that, and another stops at the first start tag. Where either finds anything
    wrong, `root_layout` asks `iterparse`, for its own error."""
    with path.open("rb") as handle:
        head = handle.read(_FIRST_READ)
    target = _RootTag()
    try:
        etree.XMLParser(target=NoTree()).feed(head)
        etree.XMLParser(target=target).feed(head)
    except _Found:
        return target.tag
    except etree.XMLSyntaxError:
        return None
    return None


def root_layout(path: Path) -> XmlLayout:
    """The layout named by the file's root element (the first start event is enough)."""
    tag = _first_tag(path)
    if tag is not None:
        layout = layout_for_root(tag)
        if layout is None:
            raise FileRejected("file.unknown_layout", f"root element {tag!r} is not a known layout")
        return layout
    try:
        for _event, elem in etree.iterparse(str(path), events=("start",)):
            layout = layout_for_root(elem.tag)
            if layout is None:
                raise FileRejected("file.unknown_layout", f"root element {elem.tag!r} is not a known layout")
            return layout
    except etree.XMLSyntaxError as exc:
        raise xml_error(exc) from None
    raise FileRejected("file.unreadable", "the file is empty")


def header_tags(layout: XmlLayout) -> set[str]:
    return {layout.q(where or layout.root) for where, _ in (layout.year, layout.unit, layout.extract_date)}


def header_at_first_person(layout: XmlLayout, header: Header, elem: Element) -> None:
    """The header as the tree holds it when the first person has ended: what has ended before it (child
    texts and attributes), and the attributes of its ancestors."""
    ancestors = list(elem.iterancestors())
    for ended in elem.getroottree().getroot().iter(*header_tags(layout)):
        if ended not in ancestors:
            _read_header(layout, header, ended, at_end=True)
    for ancestor in ancestors:
        _read_header(layout, header, ancestor, at_end=False)


def header_without_persons(layout: XmlLayout, header: Header, root: Element) -> None:
    """The header of a file without a person: whatever the (whole, small) tree holds."""
    for ended in root.iter(*header_tags(layout)):
        _read_header(layout, header, ended, at_end=True)


def iter_batches(path: Path, layout: XmlLayout, header: Header, on_first: Callable[[], None],
                 persons_per_batch: int = PERSONS_PER_BATCH) -> Iterator[Collected]:
    """Batches of persons; `on_first` runs once the header is known (at the first person, or at the end)."""
    collector = IplosCollector(layout)
    first = True
    collecting = gc.isenabled()
    gc.disable()  # millions of small lists and strings, no cycles: the cyclic collector only costs time
    try:
        context = etree.iterparse(str(path), events=("end",), tag=layout.q(layout.person), remove_comments=True)
        for _event, elem in context:
            if first:
                header_at_first_person(layout, header, elem)
                on_first()
                first = False
            collector.add(elem)
            if len(collector) >= persons_per_batch:
                yield collector.batch()
                release(collector.person_elements)
                collector.reset()
    except etree.XMLSyntaxError as exc:
        raise xml_error(exc) from None
    finally:
        if collecting:
            gc.enable()
    if first:  # no person: the header is whatever the (whole, small) tree holds
        header_without_persons(layout, header, context.root)
        on_first()
    if len(collector):
        yield collector.batch()
        release(collector.person_elements)
