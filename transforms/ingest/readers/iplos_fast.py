"""A yearly extract's columns collected by `xml2arrow` (Rust), where that gives exactly what `iplos_collect` gives.

`iplos_collect` hands every person element to Python; here two `xml2arrow` passes over the file's bytes
collect the same values into Arrow columns, and what the lxml reader takes from the tree (the record
elements' lines, which person or service a record belongs to, its position among its siblings) comes
from the byte offsets of the records' start tags. The result is a list of `Collected` batches equal,
frame for frame, to those of `iplos_collect.iter_batches`.

`xml2arrow` is not lxml: it is lenient where lxml is strict, it matches element names ignoring
namespaces, it does not resolve every reference the way libxml2 does, it keeps a carriage return in
text that libxml2 normalises, it concatenates a child's attribute found twice where lxml reads the
first child... So the fast reader only answers when it can vouch for the answer; otherwise
`fast_batches` returns None and the caller reads the file with `iplos_collect` (the guards, each a
reason in `FALLBACKS`):

- `size`: files above `FAST_MAX_BYTES` (the whole file and its columns are in memory at once);
- `bytes`: a byte-order mark or anything before the first `<`, an entity or character reference (`&`),
  a carriage return, a comment, CDATA section, DOCTYPE or processing instruction (`<!`, `<?` past the
  declaration), a `>` that does not close a tag, a namespace prefix (a `:` outside the root's start tag)
  or a namespace declaration other than the root's;
- `encoding`: a declared encoding other than UTF-8 or ISO-8859-1 (ISO-8859-1 is transcoded to UTF-8
  before `xml2arrow` sees it);
- `not_well_formed`: the file is not well-formed XML to libxml2 (checked with an lxml parser without
  a tree or Python callbacks): the lxml reader then raises today's error at today's moment;
- `xml2arrow`: any error of `xml2arrow` (e.g. the same field element twice in one record);
- `structure`: the number of start tags of a record kind in the bytes differs from the rows `xml2arrow`
  found where the layout puts them (a record elsewhere in the tree, which lxml would read), a field's
  child element twice in a record, a text field with child elements, or scores that cannot be given
  to their assessment (an assessment without scores, persons in more than one container);
- `lines`: a record past line 65535 whose line libxml2 takes from a neighbouring node that the rules
  here do not follow (see `_line_numbers`);
- `no_person`: a file without persons (the header is read from the whole tree).

A quarantined record's raw text, and the records below a quarantined person, are read from the lxml
elements: a batch's person elements are found (one lxml pass over the file, only for a batch in which
something was quarantined) when the first of them is asked for (`LazyPersons`).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import xml2arrow
from lxml import etree

from transforms.ingest.readers.iplos_collect import Collected, Element, Header, NoTree, header_at_first_person
from transforms.ingest.readers.iplos_layouts import XmlLayout
from transforms.ingest.readers.xml_source import release

FAST_MAX_BYTES = 128 << 20  # larger files are read by the lxml reader, a batch of persons at a time
CHECK_CHUNK = 1 << 20
FALLBACKS: Counter[str] = Counter()  # why files were read by the lxml reader (per process)
_CAPPED = 65535  # libxml2 keeps an element's line in 16 bits: from this line on it asks a neighbour
_SHORT_TEXT = 300  # libxml2's push parser hands over a text this short in one piece (XML_PARSER_BIG_BUFFER_SIZE)


class _Unsure(Exception):
    """The fast reader cannot vouch for its result: the lxml reader reads the file."""


def enabled() -> bool:
    return os.environ.get("KTT_IPLOS_FAST", "1") != "0"


# --- the xml2arrow configuration, from the layout --------------------------------------------------------
def _path(base: str, path: str) -> str:
    if path == ".":
        return base
    if path.startswith("@"):
        return f"{base}/{path}"
    child, _, attr = path.partition("/@")
    if "/" in child or "@" in child:
        raise ValueError(f"path {path!r} not supported by the fast reader")
    return f"{base}/{child}/@{attr}" if attr else f"{base}/{child}"


def _child_tag(path: str) -> str | None:
    """The child element a path reads (None: the record element itself)."""
    if path == "." or path.startswith("@"):
        return None
    return path.partition("/@")[0]


def _table(name: str, xml_path: str, levels: list[str], fields: list[tuple[str, str]]) -> str:
    lines = [f"  - name: {name}", f'    xml_path: "{xml_path}"', f"    levels: [{', '.join(levels)}]",
             "    fields:"]
    lines += [f'      - {{name: "{n}", xml_path: "{p}", data_type: Utf8, nullable: true}}' for n, p in fields]
    return "\n".join(lines)


def _parser(tables: list[str]) -> xml2arrow.XmlToArrowParser:
    fd, name = tempfile.mkstemp(suffix=".yaml", prefix="ktt-x2a-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("tables:\n" + "\n".join(tables) + "\n")
        return xml2arrow.XmlToArrowParser(name)  # compiled here: the file is not needed afterwards
    finally:
        os.unlink(name)


@dataclass
class _Plan:
    """What the fast reader reads of one layout: two `xml2arrow` parsers and the tags it looks for."""

    layout: XmlLayout
    persons_and_below: xml2arrow.XmlToArrowParser  # persons; stops (rows of services); scores (of assessments)
    children: xml2arrow.XmlToArrowParser  # a person's services, assessments and diagnoses, one table
    kinds: list[tuple[str, str]]  # (kind, tag) of a person's record elements
    columns: dict[str, list[tuple[str, str]]]  # kind -> (frame column, children-table column)
    field_children: dict[str, set[str]]  # record kind -> tags of the child elements its fields read
    text_tags: set[str]  # elements whose text is a field


_PLANS: dict[str, _Plan | None] = {}


def _plan(layout: XmlLayout) -> _Plan | None:
    if layout.version not in _PLANS:
        try:
            _PLANS[layout.version] = _make_plan(layout)
        except ValueError:
            _PLANS[layout.version] = None
    return _PLANS[layout.version]


def _make_plan(layout: XmlLayout) -> _Plan:
    if "." in layout.person_fields.values():
        raise ValueError("person text")
    container = "/" + "/".join((layout.root, *layout.person_parent))
    person = f"{container}/{layout.person}"
    service, assessment = f"{person}/{layout.service}", f"{person}/{layout.assessment}"
    first = [_table("persons", container, [], [(n, _path(person, p)) for n, p in layout.person_fields.items()])]
    if layout.stop:
        first.append(_table("stops", service, [],
                            [(n, _path(f"{service}/{layout.stop}", p)) for n, p in layout.stop_fields.items()]))
    score = f"{assessment}/{layout.score}"
    first.append(_table("scores", assessment, ["person", "score"], [("variable", _path(score, layout.score_variable)),
                                                                    ("value", _path(score, layout.score_value))]))
    kinds = [("service", layout.service), ("assessment", layout.assessment)]
    fields = {"service": layout.service_fields, "assessment": {"date": layout.assessment_date}}
    if layout.diagnosis:
        kinds.append(("diagnosis", layout.diagnosis))
        fields["diagnosis"] = layout.diagnosis_fields
    columns = {kind: [(n, f"{kind}:{n}") for n in fields[kind]] for kind, _ in kinds}
    second = [_table("children", person, [], [(f"{kind}:{n}", _path(f"{person}/{tag}", p))
                                              for kind, tag in kinds for n, p in fields[kind].items()])]
    if any(not fields[kind] for kind, _ in kinds):
        raise ValueError("a record kind without fields would give no rows")
    field_children = {"person": {t for p in layout.person_fields.values() if (t := _child_tag(p))},
                      "stop": {t for p in layout.stop_fields.values() if (t := _child_tag(p))},
                      "score": {t for p in (layout.score_variable, layout.score_value) if (t := _child_tag(p))}}
    for kind, _ in kinds:
        field_children[kind] = {t for p in fields[kind].values() if (t := _child_tag(p))}
    text_tags = {t for paths in [layout.person_fields, layout.stop_fields, *fields.values()]
                 for p in paths.values() if (t := _child_tag(p)) and "/@" not in p}
    if layout.score_value == "." or layout.score_variable == ".":
        text_tags.add(layout.score)
    text_tags |= {t for p in (layout.score_variable, layout.score_value) if (t := _child_tag(p)) and "/@" not in p}
    return _Plan(layout, _parser(first), _parser(second), kinds, columns, field_children, text_tags)


# --- the bytes -------------------------------------------------------------------------------------------
_DECLARATION = re.compile(rb"<\?xml[^>]*?\?>")
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


class _Scan:
    """Offsets in a file's bytes: every `<`, every `>` and every newline. After `_check_bytes` each `<` is
    closed by the next `>` before the next `<` (checked here), so the k-th `>` ends the k-th tag."""

    def __init__(self, data: bytes):
        view = np.frombuffer(data, np.uint8)
        self.view = view
        self.lt = np.flatnonzero(view == 0x3C)
        self.gt = np.flatnonzero(view == 0x3E)
        if len(self.lt) != len(self.gt) or (self.gt < self.lt).any() or (self.gt[:-1] > self.lt[1:]).any():
            raise _Unsure("bytes")  # a `>` in a text or an attribute value
        self.newlines = np.flatnonzero(view == 0x0A)
        self.second = view[self.lt + 1] if len(self.lt) else view[:0]  # the byte after each `<`

    def start_tags(self, tag: str) -> tuple[np.ndarray, np.ndarray]:
        """Offsets of the `<` and one past the `>` of every start tag (or empty-element tag) named `tag`."""
        found = self.tag_numbers(tag)
        return self.lt[found], self.gt[found] + 1

    def with_child_element(self, tag: str) -> bool:
        """Whether an element named `tag` holds an element (or anything but text) before its end tag."""
        found = self.tag_numbers(tag)
        found = found[self.view[self.gt[found] - 1] != 0x2F]  # not `<tag/>`
        following = found + 1
        return bool((following >= len(self.lt)).any() or (self.second[np.minimum(following, len(self.lt) - 1)]
                                                           != 0x2F).any())

    def tag_numbers(self, tag: str) -> np.ndarray:
        """The numbers (among all `<`) of the start tags named `tag`."""
        name, view, last = tag.encode(), self.view, len(self.view) - 1
        found = np.flatnonzero(self.second == name[0])
        for i in range(1, len(name) + 1):
            at = self.lt[found] + 1 + i
            byte = view[np.minimum(at, last)]
            if i < len(name):
                found = found[(at <= last) & (byte == name[i])]
            else:
                found = found[(at <= last) & np.isin(byte, _AFTER_NAME)]
        return found


_AFTER_NAME = np.array([0x20, 0x09, 0x0A, 0x0D, 0x2F, 0x3E], dtype=np.uint8)


def _well_formed(data: bytes) -> bool:
    parser = etree.XMLParser(target=NoTree())
    try:
        for at in range(0, len(data), CHECK_CHUNK):
            parser.feed(data[at:at + CHECK_CHUNK])
        parser.close()
    except etree.XMLSyntaxError:
        return False
    return True


def _utf8(data: bytes, person: str) -> bytes:
    """The bytes for `xml2arrow`: UTF-8 as they are; ISO-8859-1 transcoded, its declaration saying so."""
    if not data.startswith(b"<?xml"):
        if not data.startswith(b"<"):
            raise _Unsure("bytes")
        return data
    declaration = _DECLARATION.match(data)
    if declaration is None:
        raise _Unsure("bytes")
    found = _ENCODING.search(declaration.group())
    encoding = found.group(1).decode().lower() if found else "utf-8"
    if encoding in ("utf-8", "utf8"):
        return data
    if encoding not in ("iso-8859-1", "latin-1", "latin1"):
        raise _Unsure("encoding")
    if data.isascii():
        return data
    start, end = found.span(1)
    head = data[:start] + b"UTF-8" + data[end:declaration.end()]
    # most often only the header has letters beyond ASCII: the rest is taken as it is
    ascii_from = data.find(b"<" + person.encode(), declaration.end())
    if ascii_from < 0 or np.frombuffer(data, np.uint8, offset=ascii_from).max() >= 0x80:
        ascii_from = len(data)
    return b"".join([head, data[declaration.end():ascii_from].decode("latin-1").encode(),
                     memoryview(data)[ascii_from:]])


def _check_bytes(data: bytes, scan: _Scan) -> None:
    """No reference, carriage return, comment, CDATA, DOCTYPE or instruction past the declaration, no
    namespace prefix or declaration but the root's."""
    if b"&" in data or b"\r" in data or (scan.second == 0x21).any():  # `<!`
        raise _Unsure("bytes")
    instructions = np.flatnonzero(scan.second == 0x3F)  # `<?`
    if len(instructions) > 1 or (len(instructions) == 1 and (instructions[0] != 0 or scan.lt[0] != 0)):
        raise _Unsure("bytes")
    first = 1 if len(instructions) else 0
    if len(scan.lt) <= first:
        raise _Unsure("bytes")
    root_from, root_to = int(scan.lt[first]), int(scan.gt[first]) + 1
    for outside in (b":", b"xmlns"):  # `find`, not `count`: a single byte is looked for with memchr
        if data.find(outside, 0, root_from) >= 0 or data.find(outside, root_to) >= 0:
            raise _Unsure("bytes")


