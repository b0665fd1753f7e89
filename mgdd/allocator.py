"""Keep freed CPU memory in the process while a training loop runs.

glibc serves every block above its mmap threshold (at most 32 MB) with a fresh mmap and
unmaps it on free. A ConvNet-3 training step on a batch of 256 images allocates and frees
activations of ~100 MB, so each step asks the kernel for new zero-filled pages: on 2 CPU
cores that showed up as ~230,000 page faults a second and half of the CPU time spent in
the kernel. Telling malloc to serve big blocks from its heap and never shrink it makes
later steps reuse the same pages. Numerics are unchanged; only the allocator's policy is.

Used around every CPU training loop: evaluation, adaptation, krr-pixel, meta-training.
Outside glibc (macOS, Windows, musl) this is a no-op. CUDA memory has its own caching
allocator and is not affected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from contextlib import contextmanager

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# glibc's defaults, restored on exit.
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_DEFAULT_MMAP_MAX = 65536


def glibc():
    """The C library when it is glibc on Linux (the malloc policy applies only there), else None."""
    return _load_glibc() if sys.platform.startswith("linux") else None


@functools.cache
def _load_glibc():
    # find_library runs ldconfig in a subprocess: do it once per process, not per evaluation
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.gnu_get_libc_version  # only glibc has it; musl raises AttributeError here
    except (OSError, AttributeError):
        return None
    return libc


_depth = 0  # blocks nest (an evaluation inside a training loop): only the outermost restores


@contextmanager
def keep_freed_memory():
    """Inside the block, big allocations come from malloc's heap and freed memory stays there.

    On exit from the outermost block the glibc defaults are restored and the heap is trimmed
    back, so the memory the block used returns to the system. Returns (via ``as``) whether the
    policy was applied.
    """
    global _depth
    libc = glibc()
    if libc is None:
        yield False
        return
    if _depth == 0:
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    _depth += 1
    try:
        yield True
    finally:
        _depth -= 1
        if _depth == 0:
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
            libc.malloc_trim(0)


def nesting_depth() -> int:
    """How many keep_freed_memory blocks are open now (0: glibc's defaults are in force)."""
    return _depth

