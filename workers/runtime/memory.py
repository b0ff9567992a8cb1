"""Process-level memory tuning of the workers (called once by the entry points, never at import time).

The batch pipelines allocate and free buffers of a few MiB per chunk (S3 reads, CSV blocks, Parquet and COPY
encodings) from several threads. glibc's malloc raises its mmap threshold dynamically after such frees, so later
buffers come from the heap arenas, which fragment and do not shrink: a worker's RSS then creeps up with the
number of chunks, i.e. with the file's size. A fixed threshold of 1 MiB serves every large buffer by ``mmap``,
returned to the OS on free, and keeps the peak independent of the file's size (measured: bench/batchfiles.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["tune_allocator"]

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
MMAP_THRESHOLD_BYTES = 1 << 20


def tune_allocator(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; False (and nothing changed) on another libc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
