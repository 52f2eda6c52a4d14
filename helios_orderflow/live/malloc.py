"""glibc's malloc, told to keep large blocks out of its heap (so a long-running feed's RSS stays flat).

Why: glibc serves requests of at least ``M_MMAP_THRESHOLD`` (128 KiB) with their own ``mmap`` and gives them
back on ``free``. Its *dynamic* threshold, though, rises to the size of any such block that is freed (up to
32 MiB): after the first large temporary (a socket read buffer of asyncio's 256 KiB, a numpy or Arrow
scratch array), every later one is carved from the heap instead. The live feed allocates such buffers for
every socket read and shrinks them to the bytes received, interleaved with long-lived small objects (book
levels), so the heap keeps growing with free holes it cannot return. Measured on the feed benchmark's load
(20 pairs, no engine, no recorder): RSS +1.0 MB/min with glibc's default, with malloc's free space growing
in step; with the threshold pinned, +0.4 MB/min, which is the synthetic books gaining levels (Python
objects), and malloc's free space flat.

Setting the threshold explicitly turns the dynamic adjustment off (``mallopt(3)``). It is process-wide and
only restores glibc's initial behaviour for large blocks, at the cost of one ``mmap``/``munmap`` pair per
large allocation. Elsewhere (macOS, musl) nothing is done.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h


def pin_mmap_threshold(kib: int) -> bool:
    """Pin glibc's mmap threshold at ``kib`` KiB (0: leave malloc alone). True when it is in force."""
    if kib <= 0:
        return False
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: the C library it runs on
    except OSError:
        return False
    # gnu_get_libc_version exists only in glibc; musl also has a mallopt that does nothing useful here.
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, kib * 1024))
    if ok:
        log.debug("glibc malloc: mmap threshold pinned at %d KiB", kib)
    return ok
