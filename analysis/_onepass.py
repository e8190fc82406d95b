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

import os
from collections.abc import Sequence
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

    def direct(r: int, s: int) -> np.ndarray:
        if not complete[r, s]:  # never completely written: NaN, as open_store masks it
            return np.full((len(layer_at), *reader.shape[3:]), np.nan, dtype=reader.dtype)
        out = np.empty((1, 1, len(store_layers), *reader.shape[3:]), dtype=reader.dtype)
        reader.read_into((slice(run_at[r], run_at[r] + 1), slice(step_at[s], step_at[s] + 1)), out)
        slab = out[0, 0]
        return slab[first : first + len(layer_at)] if contiguous else slab[layer_at]

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

    def in_memory(r: int, s: int) -> np.ndarray:
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


#: float64 copies of the run's aligned slab and witness difference kept for its steps
_RUN_CACHE_BYTES = 256 * 2**20


def reduce_layers(ds: xr.Dataset, layers: Sequence[str], step0: int, moving_idx: Sequence[int]) -> dict:
    """Per layer, the arrays `reduce_store` reads: ``{"layers": {layer: {"plug_in": (run,
    moving), "debiased": (run, moving), "drift": (run, step, hidden), "aligned": (example,
    hidden), "witness": (example, hidden)}}}`` -- the same as `pipeline._compute` of the
    `_lazy_layer` graphs, computed in one overlapped pass over the slabs."""
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
    wit_np = np.asarray(wit.values)  # (run?, layer, example, hidden), small next to acts

    sums = np.full((n_run, n_step, n_layer, p), np.nan)
    diag_dw = np.full((n_run, n_step, n_layer), np.nan)
    diag_dd = np.full((n_run, n_step, n_layer), np.nan)
    ww_diag = np.full((n_run, n_layer), np.nan)
    sw = np.full((n_run, n_layer, p), np.nan)
    al_sum: np.ndarray | None = None
    al_cnt = np.zeros((n_layer, n, p), dtype=np.int64)
    order = [(r, s) for r in range(n_run) for s in [step0] + [t for t in range(n_step) if t != step0]]
    # probe inner products for the crossed-design alignment interval (revstats.geometry.alignment_ci)
    from revstats.geometry import _np_alignment_ci as npc
    from revstats.geometry.alignment_ci import GRAM_MAX_PROBES

    want_ci = n >= 4 and n_run >= 2
    ci_form = "gram" if n <= GRAM_MAX_PROBES else "jackknife"
    ci_kernel = npc.probe_grams if ci_form == "gram" else npc.probe_products
    ci_tail = (n, n, len(npc.GRAMS)) if ci_form == "gram" else (n, len(npc.PRODUCTS))
    moving_pos = {t: j for j, t in enumerate(moving_idx)}
    ci = np.full((n_run, len(moving_pos), n_layer, *ci_tail), np.nan) if want_ci else None

    cache = 2 * n_layer * n * p * 8 <= _RUN_CACHE_BYTES
    workers = max(1, min(n_layer, os.cpu_count() or 1))
    with ThreadPoolExecutor(2) as io, ThreadPoolExecutor(workers) as cpu:
        pending = [io.submit(read, *o) for o in order[:2]]  # two slabs read ahead
        aligned = None
        run_cache: list[tuple[np.ndarray | None, np.ndarray | None]] = []
        for k, (r, s) in enumerate(order):
            slab = pending.pop(0).result()
            if k + 2 < len(order):
                pending.append(io.submit(read, *order[k + 2]))  # read ahead while reducing
            wi_r = wit_np[r] if wit_runs else wit_np
            if s == step0:
                aligned = slab
                seen = ~np.isnan(aligned)
                # runs' mean skips a masked slab (skipna) and, as the NumPy/dask reduction of the
                # reference graph, sums the runs in order in the store's dtype
                part = np.where(seen, aligned, 0).astype(aligned.dtype, copy=False)
                al_sum = part.copy() if al_sum is None else al_sum + part
                al_cnt += seen

                def prepare(li: int, al_r: np.ndarray = aligned, wi_l: np.ndarray = wi_r):
                    _, ww, _ = _diag_sums(wi_l[li], al_r[li], wi_l[li])
                    col = wi_l[li].sum(axis=0, dtype=np.float64) - al_r[li].sum(axis=0, dtype=np.float64)
                    if not cache:
                        return ww, col, (None, None)
                    al64 = al_r[li].astype(np.float64)
                    w64 = wi_l[li].astype(np.float64)
                    w64 -= al64
                    return ww, col, (al64, w64)

                prepared = list(cpu.map(prepare, range(n_layer)))
                for li, (ww, col, _) in enumerate(prepared):
                    ww_diag[r, li] = ww
                    sw[r, li] = col
                run_cache = [c for _, _, c in prepared]
            assert aligned is not None

            def one(li: int, a_s: np.ndarray = slab, al_r: np.ndarray = aligned,
                    wi_l: np.ndarray = wi_r, rc: list = run_cache):
                return _diag_sums(a_s[li], al_r[li], wi_l[li], *rc[li])

            for li, (dw, dd, tot) in enumerate(cpu.map(one, range(n_layer))):
                sums[r, s, li] = tot
                diag_dw[r, s, li] = dw
                diag_dd[r, s, li] = dd
            if ci is not None and s in moving_pos:
                def products(li: int, a_s: np.ndarray = slab, al_r: np.ndarray = aligned,
                             wi_l: np.ndarray = wi_r) -> np.ndarray:
                    al64 = al_r[li].astype(np.float64)
                    return ci_kernel(a_s[li].astype(np.float64) - al64,
                                     wi_l[li].astype(np.float64) - al64)

                for li, prod in enumerate(cpu.map(products, range(n_layer))):
                    ci[r, moving_pos[s], li] = prod

    mu = sums / n  # (run, step, layer, hidden)
    drift = mu - mu[:, step0 : step0 + 1]
    moving = list(moving_idx)
    mu_w = wit_np.mean(axis=-2, dtype=np.float64)  # (run?, layer, hidden)
    direction = npg.normalize(mu_w - mu[:, step0])  # (run, layer, hidden)
    s_d = drift * n  # (run, step, layer, hidden) = sum_i d_i
    nn1 = n * (n - 1)
    dw_hat = (np.einsum("rslh,rlh->rsl", s_d, sw) - diag_dw) / nn1
    dd_hat = (np.einsum("rslh,rslh->rsl", s_d, s_d) - diag_dd) / nn1
    ww_hat = (np.einsum("rlh,rlh->rl", sw, sw) - ww_diag) / nn1
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
    for li, layer in enumerate(layers):
        dm = drift[:, moving, li]  # (run, moving, hidden)
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

