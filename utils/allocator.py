"""Keep freed memory in the process: glibc malloc set never to mmap and never to trim.

At 480p most of the network's tensors are larger than glibc's mmap threshold (at most
32 MiB), so by default each one is mmapped, touched page by page and unmapped again,
every frame: a third of the CPU time went to page faults. Served from the heap and
never trimmed, that memory is reused from frame to frame instead; the peak resident
memory is about the same, and it stays flat on long videos (benchmarks/long_video_memory.py).
"""
import ctypes
import sys

# mallopt parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# The largest trim threshold mallopt accepts (an int): only this much free memory at the
# top of the heap is given back.
LARGEST_TRIM_THRESHOLD = 2 ** 31 - 1


def keep_freed_memory():
    """Set glibc malloc to serve every allocation from the heap and not to give it back.

    Takes effect for the allocations that follow, so call it early (importing model.network
    does). Returns whether it applied: False off Linux or with another C library.
    """
    if not sys.platform.startswith('linux'):
        return False
    process = ctypes.CDLL(None)  # the symbols already loaded, the C library's among them
    if not hasattr(process, 'gnu_get_libc_version'):  # not glibc (musl's mallopt does nothing)
        return False
    return process.mallopt(M_MMAP_MAX, 0) == 1 and process.mallopt(M_TRIM_THRESHOLD, LARGEST_TRIM_THRESHOLD) == 1
