"""Turning a raw identifier into a pseudonymous person key, or a rejection."""

from __future__ import annotations

from transforms.ingest.values.fields import FieldError
from transforms.ingest.sink import FileSink
from transforms.privacy.identity import check_identifier


def resolve_person(sink: FileSink, raw_id: str | None, declared_type: int | None,
                   allow_synthetic: bool) -> tuple[str, int]:
    """Validate the identifier; on success register it in the vault and return (person_key, id_type)."""
    check = check_identifier(raw_id, declared_type, allow_synthetic)
    if check.rule_id is not None:
        raise FieldError(check.rule_id, check.message or check.rule_id)
    id_type = check.id_type if check.id_type is not None else (declared_type or 9)
    return sink.person_key(raw_id or "", id_type), id_type
