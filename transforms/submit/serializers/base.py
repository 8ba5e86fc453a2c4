"""What every message serializer offers, what one may offer besides, its errors, and the registry by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from transforms.submit.serializers.model import Message

if TYPE_CHECKING:
    import polars as pl


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in a serialized message.

    `line` is the line of the offending element in the bytes (None if unknown),
    `notification_guid` / `sequence_no` name the notification it belongs to (None for the
    message header, contacts, the municipality or when the notification has no readable GUID),
    `rule` is "xsd" for a schema error or the id of the serializer's own rule (e.g. "code-list-9151").
    """

    line: int | None
    message: str
    notification_guid: str | None = None
    sequence_no: int | None = None
    rule: str = "xsd"

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{_subject(self.notification_guid, self.sequence_no)}{self.message} [rule {self.rule}]"


def _subject(guid: str | None, sequence_no: int | None) -> str:
    if guid is None and sequence_no is None:
        return ""
    return f"notification {guid or '?'} (sequence no {sequence_no if sequence_no is not None else '?'}): "


class MessageInvalid(Exception):
    """The message breaks a rule of the format; nothing was returned.

    Names the first failing notification (GUID and sequence number; both None for a
    message-level problem) and the rule.
    """

    def __init__(self, rule: str, detail: str, notification_guid: str | None = None,
                 sequence_no: int | None = None, issues: tuple[ValidationIssue, ...] = ()):
        self.rule = rule
        self.detail = detail
        self.notification_guid = notification_guid
        self.sequence_no = sequence_no
        self.issues = issues
        scope = _subject(notification_guid, sequence_no) or "message: "
        super().__init__(f"{scope}{detail} [rule {rule}]")

    def __reduce__(self) -> tuple:
        # raised in a pool process and re-raised in the writer: pickle the fields, not the formatted text
        return (type(self), (self.rule, self.detail, self.notification_guid, self.sequence_no, self.issues))

    @classmethod
    def from_issue(cls, issue: ValidationIssue, issues: tuple[ValidationIssue, ...] = ()) -> MessageInvalid:
        detail = issue.message if issue.line is None else f"{issue.message} (line {issue.line})"
        return cls(issue.rule, detail, issue.notification_guid, issue.sequence_no, issues)


@runtime_checkable
class MessageSerializer(Protocol):
    """Turns a `Message` into the bytes of one file of a format, and checks such bytes.

    This is all a format must offer: the submission writer makes each day's `Message` and calls `serialize`
    once per day. A format that can do better for many days at once offers `FrameWriter` as well.
    """

    name: str
    file_suffix: str  # e.g. ".xml"

    def serialize(self, message: Message) -> bytes:
        """Deterministic bytes of a valid message; raises `MessageInvalid` instead of returning invalid bytes."""
        ...

    def validate(self, data: bytes) -> list[ValidationIssue]:
        """Every problem of serialized bytes in document order; empty when they are valid."""
        ...


@runtime_checkable
class FrameWriter(Protocol):
    """Optional: whole frames of notifications rendered and validated at once, instead of a `Message` a day.

    Why: building a model and serializing it costs some 0.1 ms per notification in Python, most of an hour
    for a national backfill. A serializer that offers these two methods gets the writer's bulk path; the
    writer asks for it with `frame_writer(serializer)`, never by the serializer's class, and a serializer
    without them takes the per-message path (`serialize` per day), which gives the same files.

    The contract: for a day that is not flagged `suspect`, `message` is byte for byte what `serialize` makes
    of that day's `Message`; a suspect day (one whose rows might break a rule, or all days when the
    header does) is made by `serialize` instead, which returns those bytes or raises `MessageInvalid`. A
    rendered message is not final until `check_rendered` has passed it.
    """

    def render_days(self, frame: pl.DataFrame, header: Message) -> pl.DataFrame:
        """Every day of `frame` in day order: `day`, `message` (its bytes, not yet checked), `n`, `first_seq`,
        `last_seq` and `suspect`.

        `frame` holds one municipality's notifications in the columns of `transforms.tables.MESSAGE_FRAME`;
        `header` is its message without notifications (municipality, vendor, contacts).
        """
        ...

    def check_rendered(self, messages: list[bytes]) -> list[MessageInvalid | None]:
        """Per message of `render_days`: None when it is valid, else the `MessageInvalid` `serialize` would
        raise for it."""
        ...


def frame_writer(serializer: MessageSerializer) -> FrameWriter | None:
    """The serializer's bulk path, or None when it offers none (then each day is one `serialize` call)."""
    return serializer if isinstance(serializer, FrameWriter) else None


# The registry. Imported at the end: xpr56 imports the names above from this module (the package
# __init__ imports this module first, so the cycle always resolves the same way).
from transforms.submit.serializers.xpr56 import Xpr56Serializer  # noqa: E402

SERIALIZERS: dict[str, type[MessageSerializer]] = {
    Xpr56Serializer.name: Xpr56Serializer,
}
DEFAULT_SERIALIZER = "xpr56"


def get_serializer(name: str = DEFAULT_SERIALIZER) -> MessageSerializer:
    """A serializer instance by its registry name."""
    try:
        cls = SERIALIZERS[name]
    except KeyError:
        raise ValueError(f"unknown message serializer {name!r}; known: {', '.join(sorted(SERIALIZERS))}") from None
    return cls()
