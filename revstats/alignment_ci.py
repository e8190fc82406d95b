"""Confidence intervals for the mean alignment over runs in the crossed (runs x probes) design.

The design users run: every run, the witness and the aligned model are measured on the *same*
probes; runs are independent. The reversion direction is estimated once from those probes, so
its probe noise (witness noise, the shared aligned slab) is common to every run, and a Student-t
interval over runs -- which treats ``v_rev`` as fixed -- is too narrow: with d = 4096, 24 runs,
32 probes, witness noise sd 1 and true cosine 0.6 it covers ~45% (docs/calibration.md).

:func:`alignment_ci` adds the shared probe term by a crossed jackknife: leave one probe out of
the witness, the aligned slab and every run at once, and separate the variance shared by all
runs from the run x probe interaction by the method of moments (see
:func:`revstats._np_alignment_ci.crossed_interval` for the formula and docs/geometry.md for what
the interval is conditional on). It is deterministic (no resampling, so no ``rng``) and costs
one pass over the activations (seven inner products per probe), the same as the estimates.

Two stages, both lazy on dask inputs: :func:`alignment_products` reduces the activations to
per-probe inner products (``(..., run, step, probe, product)``, small), and
:func:`alignment_ci_from_products` turns those into the intervals; :func:`alignment_ci` does both.
The stages are public so that a caller can form intervals for subsets of runs (e.g. per arm)
from one pass over a store.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from revstats import _np_alignment_ci as npc
from revstats._validation import check_confidence
from revstats._validation import check_nonempty_dims as check_dims
from revstats.geometry import (
    Dims,
    _as_dims,
    _attrs,
    _check_dataarray,
    _check_disjoint,
    _check_paired,
    _difference,
    _select_reference,
    _table_kernel,
)

__all__ = ["ESTIMATORS", "alignment_ci", "alignment_ci_from_products", "alignment_products"]

ESTIMATORS = npc.ESTIMATORS
PRODUCT_DIM = "product"
ESTIMATOR_DIM = "estimator"
METHOD = "crossed jackknife (runs x probes)"

CONDITIONAL = {
    "plugin": "covers E[plug-in cosine] at this number of probes over new probe sets and new "
              "runs (the plug-in is biased toward 0 in high dimension: not cos(D, W))",
    "debiased": "covers cos(D, W) over new probe sets and new runs, up to the cross-fitted "
                "ratio's O(1/n) bias; conditional on the probe population, the layer and step",
}


def _validate_products(acts, witness, aligned, dim, hidden_dim, step_dim):
    _check_dataarray("acts", acts)
    _check_dataarray("witness", witness)
    dims, hid = _as_dims("dim", dim), _as_dims("hidden_dim", hidden_dim)
    _check_disjoint(dim=dims, hidden_dim=hid)
    check_dims("acts", acts, dims + hid)
    check_dims("witness", witness, dims + hid)
    _check_paired("acts", acts, "witness", witness, dims + hid)
    if aligned is None:
        check_dims("acts", acts, (step_dim,))
    else:
        _check_dataarray("aligned", aligned)
        check_dims("aligned", aligned, dims + hid)
        _check_paired("acts", acts, "aligned", aligned, dims + hid)
    n = math.prod(acts.sizes[d] for d in dims)
    if n < 3:
        raise ValueError(
            f"`acts` needs at least 3 probes along {dims!r} for the leave-one-probe-out terms, "
            f"got {n}"
        )
    return dims, hid


def alignment_products(
    acts: xr.DataArray,
    witness: xr.DataArray,
    aligned: xr.DataArray | None = None,
    *,
    dim: Dims = "example",
    hidden_dim: Dims = "hidden",
    step_dim: Hashable = "step",
    reference_step: Any = 0,
) -> xr.DataArray:
    """Per-probe inner products from which :func:`alignment_ci_from_products` builds intervals.

    With ``d_i = acts(x_i) - aligned(x_i)`` and ``w_i = witness(x_i) - aligned(x_i)`` (paired by
    probe, as in :func:`revstats.geometry.debiased_alignment`), returns for each probe k the
    seven products ``<d_k, S_w>, <S_d, w_k>, <d_k, w_k>, <d_k, S_d>, <d_k, d_k>, <w_k, S_w>,
    <w_k, w_k>`` (``S`` = sum over probes) along a new ``"product"`` dim. The probe dim keeps
    its name when `dim` is one name (several are flattened into ``"probe"``). float64; lazy
    on dask inputs (one task per input chunk).

    Parameters
    ----------
    acts, witness, aligned, dim, hidden_dim, step_dim, reference_step
        As in :func:`revstats.geometry.debiased_alignment`. `witness` may have a run dim (a
        witness per run) or not (one shared witness).
    """
    dims, hid = _validate_products(acts, witness, aligned, dim, hidden_dim, step_dim)
    if aligned is None:
        aligned = _select_reference(acts, step_dim, reference_step)
    d = _difference("acts", acts, "aligned", aligned)
    w = _difference("witness", witness, "aligned", aligned)
    probe = dims[0] if len(dims) == 1 else "probe"
    n = math.prod(acts.sizes[x] for x in dims)
    out = xr.apply_ufunc(
        _table_kernel(npc.probe_products, len(dims), len(hid)),
        d,
        w,
        input_core_dims=[list(dims + hid), list(dims + hid)],
        output_core_dims=[[probe, PRODUCT_DIM]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"allow_rechunk": True,
                            "output_sizes": {probe: n, PRODUCT_DIM: len(npc.PRODUCTS)}},
        keep_attrs=False,
    )
    out = out.assign_coords({PRODUCT_DIM: list(npc.PRODUCTS)})
    out.attrs = _attrs("alignment_products", probe_dim=probe)
    return out.rename("alignment_products")


def _validate_from_products(products, run_dim, probe_dim, confidence):
    _check_dataarray("products", products)
    if PRODUCT_DIM not in products.dims or products.sizes[PRODUCT_DIM] != len(npc.PRODUCTS):
        raise ValueError(
            "`products` must come from `alignment_products` (a 'product' dim of length "
            f"{len(npc.PRODUCTS)}); got dims {dict(products.sizes)}"
        )
    probe = probe_dim or products.attrs.get("probe_dim")
    if probe is None:
        raise ValueError("`probe_dim` must name the probe dim of `products` (its attrs lost it)")
    check_dims("products", products, (run_dim, probe))
    if products.sizes[probe] < 3:
        raise ValueError(f"`products` needs at least 3 probes along {probe!r}, got "
                         f"{products.sizes[probe]}")
    if products.sizes[run_dim] < 2:
        raise ValueError(
            f"`products` needs at least 2 runs along {run_dim!r} for an interval over runs, "
            f"got {products.sizes[run_dim]}"
        )
    return probe, check_confidence(confidence)


def alignment_ci_from_products(
    products: xr.DataArray,
    *,
    run_dim: Hashable = "run",
    probe_dim: Hashable | None = None,
    confidence: float = 0.95,
) -> xr.Dataset:
    """Crossed-design intervals for the mean over `run_dim` of the plug-in and cross-fitted
    alignment, from :func:`alignment_products`.

    Returns
    -------
    xr.Dataset
        Over the dims of `products` minus run, probe and product, plus ``estimator``
        (``"plugin"``, ``"debiased"``): ``estimate`` (mean over usable runs of the per-run
        alignment), ``low``, ``high``, ``se``, ``se_runs`` (the run-only standard error of the
        Student-t interval, for comparison), ``var_runs``, ``var_probes`` (the shared probe
        term), ``df`` and ``n_runs`` (runs used). See :func:`alignment_ci`.
    """
    probe, conf = _validate_from_products(products, run_dim, probe_dim, confidence)
    outs = xr.apply_ufunc(
        lambda p: tuple(np.moveaxis(npc.crossed_interval(p, conf), -1, 0)),
        products,
        input_core_dims=[[run_dim, probe, PRODUCT_DIM]],
        output_core_dims=[[ESTIMATOR_DIM]] * len(npc.FIELDS),
        dask="parallelized",
        output_dtypes=[np.float64] * len(npc.FIELDS),
        dask_gufunc_kwargs={"allow_rechunk": True,
                            "output_sizes": {ESTIMATOR_DIM: len(npc.ESTIMATORS)}},
        keep_attrs=False,
    )
    ds = xr.Dataset(dict(zip(npc.FIELDS, outs, strict=True)))
    ds = ds.assign_coords({ESTIMATOR_DIM: list(npc.ESTIMATORS)})
    ds.attrs = _attrs(
        "alignment_ci",
        interval=METHOD,
        confidence=conf,
        conditional_plugin=CONDITIONAL["plugin"],
        conditional_debiased=CONDITIONAL["debiased"],
    )
    return ds


def alignment_ci(
    acts: xr.DataArray,
    witness: xr.DataArray,
    aligned: xr.DataArray | None = None,
    *,
    dim: Dims = "example",
    hidden_dim: Dims = "hidden",
    run_dim: Hashable = "run",
    step_dim: Hashable = "step",
    reference_step: Any = 0,
    confidence: float = 0.95,
) -> xr.Dataset:
    r"""Interval for the mean alignment over runs when probes are shared by witness, aligned
    model and every run (the crossed design).

    For each estimator -- the plug-in cosine ``cos(mean d, mean w)`` and the cross-fitted
    (debiased) cosine of :func:`revstats.geometry.debiased_alignment` -- the estimate is the
    mean over runs of the per-run values (the paper's form) and the interval is

    .. math:: \bar a \pm t_{\nu}\sqrt{s^2_{\rm runs}/R + \hat\sigma^2_{\rm probes}},
              \qquad \hat\sigma^2_{\rm probes} = \max\big(v_2 - (v_1 - v_2)/(R-1),\,0\big)

    where ``s^2_runs`` is the variance over the R runs, ``v_2`` the delete-one-probe jackknife
    variance of the run mean (the probe left out of witness, aligned slab and every run at
    once) and ``v_1`` the mean over runs of the per-run jackknife variances; ``nu`` is the
    Welch-Satterthwaite df from (R - 1, n - 1). The first term is the Student-t interval's;
    the second is the probe noise every run shares (it is what the t-interval misses).

    Parameters
    ----------
    acts : xr.DataArray
        ``(run, step, ..., example, hidden)``; select the steps you want (the reference step
        has no drift: NaN with a ``DegenerateDataWarning``).
    witness : xr.DataArray
        Witness activations on the same probes: shared ``(..., example, hidden)`` or per run.
    aligned : xr.DataArray, optional
        Aligned activations on the same probes; default the ``reference_step`` slab of `acts`.
    dim, hidden_dim : str or sequence of str
        Probe dim(s) (left out one at a time) and vector dim(s).
    run_dim : str
        The independent replicates averaged over.
    step_dim, reference_step
        Where the default `aligned` slab is.
    confidence : float

    Returns
    -------
    xr.Dataset
        See :func:`alignment_ci_from_products`; attrs record the method, the confidence and
        what each interval is conditional on.

    Notes
    -----
    *What it covers.* Probes are treated as a sample from a probe population and runs as a
    sample from a run population, independent of each other. The cross-fitted interval then
    covers the population ``cos(D, W)`` (up to the ratio's O(1/n) bias); the plug-in interval
    covers the *expected plug-in cosine at this many probes*, which is biased toward 0 in high
    dimension and is not ``cos(D, W)``. The Student-t interval over runs (``se_runs``) is
    conditional on the observed probe set and witness: it covers the mean alignment for *these*
    probes, not for the probe population. Delete-one jackknife variances are mildly
    conservative for the degenerate (second-order) part of the U-statistics (Efron & Stein
    1981). Requires at least 2 runs and 3 probes.

    References
    ----------
    Efron, B. & Stein, C. (1981). The jackknife estimate of variance. *Ann. Statist.* 9(3).
    McCullagh, P. (2000). Resampling and exchangeable arrays. *Bernoulli* 6(2) -- no bootstrap
    is exact for crossed designs; Owen, A. B. (2007). The pigeonhole bootstrap. *Ann. Appl.
    Statist.* 1(2) -- the two-way bootstrap over-counts the run x probe interaction, which the
    moment combination here removes.
    """
    _check_dataarray("acts", acts)
    check_dims("acts", acts, (run_dim,))
    _check_disjoint(dim=_as_dims("dim", dim), hidden_dim=_as_dims("hidden_dim", hidden_dim),
                    run_dim=(run_dim,))
    products = alignment_products(acts, witness, aligned, dim=dim, hidden_dim=hidden_dim,
                                  step_dim=step_dim, reference_step=reference_step)
    return alignment_ci_from_products(products, run_dim=run_dim, confidence=confidence)
