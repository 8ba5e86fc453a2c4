"""Yearly IPLOS extracts (layouts 3.6 and 3.7) -> staged rows, streaming.

`lxml.etree.iterparse` hands over one person element at a time; the person is
staged (or quarantined with all its records) and then cleared, so memory stays
flat whatever the file size.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lxml import etree

from transforms.ingest.quarantine import Rejection
from transforms.ingest.values import fields as f
from transforms.ingest.readers.base import FileRejected, ReadContext
from transforms.ingest.readers.iplos_layouts import XmlLayout, layout_for_root
from transforms.ingest.readers.persons import resolve_person
from transforms.ingest.sink import FileSink

VALID_SCORES = {1, 2, 3, 4, 5, 9}


def _compile(path: str, layout: XmlLayout) -> Callable[[etree._Element], str | None]:
    """Turn a mapping path into a getter once, instead of re-parsing it for every element."""
    if path == ".":
        return lambda elem: elem.text
    if path.startswith("@"):
        attribute = path[1:]
        return lambda elem: elem.get(attribute)
    child_path, _, attr = path.partition("/@")
    child_tag = layout.q(child_path)

    def get(elem: etree._Element) -> str | None:
        child = elem.find(child_tag)
        if child is None:
            return None
        return child.get(attr) if attr else child.text

    return get


_GETTERS: dict[tuple[str, str], tuple[tuple[str, Callable[[etree._Element], str | None]], ...]] = {}


def _getters(layout: XmlLayout, kind: str) -> tuple[tuple[str, Callable[[etree._Element], str | None]], ...]:
    key = (layout.version, kind)
    if key not in _GETTERS:
        fields = {"person": layout.person_fields, "service": layout.service_fields, "stop": layout.stop_fields,
                  "diagnosis": layout.diagnosis_fields}[kind]
        _GETTERS[key] = tuple((name, _compile(path, layout)) for name, path in fields.items())
    return _GETTERS[key]


def _values(elem: etree._Element, layout: XmlLayout, kind: str) -> dict[str, str | None]:
    return {name: get(elem) for name, get in _getters(layout, kind)}


def _get(elem: etree._Element, path: str, layout: XmlLayout) -> str | None:
    return _compile(path, layout)(elem)


def _raw(elem: etree._Element) -> str:
    """The element as text, children included, for the quarantine (identifiers get masked there)."""
    return etree.tostring(elem, encoding="unicode", with_tail=False)


class _Header:
    """Header values of the file, collected as the parser passes them."""

    def __init__(self) -> None:
        self.year: int | None = None
        self.unit: str | None = None
        self.extract_date: dt.date | None = None


def _read_header_value(layout: XmlLayout, header: _Header, which: str, elem: etree._Element) -> None:
    _, path = getattr(layout, which)
    value = _get(elem, path, layout)
    try:
        if which == "year":
            header.year = f.parse_int(value, "data year")
        elif which == "unit":
            header.unit = (value or "").strip() or None
        else:
            header.extract_date = f.parse_date(value, layout.date_format, "extract date")
    except f.FieldError as exc:
        raise FileRejected("file.unknown_layout", f"header {which}: {exc}") from None


def _read_header(layout: XmlLayout, header: _Header, elem: etree._Element, at_end: bool) -> None:
    """Header fields held by `elem`: attributes (any time) or child texts (once the element has ended)."""
    for which in ("year", "unit", "extract_date"):
        where, path = getattr(layout, which)
        matches = elem.tag == layout.q(where or layout.root) and (path.startswith("@") or at_end)
        if matches and getattr(header, which) is None:
            _read_header_value(layout, header, which, elem)


def _check_header(header: _Header, ctx: ReadContext) -> None:
    if ctx.year is not None and header.year != ctx.year:
        raise FileRejected("file.misfiled", f"header data year {header.year} but filed under {ctx.year}")
    if ctx.unit is not None and header.unit != ctx.unit:
        raise FileRejected("file.misfiled", f"header kommunenummer {header.unit} but filed under {ctx.unit}")


def read_iplos_file(path: Path, sink: FileSink, ctx: ReadContext) -> None:
    """Stage one yearly extract. Whole-file problems raise `FileRejected`."""
    layout: XmlLayout | None = None
    header = _Header()
    header_checked = False
    person_index = 0
    try:
        # Only "end" events: attributes of the root and Kommune are complete long before their
        # first person ends, so the header is read from the person's ancestors.
        for _event, elem in etree.iterparse(str(path), events=("end",), remove_comments=True):
            if layout is None:
                root = elem.getroottree().getroot()
                layout = layout_for_root(root.tag)
                if layout is None:
                    raise FileRejected("file.unknown_layout", f"root element {root.tag!r} is not a known layout")
                person_tag = layout.q(layout.person)
                header_tags = {layout.q(where or layout.root) for where, _ in
                               (layout.year, layout.unit, layout.extract_date)}
            tag = elem.tag
            if tag != person_tag:
                if not header_checked and tag in header_tags:
                    _read_header(layout, header, elem, at_end=True)
                continue
            if not header_checked:
                for ancestor in elem.iterancestors():
                    _read_header(layout, header, ancestor, at_end=False)
                _check_header(header, ctx)
                header_checked = True
            person_index += 1
            _read_person(elem, person_index, layout, header, sink, ctx)
            # Free the person and everything before it: flat memory.
            elem.clear(keep_tail=False)
            parent = elem.getparent()
            while parent is not None and elem.getprevious() is not None:
                del parent[0]
    except etree.XMLSyntaxError as exc:
        message = str(exc)
        lowered = message.lower()
        if "encoding" in lowered or "utf-8" in lowered or "char 0x" in lowered:
            raise FileRejected("file.encoding_mismatch", f"bytes do not match the declared encoding: {message}"
                               ) from None
        raise FileRejected("file.unparseable", f"not well-formed XML: {message}") from None
    if layout is None:
        raise FileRejected("file.unreadable", "the file is empty")
    if not header_checked:
        _check_header(header, ctx)


def _prefix(layout: XmlLayout, header: _Header, sink: FileSink, line: int | None, location: str) -> dict:
    return {
        "source_file": sink.rel_path, "line": line, "location": location, "layout": layout.version,
        "data_year": header.year, "unit": header.unit,
    }


def _children(elem: etree._Element, tag: str | None, layout: XmlLayout) -> list[etree._Element]:
    return [] if tag is None else list(elem.iterfind(layout.q(tag)))


def _reject_subtree(elem: etree._Element, person_path: str, layout: XmlLayout, sink: FileSink,
                    rejection: Rejection, kinds: dict[str, str]) -> None:
    """Quarantine every record below a quarantined parent, each with its own line."""
    counters: dict[str, int] = {}
    for child in elem.iter():
        if child is elem or not isinstance(child.tag, str):
            continue
        kind = kinds.get(child.tag)
        if kind is None:
            continue
        local = etree.QName(child).localname
        counters[local] = counters.get(local, 0) + 1
        sink.seen(kind)
        sink.reject(kind, rejection, child.sourceline, f"{person_path}//{local}[{counters[local]}]", _raw(child))


def _record_kinds(layout: XmlLayout) -> dict[str, str]:
    kinds = {layout.q(layout.service): "service", layout.q(layout.assessment): "assessment"}
    if layout.stop:
        kinds[layout.q(layout.stop)] = "stop"
    if layout.diagnosis:
        kinds[layout.q(layout.diagnosis)] = "diagnosis"
    return kinds


def _read_person(elem: etree._Element, index: int, layout: XmlLayout, header: _Header, sink: FileSink,
                 ctx: ReadContext) -> None:
    path = f"/{layout.root}/{layout.person}[{index}]"
    sink.seen("person")
    values = _values(elem, layout, "person")
    try:
        declared = f.parse_int(values.get("id_type"), "typeID")
        person_key, id_type = resolve_person(sink, values.get("fid"), declared, ctx.allow_synthetic_ids)
        row = {
            **_prefix(layout, header, sink, elem.sourceline, path),
            "extract_date": header.extract_date,
            "user_no": f.required(values.get("user_no"), "brukerNr"),
            "person_key": person_key,
            "id_type": id_type,
            "sex": f.parse_int(values.get("sex"), "kjonn"),
            "birth_year": f.parse_int(values.get("birth_year"), "fodselsar"),
            "district": (values.get("district") or "").strip() or None,
            "death_date": f.parse_date(values.get("death_date"), layout.date_format, "dodsdato"),
            "household": f.parse_int(values.get("household"), "husstand"),
        }
    except f.FieldError as exc:
        sink.reject("person", exc.rejection, elem.sourceline, path, _raw(elem))
        child_rejection = Rejection("id.parent_quarantined",
                                    f"belongs to a person quarantined for {exc.rejection.rule_id}")
        _reject_subtree(elem, path, layout, sink, child_rejection, _record_kinds(layout))
        return
    sink.stage("iplos_persons", "person", row)
    for i, service in enumerate(_children(elem, layout.service, layout), start=1):
        _read_service(service, f"{path}/{layout.service}[{i}]", row, layout, header, sink)
    for i, assessment in enumerate(_children(elem, layout.assessment, layout), start=1):
        _read_assessment(assessment, f"{path}/{layout.assessment}[{i}]", row, layout, header, sink)
    for i, diagnosis in enumerate(_children(elem, layout.diagnosis, layout), start=1):
        _read_diagnosis(diagnosis, f"{path}/{layout.diagnosis}[{i}]", row, layout, header, sink)


def _read_service(elem: etree._Element, path: str, person: dict[str, Any], layout: XmlLayout,
                  header: _Header, sink: FileSink) -> None:
    sink.seen("service")
    v = _values(elem, layout, "service")
    try:
        start = f.parse_date(f.required(v.get("start_date"), "start date"), layout.date_format, "start date")
        end = f.parse_date(v.get("end_date"), layout.date_format, "end date")
        f.check_period(start, end, "service")
        service_id = v.get("service_id")
        if layout.version != "3.6":
            service_id = f.required(service_id, "tjenesteID")
        row = {
            **_prefix(layout, header, sink, elem.sourceline, path),
            "extract_date": header.extract_date,
            "user_no": person["user_no"],
            "person_key": person["person_key"],
            "service_id": service_id,
            "service_code": f.parse_service_code(v.get("service_code")),
            "decision_date": f.parse_date(v.get("decision_date"), layout.date_format, "decision date"),
            "start_date": start,
            "end_date": end,
            "provider_org": f.parse_org(v.get("provider_org")),
            "hours_per_week": f.parse_hours(v.get("hours_per_week"), layout.decimal_comma),
        }
    except f.FieldError as exc:
        sink.reject("service", exc.rejection, elem.sourceline, path, _raw(elem))
        if layout.stop:
            child = Rejection("record.parent_quarantined", f"belongs to a service quarantined for "
                                                           f"{exc.rejection.rule_id}")
            for i, stop in enumerate(_children(elem, layout.stop, layout), start=1):
                sink.seen("stop")
                sink.reject("stop", child, stop.sourceline, f"{path}/{layout.stop}[{i}]", _raw(stop))
        return
    sink.stage("iplos_services", "service", row)
    for i, stop in enumerate(_children(elem, layout.stop, layout), start=1):
        _read_stop(stop, f"{path}/{layout.stop}[{i}]", row, layout, header, sink)


def _read_stop(elem: etree._Element, path: str, service: dict[str, Any], layout: XmlLayout,
               header: _Header, sink: FileSink) -> None:
    sink.seen("stop")
    v = _values(elem, layout, "stop")
    try:
        start = f.parse_date(f.required(v.get("from_date"), "fraDato"), layout.date_format, "fraDato")
        end = f.parse_date(v.get("to_date"), layout.date_format, "tilDato")
        f.check_period(start, end, "stop")
        row = {
            **_prefix(layout, header, sink, elem.sourceline, path),
            "extract_date": header.extract_date,
            "person_key": service["person_key"],
            "service_id": service["service_id"],
            "stop_id": f.required(v.get("stop_id"), "stoppID"),
            "from_date": start,
            "to_date": end,
        }
    except f.FieldError as exc:
        sink.reject("stop", exc.rejection, elem.sourceline, path, _raw(elem))
        return
    sink.stage("iplos_stops", "stop", row)


def _read_assessment(elem: etree._Element, path: str, person: dict[str, Any], layout: XmlLayout,
                     header: _Header, sink: FileSink) -> None:
    sink.seen("assessment")
    names = f.function_variables()
    try:
        date = f.parse_date(_get(elem, layout.assessment_date, layout), layout.date_format, "assessment date")
        rows = []
        for score_elem in elem.iterfind(layout.q(layout.score)):
            variable = _get(score_elem, layout.score_variable, layout)
            if layout.score_variable_is_number:
                number = f.parse_int(variable, "variable number")
                if number not in names:
                    raise f.FieldError("code.unknown_value", f"function variable number {variable!r} unknown")
                variable = names[number]
            elif variable not in names.values():
                raise f.FieldError("code.unknown_value", f"function variable {variable!r} unknown")
            score = f.parse_int(_get(score_elem, layout.score_value, layout), "score")
            if score not in VALID_SCORES:
                raise f.FieldError("code.unknown_value", f"score {score} of {variable} not in 1-5 or 9")
            rows.append({
                **_prefix(layout, header, sink, elem.sourceline, path),
                "person_key": person["person_key"], "assessment_date": date,
                "variable": variable, "score": score,
            })
    except f.FieldError as exc:
        sink.reject("assessment", exc.rejection, elem.sourceline, path, _raw(elem))
        return
    if not rows:
        sink.reject("assessment", Rejection("field.missing", "function assessment without scores"),
                    elem.sourceline, path, _raw(elem))
        return
    for i, row in enumerate(rows):
        sink.stage("iplos_assessments", "assessment", row, count=i == 0)


def _read_diagnosis(elem: etree._Element, path: str, person: dict[str, Any], layout: XmlLayout,
                    header: _Header, sink: FileSink) -> None:
    sink.seen("diagnosis")
    v = _values(elem, layout, "diagnosis")
    try:
        row = {
            **_prefix(layout, header, sink, elem.sourceline, path),
            "person_key": person["person_key"],
            "system": f.required(v.get("system"), "system"),
            "code": f.required(v.get("code"), "kode"),
            "diagnosis_date": f.parse_date(v.get("diagnosis_date"), layout.date_format, "dato"),
        }
    except f.FieldError as exc:
        sink.reject("diagnosis", exc.rejection, elem.sourceline, path, _raw(elem))
        return
    sink.stage("iplos_diagnoses", "diagnosis", row)
