"""Rendering: checked attribute values to an element tree, and the tree to the bytes of the examples' layout.

Why a module of its own: the bytes are part of the contract (a rewritten day must reproduce its file byte
for byte), and the layout is that of the specification's examples, not lxml's: UTF-8 with an XML
declaration, two-space indentation, the attributes of `Melding`, `Notifikasjon` and the event elements
broken over fixed lines aligned under the first attribute, a fixed attribute order. The bulk renderer
(`batch.render_rows`) writes the same layout for many notifications at once and is tested against this one.
"""

from __future__ import annotations

from collections.abc import Iterable

from lxml import etree

from transforms.submit.serializers.model import EVENT_KINDS
from transforms.submit.serializers.xpr56.rules import EventData
from transforms.submit.serializers.xpr56.vocabulary import NAMESPACE, local_name, qualified

# Attribute order and line breaks, as in the specification's examples: one tuple per line.
_EVENT_LAYOUT = (("tjenesteType", "hendelseRegTid", "hendelseDato"),
                 ("tjenesteID", "tjenesteOrgNr", "hendelseGUID", "midlertidigStoppID"))
_LAYOUT: dict[str, tuple[tuple[str, ...], ...]] = {
    "Melding": (("xmlns", "versjon", "meldingstype"), ("leverandor", "navnEPJ", "versjonEPJ", "versjonUt")),
    "Notifikasjon": (("statusNotifikasjon", "notifikasjonTid"), ("notifikasjonGUID",),
                     ("notifikasjonForrigeGUID", "notifikasjonLopeNr"), ("notifikasjonRef",)),
    **{kind: _EVENT_LAYOUT for kind in EVENT_KINDS},
    "Bruker": (("pasientGUID", "brukerNr", "fid", "typeID", "bydel"),),
    "Kontaktperson": (("kontPerson", "meldEpost1", "typeKontaktperson"),),
    "Kommune": (("kommuneNr",),),
}
_INDENT = "  "


def build(header: dict[str, str], parts: Iterable[tuple[dict[str, str], EventData]],
          contacts: Iterable[dict[str, str]], kommune: dict[str, str]) -> etree._Element:
    """The element tree of checked attribute values (`attributes.checked_parts`), attributes in layout order."""
    root = etree.Element(qualified("Melding"), nsmap={None: NAMESPACE})
    _set(root, header)
    for attrs, event in parts:
        notification = etree.SubElement(root, qualified("Notifikasjon"))
        _set(notification, attrs)
        element = etree.SubElement(notification, qualified(event.kind))
        _set(element, event.attrs)
        if event.bruker is not None:
            _set(etree.SubElement(element, qualified("Bruker")), event.bruker)
    for attrs in contacts:
        _set(etree.SubElement(root, qualified("Kontaktperson")), attrs)
    _set(etree.SubElement(root, qualified("Kommune")), kommune)
    return root


def _set(element: etree._Element, attrs: dict[str, str]) -> None:
    """Attributes in the layout's order (lxml keeps insertion order)."""
    order = [name for line in _LAYOUT.get(local_name(element), ()) for name in line]
    for name in sorted(attrs, key=lambda k: order.index(k) if k in order else len(order)):
        element.set(name, attrs[name])


def _escape(value: str) -> str:
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
            .replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;"))


def render(root: etree._Element) -> bytes:
    """The bytes of a tree in the examples' layout (attributes on fixed lines, aligned)."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>']
    _render(root, 0, lines, is_root=True)
    return ("\n".join(lines) + "\n").encode("utf-8")


def _render(element: etree._Element, depth: int, lines: list[str], is_root: bool = False) -> None:
    name = local_name(element)
    values = dict(element.attrib)
    if is_root:
        values = {"xmlns": NAMESPACE, **values}
    layout = _LAYOUT.get(name, ())
    placed = {n for line in layout for n in line}
    groups = [[n for n in line if n in values] for line in layout]
    groups = [g for g in groups if g] or [[]]
    groups[-1].extend(n for n in values if n not in placed)
    indent = _INDENT * depth
    head = f"{indent}<{name}"
    align = " " * (len(head) + 1)
    tag_lines = []
    for i, group in enumerate(groups):
        attrs = " ".join(f'{n}="{_escape(values[n])}"' for n in group)
        tag_lines.append(f"{head} {attrs}".rstrip() if i == 0 else f"{align}{attrs}")
    children = [c for c in element if isinstance(c.tag, str)]
    if children:
        tag_lines[-1] += ">"
        lines.extend(tag_lines)
        for child in children:
            _render(child, depth + 1, lines)
        lines.append(f"{indent}</{name}>")
    else:
        tag_lines[-1] += "/>"
        lines.extend(tag_lines)
