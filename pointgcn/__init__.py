"""pointgcn: deep graph convolutional networks for 3D point clouds.

Stages live in sub-packages, each depending only on those before it in this list:
io → data → graph → nn → models → engine → export → viz → nas, above the small top-level
modules (errors, tasks, seeds, config, registry); docs/architecture.md, tests/test_layers.py.
"""
import ctypes
import os
import sys

__version__ = "0.1.0"

# glibc's M_MMAP_THRESHOLD (mallopt parameter number) and the value pointgcn sets.
M_MMAP_THRESHOLD, MMAP_THRESHOLD = -3, 65536


def _return_freed_memory() -> bool:
    """Serve allocations ≥ 64 KiB by mmap, so freed activation buffers go back to the OS.

    glibc raises its mmap threshold as large blocks are freed and then keeps them in a heap
    that fragments: one step of a 112-block reversible model peaked at 721 MB RSS vs 326 MB at
    7 blocks, and 300 vs 294 MB with a fixed threshold (docs/performance.md), so the flat
    memory of reversible and equilibrium backbones only shows with it. Skipped off glibc, when
    the user set MALLOC_MMAP_THRESHOLD_ themselves, or with POINTGCN_MALLOPT=0.
    """
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ \
            or os.environ.get("POINTGCN_MALLOPT", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's libc; absent on musl and others
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


MALLOPT_SET = _return_freed_memory()
