"""The schema check's hashing and its sample validated again, on one pool of workers."""

from __future__ import annotations

import hashlib

from transforms.submit import digests
from transforms.submit.serializers.base import SERIALIZERS


class _RefusesBad:
    """A validator that finds an issue in any message holding `bad` (as one that changed its mind would)."""

    def validate(self, data: bytes) -> list[str]:
        return ["the word bad"] if b"bad" in data else []


def _write(root, files: dict[str, bytes]) -> list[str]:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return [hashlib.sha256(data).hexdigest() for data in files.values()]


def test_the_sample_is_validated_on_the_workers_and_only_the_sample(tmp_path, monkeypatch):
    monkeypatch.setitem(SERIALIZERS, "refuses-bad", _RefusesBad)
    files = {"k1/a.xml": b"bad but recorded", "k1/b.xml": b"good", "k2/c.xml": b"bad, not sampled",
             "k2/d.xml": b"bad and large " * 1000}
    recorded = _write(tmp_path, files)
    (tmp_path / "k1/b.xml").write_bytes(b"changed")
    checked = digests.verify_digests(tmp_path, list(files), recorded, workers=2, serializer="refuses-bad",
                                     revalidate=["k1/a.xml", "k1/b.xml", "k2/d.xml", "k9/gone.xml"])
    assert checked.invalid == {"k1/a.xml": "the word bad", "k2/d.xml": "the word bad"}
    assert checked.changed == ["k1/b.xml"] and checked.missing == [] and checked.checked == 4
    assert digests.verify_digests(tmp_path, list(files), recorded, workers=1).invalid == {}
