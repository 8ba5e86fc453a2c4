"""A yearly extract's layout from its first bytes, with the outcome `iterparse` gives (layout or rejection)."""

from pathlib import Path

import pytest
from lxml import etree

from tests.unit.test_readers_iplos import bruker, doc37, tjeneste
from transforms.ingest.readers.base import FileRejected
from transforms.ingest.readers.iplos_collect import _first_tag, root_layout
from transforms.ingest.readers.iplos_layouts import layout_for_root
from transforms.ingest.readers.xml_source import xml_error
from transforms.synthetic.ids import birth_number


def _by_iterparse(path: Path) -> str:
    """The outcome of the reader before: `iterparse`'s first start event, or its error."""
    try:
        for _event, elem in etree.iterparse(str(path), events=("start",)):
            layout = layout_for_root(elem.tag)
            return layout.version if layout else f"file.unknown_layout {elem.tag!r}"
    except etree.XMLSyntaxError as exc:
        rejected = xml_error(exc)
        return f"{rejected.rejection.rule_id} {rejected}"
    return "file.unreadable"


def _outcome(path: Path) -> str:
    try:
        return root_layout(path).version
    except FileRejected as exc:
        if exc.rejection.rule_id == "file.unknown_layout":
            return f"file.unknown_layout {str(exc).split('root element ')[1].split(' is not')[0]}"
        return f"{exc.rejection.rule_id} {exc}"


PERSONS = "".join(bruker(birth_number(1 + day % 28, 3, 50), tjeneste(f"T-{day}"), str(day)) for day in range(120))
CASES = {
    "good": doc37(PERSONS),
    "error_in_first_chunk": doc37(PERSONS.replace('kjonn="2"', "kjonn=2", 1)),
    "error_after_first_chunk": doc37(PERSONS * 3).replace("</Bruker>\n</Kommune>", "</Brukr>\n</Kommune>"),
    "unknown_root": doc37(PERSONS).replace("IplosMelding", "Annet"),
    "comment_before_root": "<?xml version='1.0'?>\n<!--" + "x" * 40000 + "-->\n" + doc37(PERSONS).split("?>\n", 1)[1],
    "not_the_declared_encoding": doc37(PERSONS).replace('encoding="ISO-8859-1"', 'encoding="UTF-8"'),
    "empty": "",
    "not_xml": "hello",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_layout_or_the_rejection_iterparse_gives(tmp_path: Path, case: str):
    path = tmp_path / "0602.xml"
    text = CASES[case]
    path.write_bytes(text.encode("iso-8859-1"))
    assert _outcome(path) == _by_iterparse(path)


def test_a_good_file_needs_no_tree(tmp_path: Path):
    path = tmp_path / "0602.xml"
    path.write_bytes(CASES["good"].encode("iso-8859-1"))
    assert _first_tag(path) == "{urn:no:iplos:aarsmelding:3.7}IplosMelding"
    path.write_bytes(CASES["error_in_first_chunk"].encode("iso-8859-1"))
    assert _first_tag(path) is None  # `iterparse` says what is wrong
