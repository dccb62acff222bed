"""glibc malloc settings for the training commands: freed tensor memory stays in the process for the next step.

A CPU training step allocates and frees the same large tensors every step (activations of a few MB, Adam's
temporaries the size of fc6's 25 MB weight). With glibc's defaults those blocks are mapped from the kernel and
unmapped again when freed, or trimmed off the heap's top, so every step touches fresh pages: about 12,600 page
faults (50 MB zeroed by the kernel) in a training step of the embedded FCN-8s: a step costs 1.08x, a fit of
``configs/fcn8s_rendered.yaml`` 1.14x the CPU time without them (``benchmarks/segmentation_allocator.py``,
benchmarks/RESULTS.md). Serving blocks up to 32 MiB from the heap and trimming it only beyond 2 GiB makes the
pages stay mapped and get reused: the same arithmetic, bit for bit, without the faults. The price is that the process keeps its peak heap size until it exits, as PyTorch's own caching
allocators do on the GPU.

Only glibc has ``mallopt`` with these parameters; elsewhere, or where the user has chosen malloc settings through
the environment, nothing is changed.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

# mallopt parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Above the embedded step's largest block (fc6's 25 MB weight and Adam's temporaries of its size); glibc 2.36 takes
# more, older ones refuse more than HEAP_MAX_SIZE / 2, 32 MiB on 64-bit. Larger blocks are still mapped.
MMAP_THRESHOLD = 32 * 1024 * 1024
# Trimming the heap's top gives the pages back, and the next step faults them in again: trim only beyond the
# largest value mallopt takes (an int, 2 GiB), more than a step frees at once.
TRIM_THRESHOLD = 2**31 - 1
# Set, these mean the user has chosen glibc's malloc settings: they are kept.
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def _user_chose_malloc_settings() -> bool:
    return any(name in os.environ for name in _USER_SETTINGS) or "glibc.malloc." in os.environ.get(
        "GLIBC_TUNABLES", "")


def keep_freed_memory() -> bool:
    """Keep freed heap memory for reuse instead of giving it back to the kernel (module docstring).

    Returns whether the settings were applied: False without glibc's ``mallopt`` (macOS, musl reports failure),
    or when ``MALLOC_*_`` / ``GLIBC_TUNABLES`` malloc settings are in the environment.
    """
    if _user_chose_malloc_settings():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: the C library it runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
