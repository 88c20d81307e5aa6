"""Keep memory flat, and cheap, while MiB-sized chunks move through several threads.

glibc's defaults give each thread its own heap (arena) and raise the mmap threshold each time
a large block is freed; chunk-sized buffers then fragment per-thread heaps that rarely shrink,
and peak RSS grows with the amount transferred. The opposite extreme, making every buffer
over 256 KiB its own mapping, keeps RSS flat but costs a page fault per 4 KiB of every buffer,
since each is mapped fresh and zeroed by the kernel: about a third of the CPU time of a large
upload or download on a small VM. So: one arena for all threads (our threads allocate few,
large blocks; Python's small objects have their own allocator), chunk-sized blocks from that
heap, reused without faults, and only blocks over 8 MiB as mappings of their own.
"""

from __future__ import annotations

import ctypes

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_SETTINGS = (
    (_M_ARENA_MAX, 1),
    # Fixed, so glibc stops moving it (a chunk is at most 4 MiB; a server pack about 8 MiB).
    (_M_MMAP_THRESHOLD, 8 * 1024 * 1024),
    # Free memory above the heap's top is returned once this much has gathered.
    (_M_TRIM_THRESHOLD, 16 * 1024 * 1024),
)


def tune_malloc() -> bool:
    """Apply the settings once per process, before threads start; False where the C library
    has no mallopt (not glibc)."""
    try:
        libc = ctypes.CDLL(None)  # the C library the interpreter runs on (no ldconfig search)
        return all(libc.mallopt(option, value) for option, value in _SETTINGS)
    except (OSError, AttributeError):
        return False