# --- lines -----------------------------------------------------------------------------------------------
def _line_numbers(data: bytes, scan: _Scan, ends: np.ndarray, event: bool) -> np.ndarray:
    """libxml2's line of each element whose start tag ends just before `ends`, as lxml's `sourceline`.

    An element's line is that of the `>` of its start tag, up to line 65534. From line 65535 on libxml2
    stores 65535 and `xmlGetLineNo` asks the element's first child, or without a child its next sibling
    (recursively, five deep); a text node knows its line beyond 65535: that of the end of its text (where
    libxml2 was when it handed the text over: the next `<`). Cases this does not follow raise `_Unsure`:
    no child and no next sibling (the previous sibling would decide), a long text (handed over in pieces),
    more than five steps, and, for the elements lxml hands over while parsing (`event`: the persons), an
    element without children (its next sibling may not have been parsed yet)."""
    newlines, view = scan.newlines, scan.view
    lines = np.searchsorted(newlines, ends - 1) + 1
    capped = np.flatnonzero(lines >= _CAPPED)
    if not len(capped):
        return lines
    # most often a text follows the start tag (the first child, or the next sibling of an empty element)
    end = ends[capped]
    simple = view[end] != 0x3C
    if event:
        simple &= view[end - 2] != 0x2F
    after = end[simple]
    next_tag = np.searchsorted(scan.lt, after)
    if len(after) and (next_tag >= len(scan.lt)).any():
        raise _Unsure("lines")
    following = scan.lt[next_tag]
    if len(following) and (following - after >= _SHORT_TEXT).any():
        raise _Unsure("lines")
    lines[capped[simple]] = np.searchsorted(newlines, following) + 1
    for n in capped[~simple].tolist():
        line = _line_of_capped(data, newlines, int(ends[n]), event, 0)
        if line is None:
            raise _Unsure("lines")
        lines[n] = line
    return lines


