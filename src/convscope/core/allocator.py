"""A faster CPU memory allocator setting for this process (glibc on Linux).

On a CPU, much of a CNN's time can go to memory management rather than arithmetic: glibc's
``malloc`` serves every large block (a feature map of a batch, tens of MB) with a fresh ``mmap``
and returns it to the system with ``munmap`` when the tensor is freed, so the next pass faults the
same pages in again and the kernel zeroes them. PyTorch's performance guide recommends another
allocator (jemalloc, tcmalloc) for this reason; :func:`tune_cpu_allocator` gets the same effect
from glibc itself, with ``mallopt``: large blocks come from the heap (``M_MMAP_MAX = 0``) and freed
memory is kept for reuse instead of being trimmed (``M_TRIM_THRESHOLD`` = 1 GiB).

Measured on EfficientNet-Lite0, 2 threads (``benchmarks/README.md``): a no-grad forward of 32
images in passes of 16 rows 0.9 s -> 0.34 s, saliency on 8 images 0.62x the time, Grad-CAM 0.71x.

The price is memory: what the process frees stays with it (its resident size does not go down
after a peak), and an unlucky order of allocations can fragment the heap so that the resident size
exceeds the largest amount ever in use (seen: 1.5 GB against 0.76 GB untuned, for 1.06 GB live, in
a synthetic pattern; the same 1.8 GB peak as untuned on the workloads above). The setting is
process-wide and lasts until the process ends, which is why convscope applies it only in its own
command line, a short-lived process (opt out with ``CONVSCOPE_TUNE_MALLOC=0``), and leaves it to
Python users to call. With jemalloc or tcmalloc preloaded it changes nothing (glibc's allocator is
then unused) and still returns True.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["tune_cpu_allocator"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_FREED = 1 << 30  # bytes of freed memory at the top of the heap kept for reuse

_done: bool | None = None


def tune_cpu_allocator() -> bool:
    """Make glibc's ``malloc`` reuse large blocks instead of mapping and unmapping them at every
    pass (see the module's docstring). Returns True when the setting is in effect; False where
    there is no glibc ``mallopt`` (macOS, Windows, musl), which is harmless. Idempotent."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        gnu = libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing
    except (OSError, AttributeError):
        return False
    gnu.restype = ctypes.c_char_p
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED) == 1
    return _done
