"""Message files compared with the SHA-256 the writer recorded for the bytes it validated.

Why a module of its own: the schema check of a national backfill covers some 900,000 files (5 GB).
Validating each again cost twelve minutes in one process; hashing them costs the reads and a few GB/s
of SHA-256, spread over the cores, so the check proves the same thing (these are the bytes that passed
validation) in seconds. The check's sample of files validated again in full runs on the same pool: a
municipality's first file holds its whole starting state, and 714 of them took 27 s in the main process.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from transforms.submit.serializers import DEFAULT_SERIALIZER, get_serializer

CHUNK_FILES = 5000  # files per task: few enough tasks that handing them out costs nothing
POOL_MIN_FILES = 20_000  # this many files repay starting processes (about a second); fewer are hashed on threads


@dataclass
class DigestCheck:
    """How many files were compared, those whose bytes differ from the record, those missing, bytes read.

    A count, not the list, of the files compared: a national run's 900,000 paths as Python strings, sent back
    from the pool, held some hundreds of MB in the process that goes on to the next check."""

    checked: int = 0
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    bytes: int = 0
    invalid: dict[str, str] = field(default_factory=dict)  # of the files validated again: the first issue found


def _read(name: str, folder_fd: int) -> bytes:
    fd = os.open(name, os.O_RDONLY, dir_fd=folder_fd)
    try:
        size = os.fstat(fd).st_size
        parts = [os.read(fd, size)]
        while len(parts[-1]):  # a file that grew, or a short read
            parts.append(os.read(fd, 1 << 20))
        return b"".join(parts)
    finally:
        os.close(fd)


def _verify_chunk(root: str, files: list[str], digests: list[str]) -> DigestCheck:
    """Each file opened relative to its folder's descriptor: resolving the whole path of each of 900,000 files
    cost more than reading and hashing them."""
    result = DigestCheck(checked=len(files))
    folders: dict[str, int] = {}
    try:
        for rel, recorded in zip(files, digests, strict=True):
            folder, _, name = rel.rpartition("/")
            try:
                folder_fd = folders.get(folder)
                if folder_fd is None:
                    folder_fd = folders[folder] = os.open(os.path.join(root, folder), os.O_RDONLY | os.O_DIRECTORY)
                data = _read(name, folder_fd)
            except FileNotFoundError:
                result.missing.append(rel)
                continue
            result.bytes += len(data)
            if hashlib.sha256(data).hexdigest() != recorded:
                result.changed.append(rel)
    finally:
        for fd in folders.values():
            os.close(fd)
    return result


def _validate_chunk(root: str, files: list[str], serializer: str) -> dict[str, str]:
    """The first issue of each file of `files` that `serializer` finds invalid (a missing file is the digests')."""
    validator = get_serializer(serializer)
    invalid = {}
    for rel in files:
        try:
            data = (Path(root) / rel).read_bytes()
        except FileNotFoundError:
            continue
        issues = validator.validate(data)
        if issues:
            invalid[rel] = str(issues[0])
    return invalid


def _executor(files: int, workers: int) -> Executor:
    """Processes for a large run (the per-file Python work holds the GIL), threads otherwise or where a
    process may not start children (a daemonic one)."""
    if files >= POOL_MIN_FILES and workers > 1 and not multiprocessing.current_process().daemon:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="digest")


def verify_digests(root: Path, files: list[str], digests: list[str], workers: int | None = None,
                   revalidate: list[str] = (), serializer: str = DEFAULT_SERIALIZER) -> DigestCheck:
    """Each file under `root` hashed and compared with its recorded digest, `workers` at a time (one per core);
    the files `revalidate` also validated in full by `serializer` (their issues in `invalid`)."""
    workers = workers or max(1, len(os.sched_getaffinity(0)))
    starts = range(0, len(files), CHUNK_FILES)
    total = DigestCheck()
    with _executor(len(files), workers) as pool:
        # the few large validations first, in as many pieces as there are workers, the hashing behind them
        largest_first = sorted(revalidate, key=lambda rel: -_size(root / rel))
        validations = [pool.submit(_validate_chunk, str(root), largest_first[i::workers], serializer)
                       for i in range(min(workers, len(largest_first)))]
        for part in pool.map(_verify_chunk, [str(root)] * len(starts), [files[i:i + CHUNK_FILES] for i in starts],
                             [digests[i:i + CHUNK_FILES] for i in starts]):
            total.checked += part.checked
            total.changed += part.changed
            total.missing += part.missing
            total.bytes += part.bytes
        for validation in validations:
            total.invalid.update(validation.result())
    return total


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