def _line_at(newlines: np.ndarray, offset: int) -> int:
    return int(np.searchsorted(newlines, offset)) + 1


def _text_line(data: bytes, newlines: np.ndarray, at: int) -> int | None:
    following = data.find(b"<", at)
    if following < 0 or following - at >= _SHORT_TEXT:
        return None
    return _line_at(newlines, following)


def _element_line(data: bytes, newlines: np.ndarray, at: int, depth: int) -> int | None:
    """The line of the element whose `<` is at `at` (a child or sibling of the element asked about)."""
    end = data.find(b">", at) + 1
    line = _line_at(newlines, end - 1)
    if line < _CAPPED:
        return line
    return _line_of_capped(data, newlines, end, False, depth)


def _line_of_capped(data: bytes, newlines: np.ndarray, end: int, event: bool, depth: int) -> int | None:
    if depth >= 5:
        return None
    empty = data[end - 2] == 0x2F  # `/>`
    if not empty:
        if data[end] != 0x3C:
            return _text_line(data, newlines, end)
        if data[end + 1] != 0x2F:
            return _element_line(data, newlines, end, depth + 1)
    if event:
        return None
    after = end if empty else data.find(b">", end) + 1
    if data[after] != 0x3C:
        return _text_line(data, newlines, after)
    if data[after + 1] == 0x2F:
        return None
    return _element_line(data, newlines, after, depth + 1)


