"""One pass over a store's (run, step) slabs computing everything `reduce_store` needs per layer.

`revstats analyze` needs, per layer: the probe-mean drift (run, step, hidden), the plug-in
cosine of the drift with the reversion direction, the cross-fitted (U-statistic) alignment,
and the probe-mean aligned/witness activations. The dask graph in `pipeline._lazy_layer`
computes them with a rechunk/concatenate of the store's slabs, a float64 copy of each slab
and one graph per estimator. Here each (run, step) slab (all layers) is read once, straight
from its chunk file when the store is local (`revstats.store._chunkio.ChunkReader`: one
``readinto`` + crc32c, the same checks as zarr), while the previous slab is being reduced
(reads and compute overlap on a two-thread pool), and reduced in cache-sized row blocks with
float64 accumulation and no whole-slab float64 copy. Peak memory: the run's aligned slab, the
witness, two slabs in flight and the outputs, whatever the store's size.

The per-slab sufficient statistics, for layer l with probes i = 1..n (``a_i`` the slab's
activations, ``al_i`` the run's step-0 activations, ``wi_i`` the witness's)::

    S_a = sum_i a_i                      -> mean, drift, S_d = S_a - S_al
    sum_i <a_i - al_i, wi_i - al_i>       -> the diagonal of <D, W>^
    sum_i ||a_i - al_i||^2                -> the diagonal of ||D||^2^

which give ``cross_fit_products``'s U-statistics in closed form (see
`revstats.geometry.debiased_alignment`). Results equal the dask graph's to float64
rounding (``tests/unit/test_onepass.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray as xr

from revstats.geometry import _np as npg

_ROW_BLOCK_BYTES = 1 << 19  # float64 rows converted at a time: stays in L2


def _direct_source(ds: xr.Dataset):
    """A function (run index, step index) -> (layer, example, hidden) NumPy slab of `acts`
    read straight from the chunk files of the local store `ds` was opened from, or None when
    that does not apply (not a local store, another codec or chunk layout)."""
    path = ds.attrs.get("revstats_store")
    if not path or not os.path.isdir(str(path)):
        return None
    try:
        import zarr

        from revstats.store import verified_chunk_reader

        g: Any = zarr.open_group(str(path), mode="r")
        arr = g["acts"]
        reader = verified_chunk_reader(str(path), "acts")  # checks the digest manifest too
        if reader is None:
            return None
        if tuple(arr.metadata.dimension_names or ()) != ("run", "step", "layer", "example", "hidden"):
            return None
        store_steps = [int(s) for s in g["step"][:]]
        store_runs = [str(r) for r in g["run"][:]]
        store_layers = [str(x) for x in g["layer"][:]]
        store_examples = [str(x) for x in g["example"][:]]
        if ([str(x) for x in ds["example"].values] != store_examples
                or reader.shape[4] != ds.sizes["hidden"]):
            return None
        run_at = [store_runs.index(str(r)) for r in ds["run"].values]
        step_at = [store_steps.index(int(s)) for s in ds["step"].values]
        layer_at = [store_layers.index(str(x)) for x in ds["layer"].values]
    except Exception:  # noqa: BLE001  # anything unexpected: the caller uses the dask graph
        return None
    complete = (np.asarray(ds["complete"].values, dtype=bool) if "complete" in ds
                else np.ones((ds.sizes["run"], ds.sizes["step"]), dtype=bool))
    first = layer_at[0]
    contiguous = layer_at == list(range(first, first + len(layer_at)))

    shape = (1, 1, len(store_layers), *reader.shape[3:])

    def direct(r: int, s: int, buf: np.ndarray | None = None) -> np.ndarray:
        """The slab, read into `buf` (a C-contiguous array of `direct.buffer` (shape, dtype))
        when given, else into a new array."""
        if not complete[r, s]:  # never completely written: NaN, as open_store masks it
            return np.full((len(layer_at), *reader.shape[3:]), np.nan, dtype=reader.dtype)
        out = buf.reshape(shape) if buf is not None else np.empty(shape, dtype=reader.dtype)
        reader.read_into((slice(run_at[r], run_at[r] + 1), slice(step_at[s], step_at[s] + 1)), out)
        slab = out[0, 0]
        return slab[first : first + len(layer_at)] if contiguous else slab[layer_at]

    direct.buffer = (shape, reader.dtype)  # type: ignore[attr-defined]
    return direct


def _slab_source(ds: xr.Dataset):
    """(run index, step index) -> (layer, example, hidden) slab: direct file reads, or NumPy
    indexing of an in-memory dataset; None for other (lazy, remote) datasets."""
    direct = _direct_source(ds)
    if direct is not None:
        return direct
    acts = ds["acts"].transpose("run", "step", "layer", "example", "hidden")
    if not isinstance(acts.variable._data, np.ndarray):
        return None  # lazy and not a local store: the dask graph reads it in one compute
    values = acts.values

    def in_memory(r: int, s: int, buf: np.ndarray | None = None) -> np.ndarray:
        return values[r, s]

    return in_memory


def _row_blocks(n: int, p: int) -> list[tuple[int, int]]:
    rows = max(1, _ROW_BLOCK_BYTES // max(1, 8 * p))
    return [(a, min(a + rows, n)) for a in range(0, n, rows)]


def _diag_sums(a: np.ndarray, al: np.ndarray, wi: np.ndarray,
               al64: np.ndarray | None = None, w64: np.ndarray | None = None,
               ) -> tuple[float, float, np.ndarray]:
    """(sum_i <a_i - al_i, wi_i - al_i>, sum_i ||a_i - al_i||^2, sum_i a_i) in float64.

    `al64`, `w64` (optional): the run's float64 ``al`` and ``wi - al``, when they fit the memory
    budget; otherwise each row block converts them again."""
    n, p = a.shape
    dw = dd = 0.0
    total = np.zeros(p)
    for lo, hi in _row_blocks(n, p):
        blk = a[lo:hi].astype(np.float64)
        total += blk.sum(axis=0)
        if al64 is not None and w64 is not None:
            blk -= al64[lo:hi]
            w = w64[lo:hi]
        else:
            blk -= al[lo:hi]
            w = wi[lo:hi].astype(np.float64)
            w -= al[lo:hi]
        # einsum, not np.vdot: OpenBLAS threads its ddot, which oversubscribes the cores
        # next to this module's own threads (3x slower on a loaded 2-core machine)
        dw += float(np.einsum("ij,ij->", blk, w))
        dd += float(np.einsum("ij,ij->", blk, blk))
    return dw, dd, total


#: force the slab order ("step" or "run"; tests): None picks the one holding less memory
SLAB_ORDER: str | None = None

#: float64 copies of the aligned slabs and witness differences kept (all runs held at once)
_RUN_CACHE_BYTES = 256 * 2**20


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """OpenBLAS on one thread inside the block (restored after).

    The reduction calls BLAS from one worker per core; OpenBLAS's own threads on top of them
    oversubscribe the cores. Measured on the 2-core machine of docs/scaling.md: a 256 x 4096
    Gram product ran at 30 GFLOP/s on one BLAS thread and 5.5 GFLOP/s on two. NumPy's
    OpenBLAS is found among the loaded libraries (as threadpoolctl does); anything else is
    left alone."""
    handles = []
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()
                            and line.split()[-1].startswith("/")})
    except OSError:
        paths = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    handles.append((put, int(get())))
                    break
            else:
                continue
            break
    for put, _ in handles:
        put(1)
    try:
        yield
    finally:
        for put, before in handles:
            put(before)


def _gram(d: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """``d @ w.T`` (``d @ d.T`` when `w` is None: BLAS's symmetric rank-k update) in float64."""
    return d @ (d if w is None else w).T


_local = threading.local()


def _scratch(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A float64 work array of `shape`, one per name and thread, reused across slabs (a fresh
    8 MiB array per layer and slab is a fresh set of pages for the kernel to map and zero)."""
    bufs = _local.__dict__.setdefault("bufs", {})
    buf = bufs.get(name)
    if buf is None or buf.shape != shape:
        buf = bufs[name] = np.empty(shape)
    return buf


def _cross_scale(dd: np.ndarray, ww: np.ndarray) -> float:
    """``c = ||D|| / ||W||`` (Frobenius, from the Grams' traces), 1 when undefined."""
    nd, nw = float(np.trace(dd)), float(np.trace(ww))
    return float(np.sqrt(nd / nw)) if nd > 0 and nw > 0 and np.isfinite(nd / nw) else 1.0


def _gram_slab(a: np.ndarray, al: np.ndarray, wi: np.ndarray, al64: np.ndarray | None,
               w64: np.ndarray | None, ww: np.ndarray, kernels: Any = None) -> tuple:
    """One layer of a moving slab in the Gram form: ``(sum_i <d_i, w_i>, sum_i ||d_i||^2,
    sum_i a_i, gram_run_terms)``; the diagonal sums are the traces of the Grams.

    The cross Gram's symmetric part ``(D W^T + W D^T) / 2`` (all the interval uses) comes
    from a second rank-k update instead of a general product, half the FLOPs (134 M instead
    of 268 M multiply-adds at 256 x 4096): ``((D + cW)(D + cW)^T - D D^T - c^2 W W^T) / (2c)``
    with ``c = ||D|| / ||W||``, which keeps the cancellation at ``eps ||d_i|| ||w_j||``, a
    direct product's rounding, whatever the ratio of drift to witness difference (tested).
    `kernels` (`_onepass_numba`, or None for NumPy) fuse the element passes; same bits."""
    from revstats.geometry import _np_alignment_ci as npc

    n, p = a.shape
    d = _scratch("d", (n, p))
    if kernels is not None:
        total = np.empty(p)
        kernels.diff_colsum(a, al, d, total)
    else:
        # float32 operands: the exact difference, computed in float64 in one pass
        np.subtract(a, al if al64 is None else al64, dtype=np.float64, out=d)
        total = a.sum(axis=0, dtype=np.float64)
    dd = _gram(d)
    c = _cross_scale(dd, ww)
    s = _scratch("s", (n, p))
    if kernels is not None:
        kernels.plus_scaled_diff(d, wi, al, c, s)
    else:
        if w64 is None:
            np.subtract(wi, al, dtype=np.float64, out=s)
            s *= c
        else:
            np.multiply(w64, c, out=s)
        s += d
    bs = s @ s.T  # BLAS syrk (NumPy recognises x @ x.T)
    bs -= dd
    bs -= (c * c) * ww
    bs *= 0.5 / c
    terms = npc.gram_run_terms(np.stack([dd, bs, ww], axis=-1))
    return float(np.trace(bs)), float(np.trace(dd)), total, terms


#: element count of a reduction's Gram-form slabs above which the compiled passes are used
#: (numba's import, ~0.5 s, is then a small part of the work); REVSTATS_NUMBA=0: never
COMPILED_ABOVE = 50_000_000


def _kernels(work: int, dtype: Any = np.float32) -> Any:
    """`_onepass_numba`, or None (small work, a dtype numba has no type for (float16),
    REVSTATS_NUMBA=0, or numba missing)."""
    if (work < COMPILED_ABOVE or np.dtype(dtype) not in (np.float32, np.float64)
            or os.environ.get("REVSTATS_NUMBA", "1").strip() == "0"):
        return None
    try:
        from revstats.analysis import _onepass_numba
    except ImportError:  # pragma: no cover - numba is a dependency
        return None
    return _onepass_numba


def reduce_layers(ds: xr.Dataset, layers: Sequence[str], step0: int, moving_idx: Sequence[int],
                  *, crossed: bool = True) -> dict:
    """Per layer, the arrays `reduce_store` reads: ``{"layers": {layer: {"plug_in": (run,
    moving), "debiased": (run, moving), "drift": (run, step, hidden), "aligned": (example,
    hidden), "witness": (example, hidden)}}}`` -- the same as `pipeline._compute` of the
    `_lazy_layer` graphs, computed in one overlapped pass over the slabs.

    With `crossed` (and >= 4 probes, >= 2 runs) also the crossed-design interval's inputs:
    ``"align_terms"`` (Gram form, <= ``GRAM_MAX_PROBES`` probes: each (run, step)'s estimates
    and kernel U-variances, and per arm the U-variance of the runs' mean kernel, reduced as
    the slabs stream by, see `revstats.geometry._np_alignment_ci.gram_run_terms`) or
    ``"align_products"`` (jackknife form: 7 numbers per probe and (run, step)).

    Slab order: the Gram form's per-arm kernel sums (n x n per layer and step) are complete
    once every run of the step is seen. Step by step (all runs' step-0 slabs held) only one
    step's sums are alive; run by run, every step's are. The order holding less memory is
    taken.
    """
    sub = ds.sel(layer=list(layers))
    n_run, n_step = sub.sizes["run"], sub.sizes["step"]
    n, p = sub.sizes["example"], sub.sizes["hidden"]
    n_layer = len(layers)
    read = _slab_source(sub)
    if read is None:
        raise ValueError("reduce_layers needs a local store or an in-memory dataset (see eligible)")
    wit = sub["witness"]
    wit_runs = "run" in wit.dims
    wit = wit.transpose(*(("run",) if wit_runs else ()), "layer", "example", "hidden")
    # (run?, layer, example, hidden), small next to acts; C order for the compiled passes
    wit_np = np.ascontiguousarray(wit.values)
    arm_of = ([str(a) for a in np.asarray(sub["arm"].values)] if "arm" in sub.coords
              else ["all"] * n_run)

    sums = np.full((n_run, n_step, n_layer, p), np.nan)
    diag_dw = np.full((n_run, n_step, n_layer), np.nan)
    diag_dd = np.full((n_run, n_step, n_layer), np.nan)
    ww_diag = np.full((n_run, n_layer), np.nan)
    sw = np.full((n_run, n_layer, p), np.nan)
    al_sum: np.ndarray | None = None
    al_cnt = np.zeros((n_layer, n, p), dtype=np.int64)
    # probe inner products for the crossed-design alignment interval (revstats.geometry.alignment_ci)
    from revstats.geometry import _np_alignment_ci as npc
    from revstats.geometry.alignment_ci import GRAM_MAX_PROBES

    moving = [t for t in range(n_step) if t != step0]
    moving_pos = {t: j for j, t in enumerate(moving_idx)}
    want_ci = crossed and n >= 4 and n_run >= 2
    ci_form = "gram" if n <= GRAM_MAX_PROBES else "jackknife"
    gram = want_ci and ci_form == "gram"
    kernels = (_kernels(n_run * (n_step - 1) * n_layer * n * p,
                        np.result_type(sub["acts"].dtype, wit_np.dtype)) if gram else None)
    ci = (np.full((n_run, len(moving_pos), n_layer, n, len(npc.PRODUCTS)), np.nan)
          if want_ci and not gram else None)
    n_est = len(npc.ESTIMATORS)
    if gram:
        t_full = np.full((n_run, len(moving_pos), n_layer, n_est), np.nan)
        t_uvar = np.full((n_run, len(moving_pos), n_layer, n_est), np.nan)
        t_used = np.zeros((n_run, len(moving_pos), n_layer, n_est), dtype=bool)
        arm_names = sorted(set(arm_of))
        arm_runs = {a: [r for r in range(n_run) if arm_of[r] == a] for a in arm_names}
        t_v2 = {a: np.full((len(moving_pos), n_layer, n_est), np.nan) for a in arm_names}
        ksum: dict[tuple[str, int], np.ndarray] = {}
        left: dict[tuple[str, int], int] = {}

    slab_bytes = n_layer * n * p * np.dtype(sub["acts"].dtype).itemsize
    kernel_bytes = len(set(arm_of)) * len(moving) * n_layer * n_est * n * n * 8
    step_major = gram and (n_run * slab_bytes < kernel_bytes if SLAB_ORDER is None
                           else SLAB_ORDER == "step")
    if step_major:
        order = [(r, step0) for r in range(n_run)] + [(r, s) for s in moving for r in range(n_run)]
    else:
        order = [(r, s) for r in range(n_run) for s in [step0] + moving]
    held = n_run if step_major else 1  # runs whose aligned slab is alive at once
    cache = held * 2 * n_layer * n * p * 8 <= _RUN_CACHE_BYTES
    workers = max(1, min(n_layer, os.cpu_count() or 1))
    aligned_of: dict[int, np.ndarray] = {}
    cache_of: dict[int, list] = {}
    ww_of: dict[int, list] = {}
    # slab buffers are reused once reduced (a step-0 slab stays with its run): a fresh 16 MiB
    # array per slab made the kernel zero and map every page again (sys time 3x cat's)
    spare: list[np.ndarray] = []
    spare_lock = threading.Lock()

    buffer = getattr(read, "buffer", None)  # direct file reads fill buffers we give them

    def read_slab(r: int, s: int) -> tuple[np.ndarray, np.ndarray | None]:
        if buffer is None:
            return read(r, s), None
        with spare_lock:
            buf = spare.pop() if spare else np.empty(*buffer)
        return read(r, s, buf), buf

    def recycle(buf: np.ndarray | None) -> None:
        if buf is not None:
            with spare_lock:
                spare.append(buf)

    with _single_threaded_blas(), ThreadPoolExecutor(2) as io, ThreadPoolExecutor(workers) as cpu:
        pending = [io.submit(read_slab, *o) for o in order[:2]]  # two slabs read ahead
        for k, (r, s) in enumerate(order):
            slab, slab_buf = pending.pop(0).result()
            if k + 2 < len(order):
                pending.append(io.submit(read_slab, *order[k + 2]))  # read ahead while reducing
            wi_r = wit_np[r] if wit_runs else wit_np
            if s == step0:
                if not step_major:
                    aligned_of.clear()
                    cache_of.clear()
                    ww_of.clear()
                aligned_of[r] = aligned = slab
                seen = ~np.isnan(aligned)
                # runs' mean skips a masked slab (skipna) and, as the NumPy/dask reduction of the
                # reference graph, sums the runs in order in the store's dtype
                part = np.where(seen, aligned, 0).astype(aligned.dtype, copy=False)
                al_sum = part.copy() if al_sum is None else al_sum + part
                al_cnt += seen

                def prepare(li: int, al_r: np.ndarray = aligned, wi_l: np.ndarray = wi_r):
                    _, ww, _ = _diag_sums(wi_l[li], al_r[li], wi_l[li])
                    col = wi_l[li].sum(axis=0, dtype=np.float64) - al_r[li].sum(axis=0, dtype=np.float64)
                    w64 = None
                    if gram or cache:
                        w64 = wi_l[li].astype(np.float64)
                        w64 -= al_r[li]  # float32 operand: the same exact difference as in float64
                    w_gram = _gram(w64) if gram else None
                    if not cache:
                        return ww, col, (None, None), w_gram
                    return ww, col, (al_r[li].astype(np.float64), w64), w_gram

                prepared = list(cpu.map(prepare, range(n_layer)))
                for li, (ww, col, _, _) in enumerate(prepared):
                    ww_diag[r, li] = ww
                    sw[r, li] = col
                cache_of[r] = [c for _, _, c, _ in prepared]
                ww_of[r] = [g for _, _, _, g in prepared]
            aligned = aligned_of[r]
            j = moving_pos.get(s)

            def one(li: int, a_s: np.ndarray = slab, al_r: np.ndarray = aligned,
                    wi_l: np.ndarray = wi_r, rc: list = cache_of[r], wg: list = ww_of[r],
                    j: int | None = j):
                if gram and j is not None:
                    return _gram_slab(np.ascontiguousarray(a_s[li]), al_r[li], wi_l[li],
                                      *rc[li], wg[li], kernels)
                dw, dd, tot = _diag_sums(a_s[li], al_r[li], wi_l[li], *rc[li])
                extra = None
                if want_ci and j is not None:
                    al64, w64 = rc[li]
                    d64 = a_s[li].astype(np.float64)
                    d64 -= al_r[li] if al64 is None else al64
                    if w64 is None:
                        w64 = wi_l[li].astype(np.float64)
                        w64 -= al_r[li]
                    if gram:
                        extra = npc.gram_run_terms(np.stack([_gram(d64), _gram(d64, w64), wg[li]],
                                                            axis=-1))
                    else:
                        extra = npc.probe_products(d64, w64)
                return dw, dd, tot, extra

            for li, (dw, dd, tot, extra) in enumerate(cpu.map(one, range(n_layer))):
                sums[r, s, li] = tot
                diag_dw[r, s, li] = dw
                diag_dd[r, s, li] = dd
                if extra is None:
                    continue
                if not gram:
                    assert ci is not None and j is not None
                    ci[r, j, li] = extra
                    continue
                full, uvar, used, kern = extra
                t_full[r, j, li], t_uvar[r, j, li], t_used[r, j, li] = full, uvar, used
                key = (arm_of[r], j)
                if key not in ksum:
                    ksum[key] = np.zeros((n_layer, n_est, n, n))
                    left[key] = len(arm_runs[arm_of[r]]) * n_layer
                ksum[key][li] += kern  # the arm's runs in run order, as the batch form sums them
                left[key] -= 1
                if left[key] == 0:  # every run of the arm at this step: reduce and drop
                    runs_a = arm_runs[key[0]]
                    t_v2[key[0]][j] = npc.shared_u_variance(ksum.pop(key),
                                                            t_used[runs_a, j].sum(axis=0))
                    del left[key]
            if s != step0:  # reduced (every layer's job has returned): its buffer reads the next
                recycle(slab_buf)
            del slab

    # in place, one (run, step, layer, hidden) array alive (85 MB on the 10 GiB store; the
    # means, drift and drift sums were four of them): sums -> sum_i d_i -> drift
    mu0 = sums[:, step0] / n  # (run, layer, hidden) step-0 probe means
    s_d = sums
    s_d -= s_d[:, step0 : step0 + 1].copy()  # (run, step, layer, hidden) = sum_i d_i
    moving = list(moving_idx)
    mu_w = wit_np.mean(axis=-2, dtype=np.float64)  # (run?, layer, hidden)
    direction = npg.normalize(mu_w - mu0)  # (run, layer, hidden)
    nn1 = n * (n - 1)
    dw_hat = (np.einsum("rslh,rlh->rsl", s_d, sw) - diag_dw) / nn1
    dd_hat = (np.einsum("rslh,rslh->rsl", s_d, s_d) - diag_dd) / nn1
    ww_hat = (np.einsum("rlh,rlh->rl", sw, sw) - ww_diag) / nn1
    drift = s_d
    drift /= n  # (run, step, layer, hidden) probe-mean drift
    del sums, s_d
    with np.errstate(invalid="ignore", divide="ignore"):
        assert al_sum is not None
        aligned_mean = np.where(al_cnt > 0, al_sum / np.maximum(al_cnt, 1).astype(al_sum.dtype),
                                np.nan).astype(np.float64)
    if wit_runs:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN probe: NaN, as xarray
            witness_mean = np.nanmean(wit_np, axis=0).astype(np.float64)  # store dtype, as xarray
    else:
        witness_mean = wit_np.astype(np.float64)
    out: dict = {"layers": {}}
    # the moving steps as a slice when they are contiguous (step 0 first, as usual): a view,
    # not a (run, moving, hidden) float64 copy per layer (225 MB on a 1,200-run store)
    contiguous = bool(moving) and moving == list(range(moving[0], moving[-1] + 1))
    msel = slice(moving[0], moving[-1] + 1) if contiguous else moving
    for li, layer in enumerate(layers):
        dm = drift[:, msel, li]  # (run, moving, hidden)
        plug = npg.cosine(dm, direction[:, None, li])
        deb = npg.ratio_of_products(dw_hat[:, moving, li], dd_hat[:, moving, li],
                                    np.broadcast_to(ww_hat[:, None, li], (n_run, len(moving))))
        out["layers"][layer] = {
            "plug_in": plug,
            "debiased": deb,
            "drift": drift[:, :, li],
            "aligned": aligned_mean[li],
            "witness": witness_mean[li],
        }
        if ci is not None:
            out["layers"][layer]["align_products"] = ci[:, :, li]
            out["layers"][layer]["align_form"] = ci_form
        elif gram:
            out["layers"][layer]["align_terms"] = {
                "full": t_full[:, :, li], "uvar": t_uvar[:, :, li], "used": t_used[:, :, li],
                "v2": {a: v[:, li] for a, v in t_v2.items()}, "n_probes": n}
            out["layers"][layer]["align_form"] = "gram"
    return out


def eligible(ds: xr.Dataset) -> bool:
    """Whether `reduce_layers` handles this dataset (the store layout `analyze` reads)."""
    acts = ds.get("acts")
    wit = ds.get("witness")
    if acts is None or wit is None:
        return False
    need = {"run", "step", "layer", "example", "hidden"}
    if set(acts.dims) != need or set(wit.dims) - {"run"} != {"layer", "example", "hidden"}:
        return False
    if ds.sizes["example"] < 2:
        return False
    return _slab_source(ds) is not None

