"""Replacing a file through a temporary one, and leaving it untouched when the new bytes are the same."""

from __future__ import annotations

import os

import pytest

from transforms.core.atomic import replacing, same_bytes


def _write(path, data: bytes, keep_identical: bool) -> None:
    with replacing(path, keep_identical) as tmp:
        tmp.write_bytes(data)


def test_identical_bytes_leave_the_file_and_its_time_as_they_were(tmp_path):
    target = tmp_path / "episodes.parquet"
    _write(target, b"x" * 3_000_000, keep_identical=True)
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    _write(target, b"x" * 3_000_000, keep_identical=True)
    assert target.stat().st_mtime_ns == 1_000_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["episodes.parquet"]  # no temporary left


@pytest.mark.parametrize("new", [b"x" * 2_999_999 + b"y", b"x" * 2_999_999], ids=["same size", "shorter"])
def test_other_bytes_replace_the_file(tmp_path, new):
    target = tmp_path / "episodes.parquet"
    _write(target, b"x" * 3_000_000, keep_identical=True)
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    _write(target, new, keep_identical=True)
    assert target.read_bytes() == new and target.stat().st_mtime_ns != 1_000_000_000


def test_without_keep_identical_the_file_is_always_replaced(tmp_path):
    target = tmp_path / "messages.xml"
    _write(target, b"same", keep_identical=False)
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    _write(target, b"same", keep_identical=False)
    assert target.stat().st_mtime_ns != 1_000_000_000


def test_a_missing_file_is_not_the_same(tmp_path):
    written = tmp_path / "new"
    written.write_bytes(b"a")
    assert not same_bytes(written, tmp_path / "absent")
