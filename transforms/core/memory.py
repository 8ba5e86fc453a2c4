"""Giving freed memory back to the system between the stages of an in-process run.

Why: `ktt backfill` runs every stage in one process, one after the other. What a stage frees stays in the
C allocator's free lists unless it is handed back, and the next stage's peak comes on top of it: the process
tree's peak is the sum of what each stage left plus its own. A full collection and `malloc_trim` after each
stage return what glibc holds (Polars' and DuckDB's own allocators return theirs by themselves).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc


def release_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