# --- the file --------------------------------------------------------------------------------------------
class LazyPersons(Sequence):
    """The person elements `start` to `start + count` (in document order) of a file, parsed by lxml the
    first time one is asked for: only a batch in which a record is quarantined needs its elements."""

    def __init__(self, path: Path, tag: str, start: int, count: int):
        self.path, self.tag, self.start, self.count = path, tag, start, count
        self.elements: list[Element] | None = None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, n):
        if self.elements is None:
            self.elements = self._load()
        return self.elements[n]

    def _load(self) -> list[Element]:
        elements: list[Element] = []
        skipped: list[Element] = []
        if self.count:
            context = etree.iterparse(str(self.path), events=("end",), tag=self.tag, remove_comments=True)
            for n, (_event, elem) in enumerate(context):
                if n < self.start:
                    skipped.append(elem)
                    if len(skipped) >= 1000:
                        release(skipped)
                        skipped = []
                    continue
                elements.append(elem)
                if len(elements) == self.count:
                    break
        if len(elements) != self.count:
            raise RuntimeError(f"{self.path}: {len(elements)} persons from {self.start}, not {self.count}: "
                               f"the file changed while it was read")
        return elements


def _within(parents: np.ndarray, children: np.ndarray) -> np.ndarray:
    """For each child offset, the index of the last parent offset before it (-1: none)."""
    return np.searchsorted(parents, children, side="right") - 1


