"""Compiled (numba) versions of the resample draws of `revstats.intervals._draws`.

Imported only when a bootstrap runs and numba can be imported (`_draws.compiled()`); every
function here gives the same indices as the NumPy reference in `_draws`, bit for bit
(tests/unit/test_bootstrap_engine.py), so installing numba changes speed, never results.

The generator is NumPy's SFC64 (Chris Doty-Humphrey's Small Fast Chaotic PRNG, as in
``numpy/random/src/sfc64/sfc64.h``): state (a, b, c, counter) of four 64-bit words, the rows
of `_draws.streams` (the layout of ``SFC64().state["state"]["state"]``, so `_draws.generator`
continues the same stream in NumPy). The kernels release the GIL, so chunks run on threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

_ONE = uint64(1)
_HALF = uint64(32)
_LOW = uint64(0xFFFFFFFF)


@njit(nogil=True, cache=True, inline="always")
def _step(st):
    """Next 64-bit word of the SFC64 state array `st` (advanced in place)."""
    a, b, c, w = st[0], st[1], st[2], st[3]
    t = a + b + w
    st[0] = b ^ (b >> uint64(11))
    st[1] = c + (c << uint64(3))
    st[2] = ((c << uint64(24)) | (c >> uint64(40))) + t
    st[3] = w + _ONE
    return t


@njit(nogil=True, cache=True)
def _spare(h, hs, nn, mask, bits, thresh):
    """Next accepted index from the spare stream `h`; `hs` = [has a pending high half, that half]."""
    while True:
        if hs[0] != 0:
            u = hs[1]
            hs[0] = uint64(0)
        else:
            t = _step(h)
            u = t & _LOW
            hs[1] = t >> _HALF
            hs[0] = _ONE
        m = (u & mask) * nn
        if (m & mask) >= thresh:
            return np.intp(m >> bits)


@njit(nogil=True, cache=True, inline="always")
def indices_one(g, h, hs, nn, mask, bits, thresh):
    """One index from the low half of the next word of g (the high half is dropped)."""
    m = (_step(g) & mask) * nn
    if (m & mask) >= thresh:
        return np.intp(m >> bits)
    return _spare(h, hs, nn, mask, bits, thresh)


@njit(nogil=True, cache=True)
def indices(g, h, hs, n, r, bits, out):
    """out[i, j] = index j of resample i, for r resamples (out shape (r, n), intp).

    g, h: SFC64 states of the main and spare streams; hs: the spare stream's pending half
    ([flag, half]); all three are advanced in place, so consecutive calls continue the chunk."""
    nn = uint64(n)
    bb = uint64(bits)
    mask = (_ONE << bb) - _ONE
    thresh = (_ONE << bb) % nn
    half = n // 2
    for i in range(r):
        for k in range(half):
            t = _step(g)
            m0 = (t & mask) * nn
            m1 = ((t >> _HALF) & mask) * nn
            out[i, 2 * k] = np.intp(m0 >> bb) if (m0 & mask) >= thresh else _spare(h, hs, nn, mask, bb, thresh)
            out[i, 2 * k + 1] = np.intp(m1 >> bb) if (m1 & mask) >= thresh else _spare(h, hs, nn, mask, bb, thresh)
        if n % 2:
            out[i, n - 1] = indices_one(g, h, hs, nn, mask, bb, thresh)


@njit(nogil=True, cache=True)
def sums2(g, h, hs, x, r, bits, s1, s2):
    """s1[i], s2[i] = sums of x and of x**2 over the indices of resample i.

    Also the kernel for the mean (s2 then unused): the second sum costs nothing measurable,
    and this loop measured faster than one without it (0.98 vs 1.05 ns per element)."""
    if bits == 32:
        _sums2(g, h, hs, x, r, 32, s1, s2)
    else:
        _sums2(g, h, hs, x, r, bits, s1, s2)


@njit(nogil=True, cache=True, inline="always")
def _sums2(g, h, hs, x, r, bits, s1, s2):
    n = x.shape[0]
    nn = uint64(n)
    bb = uint64(bits)
    mask = (_ONE << bb) - _ONE
    thresh = (_ONE << bb) % nn
    half = n // 2
    a, b, c, w = g[0], g[1], g[2], g[3]
    for i in range(r):
        p = 0.0
        q = 0.0
        pp = 0.0
        qq = 0.0
        for _ in range(half):
            t = a + b + w
            a = b ^ (b >> uint64(11))
            b = c + (c << uint64(3))
            c = ((c << uint64(24)) | (c >> uint64(40))) + t
            w += _ONE
            m0 = (t & mask) * nn
            m1 = ((t >> _HALF) & mask) * nn
            if (m0 & mask) >= thresh:
                v = x[m0 >> bb]
            else:
                v = x[_spare(h, hs, nn, mask, bb, thresh)]
            p += v
            pp += v * v
            if (m1 & mask) >= thresh:
                v = x[m1 >> bb]
            else:
                v = x[_spare(h, hs, nn, mask, bb, thresh)]
            q += v
            qq += v * v
        if n % 2:  # the last draw: the low half of one more word (inline: keeps the state in registers)
            t = a + b + w
            a = b ^ (b >> uint64(11))
            b = c + (c << uint64(3))
            c = ((c << uint64(24)) | (c >> uint64(40))) + t
            w += _ONE
            m0 = (t & mask) * nn
            v = x[m0 >> bb] if (m0 & mask) >= thresh else x[_spare(h, hs, nn, mask, bb, thresh)]
            p += v
            pp += v * v
        s1[i] = p + q
        s2[i] = pp + qq
    g[0], g[1], g[2], g[3] = a, b, c, w
