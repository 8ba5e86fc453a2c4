"""The official XPR 56 schema: where the packaged copy is, compiled once, and its errors located.

Why a module of its own: both the serializer (every message before it is returned, every file checked
afterwards) and the bulk validator (`batch`, many messages per call against a wrapper that imports this
schema) rely on one compiled schema and one safe parser configuration; and a schema error is only useful
when it names the notification it falls in, which is worked out here.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import threading
from importlib import resources
from pathlib import Path

from lxml import etree

from transforms.submit.serializers.base import ValidationIssue
from transforms.submit.serializers.xpr56.vocabulary import NAMESPACE, qualified, sequence_no

SCHEMA_FILE = "XPR(ipl).xsd"
SCHEMA_FILES = ("XPR(ipl).xsd", "XPR(ipl)_CodingSchemes.xsd", "NPR.xsd")


def schema_dir() -> Path:
    """The packaged copy of the official schema (XPR(ipl).xsd with its include and import)."""
    res = resources.files("transforms.submit.serializers") / "schemas" / "xpr56"
    if isinstance(res, Path):
        return res
    return _extracted_schema_dir()


@functools.cache
def _extracted_schema_dir() -> Path:
    """For an installation that is not a directory (a zip): the schema files in a temporary directory,
    so that the schema's relative include and import resolve."""
    target = Path(tempfile.mkdtemp(prefix="ktt-xpr56-"))
    res = resources.files("transforms.submit.serializers") / "schemas" / "xpr56"
    for name in SCHEMA_FILES:
        with (res / name).open("rb") as src, (target / name).open("wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


@functools.cache
def load_schema(directory: Path | None = None) -> etree.XMLSchema:
    """The compiled schema from `directory` (default: the packaged copy)."""
    path = Path(directory) if directory is not None else schema_dir()
    return etree.XMLSchema(etree.parse(str(path / SCHEMA_FILE), parser()))


_SCHEMA_LOCK = threading.Lock()  # a compiled schema keeps its error log on the object


# A message is data: no entities expanded, no DTD loaded, nothing fetched from the network
PARSER_OPTIONS = {"resolve_entities": False, "no_network": True, "load_dtd": False, "huge_tree": False}


def parser() -> etree.XMLParser:
    return etree.XMLParser(**PARSER_OPTIONS)


def parse(data: bytes) -> etree._Element:
    """The root element of serialized bytes (raises `etree.XMLSyntaxError` when not well-formed)."""
    return etree.fromstring(data, parser())


def schema_issues(data: bytes | etree._Element, schema: etree.XMLSchema | None = None) -> list[ValidationIssue]:
    """Schema errors only (rule "xsd"; "xml" when not well-formed), with the notification they fall in."""
    if isinstance(data, bytes | bytearray):
        try:
            root = parse(bytes(data))
        except etree.XMLSyntaxError as exc:
            return [ValidationIssue(exc.lineno, f"not well-formed XML: {exc.msg}", rule="xml")]
    else:
        root = data
    schema = schema if schema is not None else load_schema()
    with _SCHEMA_LOCK:
        if schema.validate(root):
            return []
        entries = [(e.line, e.path, e.message) for e in schema.error_log
                   if e.level != etree.ErrorLevels.WARNING and not _follow_up(e.message)]
    issues = []
    tree = root.getroottree()
    for line, path, text in entries:
        guid, seq = None, None
        try:
            found = tree.xpath(path) if path else []
        except etree.XPathError:
            found = []
        if found and isinstance(found[0], etree._Element):
            guid, seq = _notification_of(found[0])
        issues.append(ValidationIssue(line or None, text.replace("{" + NAMESPACE + "}", ""), guid, seq, "xsd"))
    return issues


def _follow_up(text: str) -> bool:
    """libxml2's note after an invalid value in a unique key: the value's own error says it all."""
    return "No precomputed value available" in text


def _notification_of(element: etree._Element) -> tuple[str | None, int | None]:
    for node in (element, *element.iterancestors()):
        if node.tag == qualified("Notifikasjon"):
            return node.get("notifikasjonGUID"), sequence_no(node.get("notifikasjonLopeNr"))
    return None, None
