"""Writing files so that a reader never sees a partial one: a temporary file beside the target, then rename.

Every output of the pipeline is written this way (Parquet tables, message files, the identity vault, the
warehouse, the sensor's record of staged sources). A process killed half-way leaves the previous file in
place, or none, plus a hidden temporary file that the next writer of the same target replaces.

No fsync: a killed process loses nothing written (the page cache survives it), and every output is
rewritten byte for byte by the next run over it, so a file lost with the machine is made again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import polars as pl

PARQUET_OPTIONS = {"compression": "zstd", "statistics": True}


def temporary_name(path: Path) -> Path:
    """The hidden temporary file for `path` in its folder, unique to this process."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def replacing(path: Path, keep_identical: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces `path` when the block ends without an error.

    For writers that want a file name of their own (DuckDB, a Parquet writer appending row groups).
    `keep_identical`: when the new bytes are those of `path` already, `path` is left as it was (its
    modification time too), so that the stages whose stamps list it see an unchanged input and keep
    their outputs: the next morning's timeline is rebuilt for a later as-of date, and its episodes
    usually come out byte for byte the same.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if keep_identical and same_bytes(tmp, path):
        tmp.unlink()
        return
    os.replace(tmp, path)


def same_bytes(written: Path, existing: Path) -> bool:
    """Whether `existing` is a file holding exactly the bytes of `written`."""
    try:
        if existing.stat().st_size != written.stat().st_size:
            return False
        with written.open("rb") as a, existing.open("rb") as b:
            while chunk := a.read(1 << 20):
                if chunk != b.read(len(chunk)):
                    return False
        return True
    except FileNotFoundError:
        return False


def write_bytes(path: Path, data: bytes) -> None:
    with Folders() as folders:
        folders.write(str(path.parent), path.name, data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_parquet(frame: pl.DataFrame, path: Path, keep_identical: bool = False, **options: object) -> None:
    """A Polars frame as one Parquet file (zstd, with statistics, unless `options` say otherwise);
    `keep_identical` as `replacing`."""
    with replacing(path, keep_identical) as tmp:
        frame.write_parquet(tmp, **{**PARQUET_OPTIONS, **options})


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary files a killed writer left under `folder` (the rerun writes the same bytes again)."""
    if folder.exists():
        for stale in folder.glob("**/.*.tmp"):
            stale.unlink(missing_ok=True)


class Folders:
    """Many files into a few folders: each folder opened once, files created and renamed relative to it.

    Resolving the path of every one of a national backfill's 900,000 message files cost more than
    writing them; a directory descriptor per folder avoids it.
    """

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._tmp_suffix = f".{os.getpid()}.tmp"

    def write(self, folder: str, name: str, data: bytes) -> None:
        fd_dir = self._fds.get(folder)
        if fd_dir is None:
            os.makedirs(folder, exist_ok=True)
            fd_dir = self._fds[folder] = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        tmp = f".{name}{self._tmp_suffix}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666, dir_fd=fd_dir)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=fd_dir, dst_dir_fd=fd_dir)

    def __enter__(self) -> Folders:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