def _position(owner: np.ndarray) -> np.ndarray:
    """1-based position of each row among the rows of its owner (`owner` non-decreasing)."""
    return np.arange(len(owner), dtype=np.int64) - np.searchsorted(owner, owner, side="left") + 1


def _text_frame(batch, names: list[tuple[str, str]]) -> dict[str, pl.Series]:
    return {name: pl.Series(name, batch.column(column), dtype=pl.Utf8) for name, column in names}


def fast_batches(path: Path, layout: XmlLayout, header: Header, on_first: Callable[[], None],
                 persons_per_batch: int) -> list[Collected] | None:
    """The batches `iter_batches` would yield, or None (nothing done: read the file with lxml)."""
    plan = _plan(layout) if enabled() else None
    if plan is None:
        return None
    try:
        if path.stat().st_size > FAST_MAX_BYTES:
            raise _Unsure("size")
        data = path.read_bytes()
        columns = _collect(plan, data)
        if not columns["persons"].height:
            raise _Unsure("no_person")
    except _Unsure as exc:
        FALLBACKS[str(exc)] += 1
        return None
    context = etree.iterparse(str(path), events=("end",), tag=layout.q(layout.person), remove_comments=True)
    for _event, elem in context:  # the tree as the lxml reader has it at its first person
        header_at_first_person(layout, header, elem)
        break
    del context
    on_first()
    FALLBACKS["fast"] += 1
    return _batches(path, plan, columns, persons_per_batch)


def _collect(plan: _Plan, data: bytes) -> dict[str, pl.DataFrame]:
    """Every record of the file in file-wide frames (record numbers and owners file-wide, 0-based)."""
    layout = plan.layout
    scan = _Scan(data)
    _check_bytes(data, scan)
    utf8 = _utf8(data, layout.person)
    if not _well_formed(data):
        raise _Unsure("not_well_formed")
    try:
        first = plan.persons_and_below.parse(utf8)
        second = plan.children.parse(utf8)
    except Exception as exc:  # any error: the lxml reader decides
        raise _Unsure("xml2arrow") from exc
    # persons: every person start tag is a row where the layout puts persons
    persons = first["persons"]
    person_at, person_end = scan.start_tags(layout.person)
    if len(person_at) != persons.num_rows:
        raise _Unsure("structure")
    out: dict[str, pl.DataFrame] = {}
    out["persons"] = pl.DataFrame({"line": _line_numbers(data, scan, person_end, event=True),
                                   **_text_frame(persons, [(n, n) for n in layout.person_fields])})
    # a person's records: one table, rows in document order; which kind each row is, from the start tags
    children = second["children"]
    starts = {kind: scan.start_tags(tag) for kind, tag in plan.kinds}
    if sum(len(s[0]) for s in starts.values()) != children.num_rows:
        raise _Unsure("structure")
    order = np.argsort(np.concatenate([s[0] for s in starts.values()]), kind="stable")
    kind_of_row = np.concatenate([np.full(len(s[0]), k, np.int64) for k, s in enumerate(starts.values())])[order]
    for k, (kind, _tag) in enumerate(plan.kinds):
        at, end = starts[kind]
        rows = children.take(np.flatnonzero(kind_of_row == k))
        owner = _within(person_at, at)
        if len(owner) and owner[0] < 0:
            raise _Unsure("structure")
        out[kind] = pl.DataFrame({"p": owner, "i": _position(owner),
                                  "line": _line_numbers(data, scan, end, event=False),
                                  **_text_frame(rows, plan.columns[kind])})
    if not layout.diagnosis:
        out["diagnosis"] = pl.DataFrame({"p": [], "i": [], "line": []}, schema={"p": pl.Int64, "i": pl.Int64,
                                                                               "line": pl.Int64})
    # stops: their service from the start tags
    owners = {"person": person_at, **{kind: starts[kind][0] for kind, _ in plan.kinds}}
    if layout.stop:
        stops = first["stops"]
        at, end = scan.start_tags(layout.stop)
        owners["stop"] = at
        if len(at) != stops.num_rows:
            raise _Unsure("structure")
        owner = _within(starts["service"][0], at)
        if len(owner) and owner[0] < 0:
            raise _Unsure("structure")
        out["stop"] = pl.DataFrame({"s": owner, "j": _position(owner),
                                    "line": _line_numbers(data, scan, end, event=False),
                                    **_text_frame(stops, [(n, n) for n in layout.stop_fields])})
    else:
        out["stop"] = pl.DataFrame(schema={"s": pl.Int64, "j": pl.Int64, "line": pl.Int64})
    # scores: `xml2arrow` numbers them within their assessment and gives their person; each run of scores
    # is one assessment, when every assessment of those persons has scores
    scores = first["scores"]
    score_person = np.asarray(scores.column("<person>").to_numpy(zero_copy_only=False), dtype=np.int64)
    score_k = np.asarray(scores.column("<score>").to_numpy(zero_copy_only=False), dtype=np.int64)
    run = np.cumsum(score_k == 0) - 1
    assessment_person = out["assessment"]["p"].to_numpy()
    if not np.array_equal(score_person[score_k == 0], assessment_person):
        raise _Unsure("structure")
    out["score"] = pl.DataFrame({"a": run, "k": score_k + 1,
                                 **_text_frame(scores, [("variable", "variable"), ("value", "value")])})
    # a field's child element at most once per record, and no element inside a text field
    for kind, tags in plan.field_children.items():
        for tag in tags:
            if kind not in owners:
                raise _Unsure("structure")  # a score's field in a child element: not followed here
            owner = _within(owners[kind], scan.start_tags(tag)[0])
            if len(owner) > 1 and (np.diff(owner) == 0).any():
                raise _Unsure("structure")
    if any(scan.with_child_element(tag) for tag in plan.text_tags):
        raise _Unsure("structure")
    return out


