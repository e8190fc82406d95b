"""Compiled (numba) element passes of the one-pass reduction's Gram form (`_onepass._gram_slab`).

Imported only for stores large enough to repay numba's import (`_onepass._kernels`); each
kernel gives the same bits as the NumPy expression it replaces (tests/unit/test_onepass.py):
the same operations in the same order, no fused multiply-add (numba does not contract
without ``fastmath``). They exist because on the 2-core machine of docs/scaling.md memory
bandwidth, not arithmetic, set the cost of these passes: NumPy's version reads and writes
84 MB per 256 x 4096 layer slab (five passes, 15 of its 33 ms), these 40 MB.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def diff_colsum(a, al, d, colsum):
    """``d = a - al`` in float64 (exact for float32 operands) and ``colsum = a.sum(axis=0)``
    in float64, summing rows in order as NumPy's axis-0 reduction does."""
    n, p = a.shape
    for j in range(p):
        x = np.float64(a[0, j])
        colsum[j] = x
        d[0, j] = x - np.float64(al[0, j])
    for i in range(1, n):
        for j in range(p):
            x = np.float64(a[i, j])
            colsum[j] += x
            d[i, j] = x - np.float64(al[i, j])


@njit(nogil=True, cache=True)
def plus_scaled_diff(d, wi, al, c, s):
    """``s = d + c * (wi - al)``, the difference in float64 (exact for float32 operands)."""
    n, p = d.shape
    for i in range(n):
        for j in range(p):
            s[i, j] = d[i, j] + c * (np.float64(wi[i, j]) - np.float64(al[i, j]))
