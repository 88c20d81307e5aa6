"""Keep the client's memory flat while it moves MiB-sized chunks through several threads.

glibc raises its mmap threshold each time a large block is freed, after which chunk-sized
buffers come from per-thread heaps that fragment and rarely shrink: peak RSS then grows with
the amount transferred. Pinning the threshold (mallopt(3), M_MMAP_THRESHOLD) makes every
buffer above 256 KiB its own mapping, returned to the OS when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3
_THRESHOLD = 256 * 1024


def pin_mmap_threshold() -> bool:
    """Apply the setting once per process; False where the C library has no mallopt."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD))
    except (OSError, AttributeError):
        return False