def _batches(path: Path, plan: _Plan, columns: dict[str, pl.DataFrame], size: int) -> list[Collected]:
    """The file-wide frames cut into batches of `size` persons, numbered as `IplosCollector` numbers them."""
    layout = plan.layout
    persons = columns["persons"]
    tags = {"service": layout.q(layout.service), "assessment": layout.q(layout.assessment),
            "stop": layout.q(layout.stop) if layout.stop else "",
            "diagnosis": layout.q(layout.diagnosis) if layout.diagnosis else ""}
    names = {"service": list(layout.service_fields), "assessment": ["date"],
             "diagnosis": list(layout.diagnosis_fields)}
    first_col = {"service": "s", "assessment": "a", "diagnosis": "d"}
    out = []
    for start in range(0, persons.height, size):
        stop = min(start + size, persons.height)
        frames: dict[str, pl.DataFrame] = {}
        frames["persons"] = persons[start:stop].select(
            pl.int_range(start + 1, stop + 1, dtype=pl.Int64).alias("p"), pl.col("line").cast(pl.Int64),
            *list(layout.person_fields))
        bounds = {}
        for kind in ("service", "assessment", "diagnosis"):
            frame = columns[kind]
            owner = frame["p"].to_numpy()
            lo, hi = np.searchsorted(owner, [start, stop])
            bounds[kind] = (int(lo), int(hi))
            frames[kind] = frame[int(lo):int(hi)].select(
                pl.int_range(0, pl.len(), dtype=pl.Int64).alias(first_col[kind]),
                (pl.col("p") - start).cast(pl.Int64).alias("p"), pl.col("i").cast(pl.Int64),
                pl.col("line").cast(pl.Int64), *[pl.col(n) for n in names[kind] if n in frame.columns])
            if kind == "diagnosis" and not layout.diagnosis:
                frames[kind] = frames[kind].select("d", "p", "i", "line")
        lo, hi = bounds["service"]
        stops = columns["stop"]
        s_lo, s_hi = np.searchsorted(stops["s"].to_numpy(), [lo, hi])
        frames["stop"] = stops[int(s_lo):int(s_hi)].select(
            (pl.col("s") - lo).cast(pl.Int64), pl.col("j").cast(pl.Int64), pl.col("line").cast(pl.Int64),
            *list(layout.stop_fields))
        lo, hi = bounds["assessment"]
        scores = columns["score"]
        k_lo, k_hi = np.searchsorted(scores["a"].to_numpy(), [lo, hi])
        frames["score"] = scores[int(k_lo):int(k_hi)].with_columns(pl.col("a") - lo)
        out.append(Collected(frames["persons"], frames["service"], frames["stop"], frames["assessment"],
                             frames["score"], frames["diagnosis"],
                             LazyPersons(path, layout.q(layout.person), start, stop - start), tags))
    return out
