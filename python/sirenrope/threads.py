"""One thread count for torch and for the BLAS under it.

Debian's torch (the project's: /usr/bin/python3, python3-torch) does its matrix products in
OpenBLAS, whose thread pool is its own: ``torch.set_num_threads(1)`` leaves it at one thread
per core. Two training processes on a 2-core machine then run four spinning BLAS threads on
two cores, and a weight-gradient product ([64, 7168] x [7168, 64]) took 65 ms instead of
1.6 ms (measured; docs/results.md, "Run time"). ``set_threads`` sets both.
"""

from __future__ import annotations

import ctypes

import torch

# The OpenBLAS builds Debian's libblas.so.3 alternatives load (pthread, openmp, serial).
_OPENBLAS = ("libopenblas.so.0",)


def _openblas():
    for name in _OPENBLAS:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if hasattr(lib, "openblas_set_num_threads") and hasattr(lib, "openblas_get_num_threads"):
            return lib
    return None


def blas_threads() -> int | None:
    """OpenBLAS's thread count, or None where torch's BLAS is not a loaded OpenBLAS."""
    lib = _openblas()
    return int(lib.openblas_get_num_threads()) if lib is not None else None


def set_threads(n: int) -> None:
    """``n`` threads for torch's own kernels and for OpenBLAS's products (n >= 1)."""
    if n < 1:
        raise ValueError(f"threads: expected 1 or more, got {n}")
    torch.set_num_threads(n)
    lib = _openblas()
    if lib is not None:
        lib.openblas_set_num_threads(n)
