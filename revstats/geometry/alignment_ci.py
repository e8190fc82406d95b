"""Confidence intervals for the mean alignment over runs in the crossed (runs x probes) design.

The design users run: every run, the witness and the aligned model are measured on the *same*
probes; runs are independent. The reversion direction is estimated once from those probes, so
its probe noise (witness noise, the shared aligned slab) is common to every run, and a Student-t
interval over runs -- which treats ``v_rev`` as fixed -- is too narrow: with d = 4096, 24 runs,
32 probes, witness noise sd 1 and true cosine 0.6 it covers ~45% (docs/calibration.md).

:func:`alignment_ci` adds the shared probe term by a crossed jackknife: leave one probe out of
the witness, the aligned slab and every run at once, and separate the variance shared by all
runs from the run x probe interaction by the method of moments (see
:func:`revstats.geometry._np_alignment_ci.crossed_interval` for the formula and docs/geometry.md for what
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
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import xarray as xr

from revstats._validation import check_choice, check_confidence
from revstats._validation import check_nonempty_dims as check_dims
from revstats.geometry import (
    Dims,
    _as_dims,
    _attrs,
    _check_acts_witness_aligned,
    _check_dataarray,
    _check_disjoint,
    _difference,
    _joint_pow2,
    _select_reference,
    _table_kernel,
)
from revstats.geometry import _np_alignment_ci as npc

__all__ = ["ESTIMATORS", "alignment_ci", "alignment_ci_from_products", "alignment_products"]

ESTIMATORS = npc.ESTIMATORS
PRODUCT_DIM = "product"
ESTIMATOR_DIM = "estimator"
METHODS = {
    "gram": "crossed (runs x probes): delta method, unbiased U-statistic probe variance",
    "jackknife": "crossed (runs x probes): delete-one-probe jackknife (mildly conservative)",
}

CONDITIONAL = {  # phrased to follow "conditional on"
    "plugin": "the probe and run populations and this number of probes: it covers the expected "
              "plug-in cosine at this many probes, which is biased toward 0 in high dimension "
              "(not cos(D, W))",
    "debiased": "the probe and run populations (new probes, new runs): it covers cos(D, W) up "
                "to the cross-fitted ratio's O(1/n) bias",
}


def _validate_products(acts, witness, aligned, dim, hidden_dim, step_dim):
    dims, hid, n = _check_acts_witness_aligned(acts, witness, aligned, dim, hidden_dim, step_dim)
    if n < 4:
        raise ValueError(
            f"`acts` needs at least 4 probes along {dims!r} for the probe variance terms, "
            f"got {n}"
        )
    return dims, hid


GRAM_MAX_PROBES = 512
FORMS = ("auto", "gram", "jackknife")
GRAM_DIM = "gram"


def alignment_products(
    acts: xr.DataArray,
    witness: xr.DataArray,
    aligned: xr.DataArray | None = None,
    *,
    dim: Dims = "example",
    hidden_dim: Dims = "hidden",
    step_dim: Hashable = "step",
    reference_step: Any = 0,
    form: str = "auto",
) -> xr.DataArray:
    """Probe inner products from which :func:`alignment_ci_from_products` builds intervals.

    With ``d_i = acts(x_i) - aligned(x_i)`` and ``w_i = witness(x_i) - aligned(x_i)`` (paired by
    probe, as in :func:`revstats.geometry.debiased_alignment`):

    - ``form="gram"``: the probe x probe Gram matrices ``<d_i, d_j>``, ``<d_i, w_j>``,
      ``<w_i, w_j>`` (dims ``probe, probe_2, "gram"``; n^2 x 3 floats per run and step);
    - ``form="jackknife"``: seven products per probe (``<d_k, S_w>, <S_d, w_k>, <d_k, w_k>,
      <d_k, S_d>, <d_k, d_k>, <w_k, S_w>, <w_k, w_k>``, ``S`` = sum over probes; dims
      ``probe, "product"``; 7n floats per run and step);
    - ``"auto"``: ``"gram"`` up to ``GRAM_MAX_PROBES`` (512) probes, else ``"jackknife"``.

    The probe dim keeps its name when `dim` is one name (several are flattened into
    ``"probe"``). float64; lazy on dask inputs (one task per input chunk). The products are of
    the values as given, so activations beyond ~1e154 (or below ~1e-154) overflow to inf (or
    underflow to 0) here; :func:`alignment_ci` rescales its inputs by an exact power of two
    first, and intervals from products divided by any common factor are the same.

    Parameters
    ----------
    acts, witness, aligned, dim, hidden_dim, step_dim, reference_step
        As in :func:`revstats.geometry.debiased_alignment`. `witness` may have a run dim (a
        witness per run) or not (one shared witness).
    form : {"auto", "gram", "jackknife"}
    """
    dims, hid = _validate_products(acts, witness, aligned, dim, hidden_dim, step_dim)
    check_choice("form", form, FORMS)
    if aligned is None:
        aligned = _select_reference(acts, step_dim, reference_step)
    d = _difference("acts", acts, "aligned", aligned)
    w = _difference("witness", witness, "aligned", aligned)
    probe = dims[0] if len(dims) == 1 else "probe"
    n = math.prod(acts.sizes[x] for x in dims)
    if form == "auto":
        form = "gram" if n <= GRAM_MAX_PROBES else "jackknife"
    if form == "gram":
        kernel, core = npc.probe_grams, [probe, f"{probe}_2", GRAM_DIM]
        sizes = {probe: n, f"{probe}_2": n, GRAM_DIM: len(npc.GRAMS)}
        labels = {GRAM_DIM: list(npc.GRAMS)}
    else:
        kernel, core = npc.probe_products, [probe, PRODUCT_DIM]
        sizes = {probe: n, PRODUCT_DIM: len(npc.PRODUCTS)}
        labels = {PRODUCT_DIM: list(npc.PRODUCTS)}
    out = xr.apply_ufunc(
        _table_kernel(kernel, len(dims), len(hid)),
        d,
        w,
        input_core_dims=[list(dims + hid), list(dims + hid)],
        output_core_dims=[core],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"allow_rechunk": True, "output_sizes": sizes},
        keep_attrs=False,
    )
    out = out.assign_coords(labels)
    out.attrs = _attrs("alignment_products", probe_dim=probe, form=form)
    return out.rename("alignment_products")


def _validate_from_products(products, run_dim, probe_dim, confidence):
    _check_dataarray("products", products)
    if GRAM_DIM in products.dims and products.sizes[GRAM_DIM] == len(npc.GRAMS):
        form = "gram"
    elif PRODUCT_DIM in products.dims and products.sizes[PRODUCT_DIM] == len(npc.PRODUCTS):
        form = "jackknife"
    else:
        raise ValueError(
            "`products` must come from `alignment_products` (a 'gram' dim of length "
            f"{len(npc.GRAMS)} or a 'product' dim of length {len(npc.PRODUCTS)}); got dims "
            f"{dict(products.sizes)}"
        )
    probe = probe_dim or products.attrs.get("probe_dim")
    if probe is None:
        raise ValueError("`probe_dim` must name the probe dim of `products` (its attrs lost it)")
    check_dims("products", products, (run_dim, probe))
    minimum = 4 if form == "gram" else 3
    if products.sizes[probe] < minimum:
        raise ValueError(f"`products` needs at least {minimum} probes along {probe!r}, got "
                         f"{products.sizes[probe]}")
    if products.sizes[run_dim] < 2:
        raise ValueError(
            f"`products` needs at least 2 runs along {run_dim!r} for an interval over runs, "
            f"got {products.sizes[run_dim]}"
        )
    return probe, form, check_confidence(confidence)


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
    probe, form, conf = _validate_from_products(products, run_dim, probe_dim, confidence)
    func: Callable[[np.ndarray, float], np.ndarray]
    if form == "gram":
        func, core = npc.crossed_interval_gram, [run_dim, probe, f"{probe}_2", GRAM_DIM]
    else:
        func, core = npc.crossed_interval, [run_dim, probe, PRODUCT_DIM]
    outs = xr.apply_ufunc(
        lambda p: tuple(np.moveaxis(func(p, conf), -1, 0)),
        products,
        input_core_dims=[core],
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
        interval=METHODS[form],
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
    form: str = "auto",
) -> xr.Dataset:
    r"""Interval for the mean alignment over runs when probes are shared by witness, aligned
    model and every run (the crossed design).

    For each estimator -- the plug-in cosine ``cos(mean d, mean w)`` and the cross-fitted
    (debiased) cosine of :func:`revstats.geometry.debiased_alignment` -- the estimate is the
    mean over runs of the per-run values (the paper's form) and the interval is

    .. math:: \bar a \pm t_{\nu}\sqrt{s^2_{\rm runs}/R + \hat\sigma^2_{\rm probes}},
              \qquad \hat\sigma^2_{\rm probes} = \max\big(v_2 - (v_1 - v_2)/(R-1),\,0\big)

    ``s^2_runs`` is the sample variance of the R per-run estimates: the Student-t interval's
    term. ``sigma^2_probes`` is the variance every run shares because all see the same probes
    (the witness's and the aligned slab's probe noise), which the t-interval misses: ``v_2``
    is the probe variance of the run mean, ``v_1`` the mean over runs of the per-run probe
    variances; ``v_2`` holds the shared part plus 1/R of the run x probe interaction, ``v_1``
    the shared part plus all of it, so the combination removes the interaction (already in
    ``s^2_runs``). ``nu`` is the Welch-Satterthwaite df from (R - 1, n - 1); the interval is
    clipped to [-1, 1].

    The probe variances are of the delta-method linearisation of each run's estimate, a
    U-statistic over probes: with ``form="gram"`` they are its exactly unbiased Hoeffding
    variance (from probe x probe Gram matrices); with ``form="jackknife"`` (used above 512
    probes by ``"auto"``, memory O(n) instead of O(n^2)) the delete-one-probe jackknife, which
    over-counts the degenerate second-order part (Efron & Stein 1981) and so is conservative
    when probe noise is large relative to the signal.

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
        Probe dim(s) and vector dim(s).
    run_dim : str
        The independent replicates averaged over.
    step_dim, reference_step
        Where the default `aligned` slab is.
    confidence : float
    form : {"auto", "gram", "jackknife"}
        See :func:`alignment_products`.

    Returns
    -------
    xr.Dataset
        See :func:`alignment_ci_from_products`; attrs record the method, the confidence and
        what each interval is conditional on. Deterministic (no resampling, no ``rng``).

    Notes
    -----
    *What it covers.* Probes are a sample from a probe population and runs a sample from a
    run population, independent of each other. The cross-fitted interval then covers the
    population ``cos(D, W)`` (up to the ratio's O(1/n) bias); the plug-in interval covers the
    *expected plug-in cosine at this many probes*, which is biased toward 0 in high dimension
    and is not ``cos(D, W)``. The Student-t interval over runs (``se_runs``) is conditional on
    the observed probes and witness: it covers the mean alignment for *these* probes only.
    Normal theory: when the relative standard error is large (direction barely above the
    probe noise) the ratio is skewed and coverage falls below nominal (docs/calibration.md).
    Requires at least 2 runs and 4 probes.

    References
    ----------
    Hoeffding, W. (1948). A class of statistics with asymptotically normal distribution.
    *Ann. Math. Statist.* 19(3). Efron, B. & Stein, C. (1981). The jackknife estimate of
    variance. *Ann. Statist.* 9(3). McCullagh, P. (2000). Resampling and exchangeable arrays.
    *Bernoulli* 6(2), and Owen, A. B. (2007). The pigeonhole bootstrap. *Ann. Appl. Statist.*
    1(2): no bootstrap is exact for crossed designs and the two-way (pigeonhole) bootstrap
    over-counts the run x probe interaction, which the moment combination here removes.
    """
    _check_dataarray("acts", acts)
    check_dims("acts", acts, (run_dim,))
    _check_disjoint(dim=_as_dims("dim", dim), hidden_dim=_as_dims("hidden_dim", hidden_dim),
                    run_dim=(run_dim,))
    # the intervals are scale-free: acts, witness and aligned divided by one power of two near
    # their largest |value| (exact, lazy on dask), so the probe products neither overflow
    # (values beyond ~1e154) nor underflow to 0 (below ~1e-154)
    scale = _joint_pow2(acts, witness, aligned)
    acts, witness = acts / scale, witness / scale
    aligned = None if aligned is None else aligned / scale
    products = alignment_products(acts, witness, aligned, dim=dim, hidden_dim=hidden_dim,
                                  step_dim=step_dim, reference_step=reference_step, form=form)
    return alignment_ci_from_products(products, run_dim=run_dim, confidence=confidence)

