"""glibc's mmap threshold pinned by the feed (helios_orderflow/live/malloc.py): real glibc, no mock."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from helios_orderflow.core.errors import ConfigError
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.live.malloc import pin_mmap_threshold

GLIBC = hasattr(ctypes.CDLL(None), "gnu_get_libc_version")

# A freed 1 MiB block raises glibc's dynamic threshold to 1 MiB; a later 512 KiB block then comes from the
# heap (no mmap) unless the threshold is pinned. The child counts mmap'd bytes with mallinfo2's hblkhd.
_CHILD = r"""
import ctypes, sys
from helios_orderflow.live.malloc import pin_mmap_threshold
class MI(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None); libc.mallinfo2.restype = MI; libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "pin":
    assert pin_mmap_threshold(128)
libc.free(libc.malloc(1 << 20))
before = libc.mallinfo2().hblkhd
p = libc.malloc(512 << 10)
print(libc.mallinfo2().hblkhd - before)
libc.free(p)
"""


def _mmapped_bytes_of_a_512k_block(mode: str) -> int:
    # glibc's own defaults: any MALLOC_*_ variable or GLIBC_TUNABLES set in the environment turns the dynamic
    # threshold off (a Dask LocalCluster started earlier in the same test process sets MALLOC_TRIM_THRESHOLD_
    # in its parent's environment, for the workers it spawns)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True, env=env)
    return int(out.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_after_a_large_free_glibc_keeps_large_blocks_in_the_heap_unless_pinned() -> None:
    assert _mmapped_bytes_of_a_512k_block("default") == 0  # the dynamic threshold moved: heap
    assert _mmapped_bytes_of_a_512k_block("pin") >= 512 << 10  # pinned: its own mapping, returned on free


def test_zero_leaves_malloc_alone_and_out_of_range_is_a_config_error() -> None:
    assert pin_mmap_threshold(0) is False
    assert HeliosSettings().feed.malloc_mmap_threshold_kib == 128
    with pytest.raises(ConfigError, match="malloc_mmap_threshold_kib"):
        HeliosSettings.from_dict({"feed": {"malloc_mmap_threshold_kib": -1}})
