"""Message serializers: the neutral message model and the formats it is written in.

`get_serializer("xpr56")` gives the writer of Helsedirektoratet's event message "IPLOS i KPR",
XPR 56.0.0; the registry's current format can be added to `SERIALIZERS` as a second one. A serializer
offers `MessageSerializer` (a message at a time) and may offer `FrameWriter` (whole frames at once).
"""

# base first: it defines the interface and, at its end, imports the serializers for the registry.
from transforms.submit.serializers.base import (
    DEFAULT_SERIALIZER,
    SERIALIZERS,
    FrameWriter,
    MessageInvalid,
    MessageSerializer,
    ValidationIssue,
    frame_writer,
    get_serializer,
)
from transforms.submit.serializers.model import (
    EVENT_KINDS,
    NIL_GUID,
    STATUS_NEW,
    STATUS_REPLACE,
    STATUS_WITHDRAW,
    STATUSES,
    STOP_KINDS,
    Contact,
    Event,
    Message,
    Notification,
    Person,
)
from transforms.submit.serializers.xpr56 import Xpr56Serializer

__all__ = [
    "DEFAULT_SERIALIZER",
    "EVENT_KINDS",
    "NIL_GUID",
    "SERIALIZERS",
    "STATUSES",
    "STATUS_NEW",
    "STATUS_REPLACE",
    "STATUS_WITHDRAW",
    "STOP_KINDS",
    "Contact",
    "Event",
    "FrameWriter",
    "Message",
    "MessageInvalid",
    "MessageSerializer",
    "Notification",
    "Person",
    "ValidationIssue",
    "Xpr56Serializer",
    "frame_writer",
    "get_serializer",
]
