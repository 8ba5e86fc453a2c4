"""The XPR 56 serializer: the interface's two methods, and the bulk path it offers besides.

Why a module of its own: it only puts the other modules together, in the order that makes handing out
invalid bytes impossible: the model's values through the rules (`attributes`), rendered (`render`), then
the bytes checked against the packaged schema and the rules again (`schema`, `rules`) as a last guard.
`render_days` and `check_rendered` are its `FrameWriter` capability (`batch`): the same bytes for a whole
frame of notifications at once.
"""

from __future__ import annotations

import polars as pl
from lxml import etree

from transforms.submit.serializers.base import MessageInvalid, ValidationIssue
from transforms.submit.serializers.model import Message
from transforms.submit.serializers.xpr56.attributes import checked_parts
from transforms.submit.serializers.xpr56.batch import BatchValidator, MessageFrame, day_messages
from transforms.submit.serializers.xpr56.render import build, render
from transforms.submit.serializers.xpr56.rules import rule_issues
from transforms.submit.serializers.xpr56.schema import parse, schema_issues
from transforms.submit.serializers.xpr56.vocabulary import NAMESPACE, VERSION


class Xpr56Serializer:
    """`Melding` of XPR 56.0.0 "IPLOS i KPR", namespace http://www.npr.no/xmlstds/56_0_0_ipl."""

    name = "xpr56"
    file_suffix = ".xml"
    namespace = NAMESPACE
    version = VERSION

    def serialize(self, message: Message) -> bytes:
        header, parts, contacts, kommune = checked_parts(message)
        data = render(build(header, parts, contacts, kommune))
        issues = self.validate(data)
        if issues:  # a gap in the rules above: still never hand out invalid bytes
            raise MessageInvalid.from_issue(issues[0], tuple(issues))
        return data

    def validate(self, data: bytes) -> list[ValidationIssue]:
        """Schema errors and rule violations of serialized bytes, in document order."""
        try:
            root = parse(data)
        except etree.XMLSyntaxError as exc:
            return [ValidationIssue(exc.lineno, f"not well-formed XML: {exc.msg}", rule="xml")]
        issues = schema_issues(root) + rule_issues(root)
        return sorted(issues, key=lambda i: i.line if i.line is not None else 0)

    # --- FrameWriter: the bulk path -------------------------------------------------------------------
    def render_days(self, frame: pl.DataFrame, header: Message) -> pl.DataFrame:
        """Every day's message rendered at once (`batch.day_messages`); when the header itself breaks a rule,
        every day is suspect, so `serialize` raises its `MessageInvalid` on the first."""
        wrapper = MessageFrame(self, header)
        days = day_messages(frame, wrapper)
        return days if wrapper.error is None else days.with_columns(suspect=pl.lit(True))

    def check_rendered(self, messages: list[bytes]) -> list[MessageInvalid | None]:
        """Many messages per schema validation call (`batch.BatchValidator`)."""
        return BatchValidator(self).check(messages)
