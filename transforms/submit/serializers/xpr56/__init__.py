"""XPR 56.0.0 "IPLOS i KPR" (HIS 1135:2021): the event message `Melding` of Helsedirektoratet.

Layout of a message (the schema's order): the notifications in sequence order, one
`Kontaktperson` per contact, one `Kommune`. Every `Notifikasjon` holds exactly one event element.

Bytes are deterministic: UTF-8 with an XML declaration, a fixed attribute order and the line
layout of the examples in the specification (two-space indentation, the attributes of `Melding`,
`Notifikasjon` and the event elements broken over fixed lines aligned under the first attribute),
dates `YYYY-MM-DD`, timestamps `YYYY-MM-DDTHH:MM:SS` in Norwegian local time without offset.

`serialize` checks the message against the schema's and the requirement document's rules before it
returns and raises `MessageInvalid` naming the first failing notification and the rule; the rendered
bytes are then validated against the packaged copy of the official schema as a last guard, so bytes
that fail the schema are never returned. `validate` checks bytes against the schema and the same
rules.

One job a module:
- `vocabulary`  namespace, version, the code lists (9151, 9032, 8471, 7316) and the forms of values
- `schema`      the packaged official schema, compiled once; schema errors located at their notification
- `rules`       the rules beyond the schema, over attribute values (of the model, or of parsed bytes)
- `attributes`  the model's values as the text the format writes, passed through the rules
- `render`      attribute values to an element tree, and the tree to bytes in the examples' layout
- `serializer`  `Xpr56Serializer`: the interface (`serialize`, `validate`) and its bulk path
- `batch`       the bulk path: a municipality's days rendered by one Polars expression, validated in batches
"""

from transforms.submit.serializers.xpr56.schema import SCHEMA_FILE, SCHEMA_FILES, load_schema, schema_dir, schema_issues
from transforms.submit.serializers.xpr56.serializer import Xpr56Serializer
from transforms.submit.serializers.xpr56.vocabulary import (
    CONTACT_TYPE_8471,
    MESSAGE_TYPE,
    NAMESPACE,
    PERSON_ID_TYPE_9032,
    STATUS_7316,
    TJENESTETYPE_9151,
    VERSION,
)

__all__ = [
    "CONTACT_TYPE_8471",
    "MESSAGE_TYPE",
    "NAMESPACE",
    "PERSON_ID_TYPE_9032",
    "SCHEMA_FILE",
    "SCHEMA_FILES",
    "STATUS_7316",
    "TJENESTETYPE_9151",
    "VERSION",
    "Xpr56Serializer",
    "load_schema",
    "schema_dir",
    "schema_issues",
]
