"""Resample indices: exact uniform draws from SFC64 streams, in NumPy and (with numba) compiled.

The draw scheme, identical in both implementations (bit for bit, tested):

* A chunk of r resamples of n observations has a *main* stream G and a *spare* stream H, both
  SFC64 (`streams`: states derived from the caller's generator).
* Resample i of the chunk reads the 64-bit words ``i*w .. i*w + w - 1`` of G, w = ceil(n / 2),
  each split into two 32-bit halves, low half first; draw j uses half j (for odd n the last
  high half is unused). Every resample thus owns a fixed block of the stream, whatever happens
  in the others, which is what lets NumPy compute whole blocks at once.
* A half u gives an index by Lemire's multiply-shift: m = u * n (64 bits), index = m >> 32,
  accepted when ``m mod 2**32 >= 2**32 mod n``. Each index value then has exactly
  floor(2**32 / n) accepted u out of 2**32, so accepted indices are exactly uniform on [0, n)
  (Lemire D (2019), Fast random integer generation in an interval, ACM TOMACS 29(1):3).
* A rejected draw (probability (2**32 mod n) / 2**32 < n / 2**32, about 1 in 43,000 at
  n = 100,000) is replaced, in the order of the draws (resample by resample, j ascending), by
  the next accepted draw of H's stream of halves (same rule).

So every resample is n independent uniform indices, as in ``scipy.stats.bootstrap``. The bit
width ``bits`` (32) is a parameter only so that the tests can exercise the rejection path at a
small width, where it is frequent.

With numba installed (a dependency; imported on first use, not by ``import revstats``) the
draws, and for the mean/var/std the sums over the drawn data, are the compiled kernels of
`_draws_numba`: about 1 ns per element and thread on this 2-core machine, against 3-5 ns for
the NumPy path. A process loads numba (~0.5 s, once) only when its draws are worth it
(`kernels_for`). ``REVSTATS_NUMBA=0`` in the environment selects the NumPy path.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

BITS = 32
_SUB_BLOCK = 1 << 16  # draws per NumPy sub-block: draws and products stay in L2

_compiled_module: Any = None
_compiled_tried = False


def compiled():
    """The numba kernels module, or None (numba missing, or REVSTATS_NUMBA=0)."""
    global _compiled_module, _compiled_tried
    if not _compiled_tried:
        _compiled_tried = True
        if os.environ.get("REVSTATS_NUMBA", "1").strip() != "0":
            try:
                import revstats.intervals._draws_numba as kernels
            except ImportError:  # pragma: no cover - numba is a dependency
                kernels = None  # type: ignore[assignment]
            _compiled_module = kernels
    return _compiled_module


_numpy_work = 0
# NumPy draws a process does before loading numba (~0.5 s once: import and cached kernels);
# 5e7 draws take ~0.25 s in NumPy. A larger job loads numba at once.
WORTH_COMPILING = 50_000_000


def kernels_for(work: int):
    """The kernels for a job of `work` draws: compiled, or None for the NumPy path. Both give
    the same draws, so the choice is one of speed only: small jobs in a process that has not
    loaded numba stay in NumPy until their draws add up to `WORTH_COMPILING`."""
    global _numpy_work
    if _compiled_tried:
        return _compiled_module
    if _numpy_work + work < WORTH_COMPILING:
        _numpy_work += work
        return None
    return compiled()


def check_size(n: int, bits: int = BITS) -> None:
    if not 1 <= n <= (1 << bits) - 1:
        raise ValueError(f"cannot resample {n} observations: at most 2**{bits} - 1 per series")


def streams(rng: np.random.Generator, count: int) -> np.ndarray:
    """SFC64 states, shape (count, 4), of `count` independent streams derived from `rng`.

    As NumPy seeds SFC64 from a SeedSequence (``sfc64_set_seed``: three words of
    ``generate_state``, counter 1, twelve warm-up rounds), but for all streams in one call:
    64 streams cost ~0.1 ms where 64 spawned Generators cost ~2 ms."""
    root = np.random.SeedSequence(rng.integers(0, 2**63, size=4, dtype=np.uint64).tolist())
    words = root.generate_state(4 * count, np.uint64).reshape(count, 4)
    a, b, c = words[:, 0].copy(), words[:, 1].copy(), words[:, 2].copy()
    w = np.ones(count, dtype=np.uint64)
    for _ in range(12):
        t = a + b + w
        a = b ^ (b >> np.uint64(11))
        b = c + (c << np.uint64(3))
        c = ((c << np.uint64(24)) | (c >> np.uint64(40))) + t
        w = w + np.uint64(1)
    return np.stack([a, b, c, w], axis=1)


def generator(state: np.ndarray) -> np.random.Generator:
    """A NumPy Generator (SFC64) positioned at the stream state `state` (a, b, c, counter)."""
    bg = np.random.SFC64()
    st = bg.state
    st["state"]["state"] = np.asarray(state, dtype=np.uint64).copy()
    st["has_uint32"], st["uinteger"] = 0, 0
    bg.state = st
    return np.random.Generator(bg)


class _Spare:
    """The spare stream H: accepted indices in stream order, halves buffered across calls."""

    def __init__(self, h: np.random.Generator, n: int, bits: int):
        self.h, self.n, self.bits = h, np.uint64(n), np.uint64(bits)
        self.mask = np.uint64((1 << bits) - 1)
        self.thresh = np.uint64((1 << bits) % n)
        self.buf = np.empty(0, dtype=np.uint64)  # unconsumed halves, in order

    def take(self, k: int) -> np.ndarray:
        got = []
        while k > 0:
            if self.buf.size == 0:
                words = self.h.bit_generator.random_raw(max(16, k))
                self.buf = words.astype("<u8", copy=False).view("<u4").astype(np.uint64)
            m = (self.buf & self.mask) * self.n
            ok = np.flatnonzero((m & self.mask) >= self.thresh)
            if ok.size >= k:
                got.append(m[ok[:k]] >> self.bits)
                self.buf = self.buf[ok[k - 1] + 1 :]
                k = 0
            else:
                got.append(m[ok] >> self.bits)
                k -= ok.size
                self.buf = self.buf[:0]
        return np.concatenate(got).astype(np.intp) if got else np.empty(0, dtype=np.intp)


def _sub_rows(n: int, rows: int | None) -> int:
    return max(1, _SUB_BLOCK // n if rows is None else rows)


def numpy_index_blocks(g: np.ndarray, h: np.ndarray, n: int, r: int, bits: int = BITS, rows: int | None = None):
    """NumPy reference: (a, b, idx) with idx of shape (b - a, n), intp, for resamples a..b-1,
    in blocks of `rows` resamples (default: about 2**16 draws). g, h: stream states."""
    check_size(n, bits)
    gen, hgen = generator(g), generator(h)
    w = (n + 1) // 2
    nn, bb = np.uint64(n), np.uint64(bits)
    mask = np.uint64((1 << bits) - 1)
    thresh = np.uint64((1 << bits) % n)
    spare = _Spare(hgen, n, bits)
    sub = _sub_rows(n, rows)
    for a in range(0, r, sub):
        b = min(a + sub, r)
        raw = gen.bit_generator.random_raw((b - a) * w).astype("<u8", copy=False)
        u = raw.view("<u4").reshape(b - a, 2 * w)[:, :n].astype(np.uint64)
        if bits < 32:
            u &= mask
        u *= nn
        low = u & mask if bits < 32 else u.astype("<u4")
        u >>= bb
        idx = u.astype(np.intp)
        if thresh:
            bad = np.flatnonzero(low.reshape(-1) < thresh)
            if bad.size:
                idx.reshape(-1)[bad] = spare.take(bad.size)
        yield a, b, idx


_DEFAULT = object()


def index_blocks(
    g: np.ndarray, h: np.ndarray, n: int, r: int, bits: int = BITS, rows: int | None = None, kernels=_DEFAULT
):
    """The draws of r resamples in blocks (a, b, idx (b - a, n)) of `rows` resamples; compiled
    when numba is there (or `kernels`, from `kernels_for`). The blocking never changes the draws."""
    k = compiled() if kernels is _DEFAULT else kernels
    if k is None:
        yield from numpy_index_blocks(g, h, n, r, bits, rows)
        return
    check_size(n, bits)
    gs, hs, pend = g.copy(), h.copy(), np.zeros(2, dtype=np.uint64)
    sub = _sub_rows(n, rows)
    for a in range(0, r, sub):
        b = min(a + sub, r)
        idx = np.empty((b - a, n), dtype=np.intp)
        k.indices(gs, hs, pend, n, b - a, bits, idx)
        yield a, b, idx


def moment_sums(
    g: np.ndarray, h: np.ndarray, x: np.ndarray, r: int, squares: bool, bits: int = BITS, kernels=_DEFAULT
) -> tuple[np.ndarray, np.ndarray | None]:
    """Sums of x (and of x**2) over each of r resamples of the 1-D float64 `x`, drawn from the
    stream states g (main) and h (spare), which are not modified: the same states give the
    same resamples for another series (the series of a batch share their indices, as in scipy)."""
    n = x.shape[0]
    check_size(n, bits)
    k = compiled() if kernels is _DEFAULT else kernels
    s1 = np.empty(r)
    s2 = np.empty(r) if squares else None
    if k is not None:
        x = np.ascontiguousarray(x, dtype=np.float64)
        pend = np.zeros(2, dtype=np.uint64)
        k.sums2(g.copy(), h.copy(), pend, x, r, bits, s1, np.empty(r) if s2 is None else s2)
        return s1, s2
    for a, b, idx in numpy_index_blocks(g, h, n, r, bits):
        v = np.take(x, idx)
        s1[a:b] = v.sum(axis=1)
        if s2 is not None:
            np.multiply(v, v, out=v)
            s2[a:b] = v.sum(axis=1)
    return s1, s2
