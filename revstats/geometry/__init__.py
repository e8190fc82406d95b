"""Reversion geometry: direction, drift, alignment, stability and the cross-fitted alignment.

Definitions (DESIGN.md §4), per layer, with ``mu(theta)`` the mean over probes of the
activations ``h(x; theta)``:

- reversion direction ``v_rev = normalize(mu(witness) - mu(aligned))``
- drift ``Delta_t = mu(theta_t) - mu(aligned)``
- alignment ``a_t = cos(Delta_t, v_rev)``; positive means moving toward the witness.

Every public function takes and returns xarray objects; the arithmetic lives in NumPy kernels
on ``axis=-1`` (:mod:`revstats.geometry._np`) wrapped with ``xr.apply_ufunc(...,
dask="parallelized")``, so NumPy- and dask-backed inputs take the same path and dask inputs
stay lazy until the caller computes. ``dim`` arguments accept one name or a sequence of names
(stacked into one axis). Zero-length vectors have no direction: results that need one are NaN
and a :class:`~revstats.errors.DegenerateDataWarning` is emitted when the kernel runs (at
compute time for dask inputs). See ``docs/geometry.md``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from revstats._validation import (
    RNGLike,
    check_confidence,
    check_numeric_dtype,
    normalize_rng,
)
from revstats._validation import check_nonempty_dims as check_dims
from revstats._version import __version__
from revstats.errors import DegenerateDataWarning
from revstats.geometry import _np as npg

__all__ = [
    "alignment",
    "debiased_alignment",
    "direction_stability",
    "drift",
    "per_probe_alignment",
    "project_out",
    "reversion_direction",
]

Dims = Hashable | Sequence[Hashable]


# --------------------------------------------------------------------------- helpers


def _as_dims(name: str, dim: Any) -> tuple[Hashable, ...]:
    dims = (dim,) if isinstance(dim, str) else tuple(dim)
    if not dims:
        raise ValueError(f"`{name}` must name at least one dimension, got an empty sequence")
    if len(set(dims)) != len(dims):
        raise ValueError(f"`{name}` lists a dimension twice: {dims!r}; name each once")
    return dims


def _check_dataarray(name: str, obj: Any) -> None:
    if not isinstance(obj, xr.DataArray):
        raise TypeError(
            f"`{name}` must be an xarray.DataArray, got {type(obj).__name__}; wrap arrays with "
            "xr.DataArray(values, dims=...)"
        )
    check_numeric_dtype(name, obj)


def _check_disjoint(**named: tuple[Hashable, ...]) -> None:
    seen: dict[Hashable, str] = {}
    for arg, dims in named.items():
        for d in dims:
            if d in seen:
                raise ValueError(
                    f"`{arg}` and `{seen[d]}` both name dimension {d!r}; they must be different"
                )
            seen[d] = arg


def _check_paired(a_name: str, a: xr.DataArray, b_name: str, b: xr.DataArray, dims: tuple) -> None:
    """The same probes (and hidden units) in the same order on both inputs."""
    for d in dims:
        if a.sizes[d] != b.sizes[d]:
            raise ValueError(
                f"`{a_name}` and `{b_name}` must hold the same {d!r} entries, but their sizes are "
                f"{a.sizes[d]} and {b.sizes[d]}: select the common probes first"
            )
        if d in a.indexes and d in b.indexes and not a.indexes[d].equals(b.indexes[d]):
            raise ValueError(
                f"`{a_name}` and `{b_name}` must hold the same {d!r} coordinates in the same "
                f"order: reindex one with `.sel({d}=other.{d})`"
            )


def _difference(a_name: str, a: xr.DataArray, b_name: str, b: xr.DataArray) -> xr.DataArray:
    """``a - b`` in float64 with exact coordinate alignment (never a silent inner join)."""
    try:
        with xr.set_options(arithmetic_join="exact"):
            return a.astype(np.float64) - b.astype(np.float64)
    except ValueError as err:
        raise ValueError(
            f"`{a_name}` and `{b_name}` must have identical coordinates on the dimensions they "
            f"share (layers, runs, hidden units...): select matching entries first ({err})"
        ) from None


def _probe_mean(x: xr.DataArray, dims: tuple[Hashable, ...]) -> xr.DataArray:
    """Mean over probes, accumulated in float64 without a float64 copy of the input.

    ``skipna=False``: a NaN activation (e.g. a slab a store masks as incomplete) makes the mean
    NaN rather than silently averaging fewer probes; and it skips the NaN-replacing copy that
    made this reduction ~4x slower than reading the data (docs/scaling.md).
    """
    return x.mean(dims, dtype=np.float64, skipna=False)


def _select_reference(acts: xr.DataArray, step_dim: Hashable, reference_step: Any) -> xr.DataArray:
    if step_dim in acts.indexes:
        index = acts.indexes[step_dim]
        if reference_step not in index:
            shown = ", ".join(map(str, list(index[:10]))) + (" ..." if len(index) > 10 else "")
            raise ValueError(
                f"`reference_step` {reference_step!r} is not a {step_dim!r} coordinate of `acts` "
                f"(it has {shown}); pass one of those or give `aligned` explicitly"
            )
        ref = acts.sel({step_dim: reference_step})
    else:
        if not isinstance(reference_step, (int, np.integer)) or not (
            -acts.sizes[step_dim] <= reference_step < acts.sizes[step_dim]
        ):
            raise ValueError(
                f"`reference_step` must be a position in 0..{acts.sizes[step_dim] - 1} because "
                f"`acts` has no {step_dim!r} coordinate; got {reference_step!r}"
            )
        ref = acts.isel({step_dim: reference_step})
    return ref.drop_vars([step_dim], errors="ignore")


def _apply(
    func: Callable[..., Any],
    *args: xr.DataArray,
    core: Sequence[tuple[Hashable, ...]],
    out_core: Sequence[tuple[Hashable, ...]] = ((),),
    kwargs: dict[str, Any] | None = None,
) -> Any:
    """apply_ufunc with the one set of options every wrapper uses."""
    n_out = len(out_core)
    return xr.apply_ufunc(
        func,
        *args,
        input_core_dims=[list(c) for c in core],
        output_core_dims=[list(c) for c in out_core],
        kwargs=kwargs or {},
        dask="parallelized",
        output_dtypes=[np.float64] * n_out,
        dask_gufunc_kwargs={"allow_rechunk": True},
        keep_attrs=False,
    )


def _vector_kernel(func: Callable[..., np.ndarray], k: int, keep_shape: bool) -> Callable:
    """Adapt a kernel on axis=-1 to inputs whose last `k` axes form the vector."""

    def kernel(*arrays: np.ndarray) -> np.ndarray:
        shape = arrays[0].shape[arrays[0].ndim - k :]
        out = func(*(npg.flatten_last(a, k) for a in arrays))
        return npg.unflatten_last(out, shape) if keep_shape else out

    return kernel


def _table_kernel(func: Callable[..., Any], n_ex: int, n_hid: int) -> Callable:
    """Adapt a kernel on per-probe tables ``(..., n, p)`` to ``n_ex`` probe and ``n_hid`` hidden axes."""

    def kernel(*arrays: np.ndarray, **kw: Any) -> Any:
        tables = []
        for a in arrays:
            lead = a.shape[: a.ndim - n_ex - n_hid]
            n = math.prod(a.shape[a.ndim - n_ex - n_hid : a.ndim - n_hid])
            tables.append(a.reshape(*lead, n, -1))
        return func(*tables, **kw)

    return kernel


def _attrs(method: str, **settings: Any) -> dict[str, Any]:
    attrs = {"method": method, "revstats_version": __version__}
    attrs.update({k: v for k, v in settings.items() if v is not None})
    return attrs


def _seed_attr(rng: RNGLike) -> int | str:
    return int(rng) if isinstance(rng, (int, np.integer)) else "unrecorded (Generator or None)"


# --------------------------------------------------------------------------- direction, drift


def _validate_reversion_direction(witness: Any, aligned: Any, dim: Any, hidden_dim: Any):
    _check_dataarray("witness", witness)
    _check_dataarray("aligned", aligned)
    dims, hid = _as_dims("dim", dim), _as_dims("hidden_dim", hidden_dim)
    _check_disjoint(dim=dims, hidden_dim=hid)
    for name, obj in (("witness", witness), ("aligned", aligned)):
        check_dims(name, obj, dims)
        check_dims(name, obj, hid)
    _check_paired("witness", witness, "aligned", aligned, hid)
    return dims, hid


def reversion_direction(
    witness: xr.DataArray,
    aligned: xr.DataArray,
    *,
    dim: Dims = "example",
    hidden_dim: Dims = "hidden",
) -> xr.DataArray:
    """Unit reversion direction ``v_rev = normalize(mean_dim(witness) - mean_dim(aligned))``.

    Parameters
    ----------
    witness, aligned : xr.DataArray
        Activations of the history reference (pre-alignment model) and of the aligned model,
        e.g. ``(layer, example, hidden)`` and ``(run, layer, example, hidden)``; other dims
        broadcast. The probe sets need not be the same (the means are taken separately).
    dim : str or sequence of str
        Probe dimension(s) averaged over.
    hidden_dim : str or sequence of str
        Dimension(s) spanning the vector space; the result has unit Euclidean norm over them.

    Returns
    -------
    xr.DataArray
        Unit vectors (float64), dims of the broadcast inputs minus `dim`. Where the two means
        coincide the direction is undefined: NaN, with a ``DegenerateDataWarning``.

    Notes
    -----
    Sign convention: ``v_rev`` points from the aligned model toward the witness, so a positive
    :func:`alignment` means drifting toward the witness. The norm of the unnormalised
    difference carries probe-noise variance; see :func:`debiased_alignment`.
    """
    dims, hid = _validate_reversion_direction(witness, aligned, dim, hidden_dim)
    diff = _difference(
        "witness",
        _probe_mean(witness, dims),
        "aligned",
        _probe_mean(aligned, dims),
    )
    out = _apply(_vector_kernel(npg.normalize, len(hid), True), diff, core=[hid], out_core=[hid])
    out.attrs = _attrs("reversion_direction")
    return out.rename("reversion_direction")


def _validate_drift(acts: Any, aligned: Any, dim: Any, step_dim: Any):
    _check_dataarray("acts", acts)
    dims = _as_dims("dim", dim)
    check_dims("acts", acts, dims)
    if aligned is None:
        if not isinstance(step_dim, Hashable) or isinstance(step_dim, tuple):
            raise TypeError(f"`step_dim` must be one dimension name, got {step_dim!r}")
        check_dims("acts", acts, (step_dim,))
        _check_disjoint(dim=dims, step_dim=(step_dim,))
    else:
        _check_dataarray("aligned", aligned)
        check_dims("aligned", aligned, dims)
    return dims


def drift(
    acts: xr.DataArray,
    aligned: xr.DataArray | None = None,
    *,
    dim: Dims = "example",
    step_dim: Hashable = "step",
    reference_step: Any = 0,
) -> xr.DataArray:
    """Mean drift ``Delta_t = mean_dim(acts_t) - mean_dim(aligned)``.

    Parameters
    ----------
    acts : xr.DataArray
        Activations along fine-tuning, e.g. ``(run, step, layer, example, hidden)``.
    aligned : xr.DataArray, optional
        Activations of the aligned starting point. Default: the ``reference_step`` slab of
        `acts` along `step_dim` (step 0 is the aligned model in the store, DESIGN §3).
    dim : str or sequence of str
        Probe dimension(s) averaged over.
    step_dim, reference_step
        Where to find the default `aligned` slab (a coordinate label when `step_dim` has a
        coordinate, else a position).

    Returns
    -------
    xr.DataArray
        float64 drift vectors, dims of `acts` minus `dim`; exactly zero at the reference step.
    """
    dims = _validate_drift(acts, aligned, dim, step_dim)
    default_ref = aligned is None
    if aligned is None:
        aligned = _select_reference(acts, step_dim, reference_step)
    out = _difference(
        "acts", _probe_mean(acts, dims), "aligned", _probe_mean(aligned, dims)
    )
    out.attrs = _attrs("drift", reference_step=reference_step if default_ref else None)
    return out.rename("drift")


# --------------------------------------------------------------------------- alignment


def _validate_vector_pair(a_name: str, a: Any, b_name: str, b: Any, dim: Any):
    _check_dataarray(a_name, a)
    _check_dataarray(b_name, b)
    dims = _as_dims("dim", dim)
    check_dims(a_name, a, dims)
    check_dims(b_name, b, dims)
    _check_paired(a_name, a, b_name, b, dims)
    return dims


def alignment(
    drift: xr.DataArray, direction: xr.DataArray, *, dim: Dims = "hidden"
) -> xr.DataArray:
    """Plug-in alignment ``a = cos(drift, direction) = <drift, v> / (||drift|| ||v||)``.

    Parameters
    ----------
    drift, direction : xr.DataArray
        Vectors over `dim`; other dims broadcast (e.g. drift ``(run, step, layer, hidden)``
        against direction ``(run, layer, hidden)``). `direction` need not be unit length.
    dim : str or sequence of str
        Dimension(s) spanning the vector space.

    Returns
    -------
    xr.DataArray
        Cosines in [-1, 1] (float64). Positive = the drift points toward the witness when
        `direction` is :func:`reversion_direction`. A zero drift (e.g. the reference step
        itself) or a zero/NaN direction gives NaN, with a ``DegenerateDataWarning`` for zeros.

    Notes
    -----
    Scale invariant (``cos(a x, b v) = sign(ab) cos(x, v)``) and rotation invariant. In high
    dimension the plug-in cosine of noisy means is biased toward 0; report
    :func:`debiased_alignment` beside it.
    """
    dims = _validate_vector_pair("drift", drift, "direction", direction, dim)
    layer_dim = "layer" if "layer" in drift.dims or "layer" in direction.dims else None
    names = [str(x) for x in (drift if "layer" in drift.dims else direction)["layer"].values] if layer_dim else []
    label = (xr.DataArray(np.arange(len(names)), dims=("layer",),
                          coords={"layer": (drift if "layer" in drift.dims else direction)["layer"].values})
             if layer_dim else xr.DataArray(0))
    if "step" in drift.dims:  # the reference step's drift is zero by definition: not reported
        ref = drift.attrs.get("reference_step")
        ref = 0 if ref is None else ref
        expected = xr.DataArray(np.asarray(drift["step"].values) == ref, dims=("step",),
                                coords={"step": drift["step"].values})
    else:
        expected = xr.DataArray(False)
    out = _apply(_AlignmentKernel(len(dims), names), drift, direction, label, expected,
                 core=[dims, dims, (), ()])
    out.attrs = _attrs("alignment", estimator="plug-in cosine")
    return out.rename("alignment")


class _AlignmentKernel:
    """Cosine kernel that reports zero-length / non-finite vectors once per layer for the whole
    computation (not once per dask chunk), names the layer, and skips the reference step.

    A class (not a closure) so dask.distributed can pickle it; each worker process then reports
    at most once per layer (the lock and the set of reported layers are not shipped)."""

    def __init__(self, k: int, layer_names: list[str]) -> None:
        import threading

        self.k, self.layer_names = k, list(layer_names)
        self._warned: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"k": self.k, "layer_names": self.layer_names}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["k"], state["layer_names"])  # type: ignore[misc]

    def __call__(self, x: np.ndarray, v: np.ndarray, layer: np.ndarray, expected: np.ndarray) -> np.ndarray:
        c, zero, bad = npg.cosine_parts(npg.flatten_last(x, self.k), npg.flatten_last(v, self.k))
        layer_b = np.broadcast_to(layer, c.shape)
        unexpected_zero = zero & ~np.broadcast_to(expected, c.shape)
        for kind, mask in (("zero", unexpected_zero), ("nonfinite", bad)):
            if not mask.any():
                continue
            for li in np.unique(layer_b[mask]).tolist():
                with self._lock:
                    if (kind, li) in self._warned:
                        continue
                    self._warned.add((kind, li))
                where = f"layer {self.layer_names[li]!r}" if self.layer_names else "the input"
                what = ("some drift or direction vectors have zero length and no direction (e.g. a run "
                        "that did not move, or a witness equal to the aligned model) besides the "
                        "reference step" if kind == "zero" else
                        "some drift or direction vectors contain NaN or Inf; the result is NaN there "
                        "(check the activations)")
                warnings.warn(f"alignment at {where}: {what}; the alignment is NaN there (reported once "
                              "per computation)", DegenerateDataWarning, stacklevel=2)
        return c


def _validate_per_probe(acts, direction, aligned, dim, example_dim, step_dim):
    _check_dataarray("acts", acts)
    _check_dataarray("direction", direction)
    hid, ex = _as_dims("dim", dim), _as_dims("example_dim", example_dim)
    _check_disjoint(dim=hid, example_dim=ex)
    check_dims("acts", acts, hid + ex)
    check_dims("direction", direction, hid)
    _check_paired("acts", acts, "direction", direction, hid)
    if aligned is None:
        check_dims("acts", acts, (step_dim,))
    else:
        _check_dataarray("aligned", aligned)
        check_dims("aligned", aligned, hid + ex)
        _check_paired("acts", acts, "aligned", aligned, hid + ex)
    return hid, ex


def per_probe_alignment(
    acts: xr.DataArray,
    direction: xr.DataArray,
    aligned: xr.DataArray | None = None,
    *,
    dim: Dims = "hidden",
    example_dim: Dims = "example",
    step_dim: Hashable = "step",
    reference_step: Any = 0,
) -> xr.DataArray:
    """Per-probe alignment ``cos(h_t(x_i) - h_aligned(x_i), v)`` for every probe ``x_i``.

    `aligned` defaults to the ``reference_step`` slab of `acts`; it must hold the same probes
    (same `example_dim` coordinates) as `acts`. Returns cosines with the probe dim(s) kept;
    NaN (with a ``DegenerateDataWarning``) where a probe has not moved (always at the
    reference step). Same sign convention as :func:`alignment`.
    """
    hid, _ = _validate_per_probe(acts, direction, aligned, dim, example_dim, step_dim)
    if aligned is None:
        aligned = _select_reference(acts, step_dim, reference_step)
    moved = _difference("acts", acts, "aligned", aligned)
    out = _apply(_vector_kernel(npg.cosine, len(hid), False), moved, direction, core=[hid, hid])
    out.attrs = _attrs("per_probe_alignment", estimator="plug-in cosine per probe")
    return out.rename("per_probe_alignment")


def project_out(x: xr.DataArray, direction: xr.DataArray, *, dim: Dims = "hidden") -> xr.DataArray:
    """Remove the component along `direction`: ``x - <x, u> u`` with ``u = v / ||v||``.

    The result is orthogonal to `direction` and projecting twice changes nothing. A zero
    direction has nothing to project onto: NaN, with a ``DegenerateDataWarning``.
    """
    dims = _validate_vector_pair("x", x, "direction", direction, dim)
    out = _apply(
        _vector_kernel(npg.project_out, len(dims), True),
        x,
        direction,
        core=[dims, dims],
        out_core=[dims],
    )
    out.attrs = _attrs("project_out")
    return out


# --------------------------------------------------------------------------- stability


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}, got {value}")
    return int(value)


def _validate_direction_stability(
    witness, aligned, dim, hidden_dim, n_resamples, n_splits, confidence, rng
):
    _check_dataarray("witness", witness)
    _check_dataarray("aligned", aligned)
    dims, hid = _as_dims("dim", dim), _as_dims("hidden_dim", hidden_dim)
    _check_disjoint(dim=dims, hidden_dim=hid)
    for name, obj in (("witness", witness), ("aligned", aligned)):
        check_dims(name, obj, dims + hid)
    _check_paired("witness", witness, "aligned", aligned, dims + hid)
    n = math.prod(witness.sizes[d] for d in dims)
    if n < 2:
        raise ValueError(
            f"`witness` needs at least 2 probes along {dims!r} for resampling, got {n}"
        )
    return (
        dims,
        hid,
        n,
        _check_int("n_resamples", n_resamples, 1),
        _check_int("n_splits", n_splits, 1),
        check_confidence(confidence),
        normalize_rng(rng),
    )


def _half_masks(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.zeros((k, n))
    for i in range(k):
        a[i, rng.permutation(n)[: n // 2]] = 1.0
    return a, 1.0 - a


def direction_stability(
    witness: xr.DataArray,
    aligned: xr.DataArray,
    *,
    dim: Dims = "example",
    hidden_dim: Dims = "hidden",
    n_resamples: int = 1000,
    n_splits: int = 20,
    confidence: float = 0.95,
    rng: RNGLike = None,
) -> xr.Dataset:
    """How reproducible the reversion direction is under resampling of probes.

    With paired per-probe differences ``w_i = witness_i - aligned_i`` and
    ``v = normalize(mean_i w_i)``:

    - bootstrap: resample probes with replacement (the same resample for every run/layer),
      ``v* = normalize(mean_i w*_i)``, record ``cos(v*, v)``;
    - split-half: random halves A, B, ``cos(normalize(mean_A w), normalize(mean_B w))``,
      averaged over `n_splits` splits.

    Parameters
    ----------
    witness, aligned : xr.DataArray
        Activations on the *same* probes (same `dim` coordinates, same order).
    n_resamples, n_splits : int
        Bootstrap replicates and random half splits.
    confidence : float
        Central mass of the reported bootstrap range.
    rng : Generator, int or None
        Seeds the resamples; an int seed is recorded in the attrs.

    Returns
    -------
    xr.Dataset
        ``bootstrap_mean`` (mean of ``cos(v*, v)``), ``low``/``high`` (its central
        `confidence` percentile range), ``split_half`` (mean split-half cosine).

    Notes
    -----
    ``cos(v*, v) <= 1 = cos(v, v)``, so the bootstrap range describes how far a re-estimated
    direction falls from the estimate; it is a stability summary, not a confidence interval
    for a parameter. Both summaries shrink toward 0 as probe noise grows relative to the
    witness-aligned separation (Efron & Tibshirani 1993, ch. 6; split-half reliability as in
    psychometrics). A zero direction gives NaN with a ``DegenerateDataWarning``.
    """
    dims, hid, n, n_resamples, n_splits, confidence, gen = _validate_direction_stability(
        witness, aligned, dim, hidden_dim, n_resamples, n_splits, confidence, rng
    )
    counts = gen.multinomial(n, np.full(n, 1.0 / n), size=n_resamples)
    a_mask, b_mask = _half_masks(gen, n, n_splits)
    alpha = 1.0 - confidence

    def kernel(w: np.ndarray) -> tuple[np.ndarray, ...]:
        cos = npg.bootstrap_direction_cosines(w, counts)
        low, high = np.quantile(cos, [alpha / 2, 1 - alpha / 2], axis=-1)
        return cos.mean(axis=-1), low, high, npg.split_half_cosine(w, a_mask, b_mask)

    w = _difference("witness", witness, "aligned", aligned)
    outs = _apply(
        _table_kernel(kernel, len(dims), len(hid)), w, core=[dims + hid], out_core=[(), (), (), ()]
    )
    ds = xr.Dataset(dict(zip(("bootstrap_mean", "low", "high", "split_half"), outs, strict=True)))
    ds.attrs = _attrs(
        "direction_stability",
        confidence=confidence,
        n_resamples=n_resamples,
        n_splits=n_splits,
        seed=_seed_attr(rng),
        interval="percentile of cos(v*, v) (a stability range, not a CI)",
    )
    return ds


# --------------------------------------------------------------------------- debiased alignment


def _check_acts_witness_aligned(acts, witness, aligned, dim, hidden_dim, step_dim):
    """The checks shared by the estimators on (acts, witness, aligned): returns (dims, hid, n)
    with n the number of probes along `dim`."""
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
    return dims, hid, math.prod(acts.sizes[d] for d in dims)


def _validate_debiased(acts, witness, aligned, dim, hidden_dim, step_dim, splits, pool_dim, rng):
    dims, hid, n = _check_acts_witness_aligned(acts, witness, aligned, dim, hidden_dim, step_dim)
    if n < 2:
        raise ValueError(f"`acts` needs at least 2 probes along {dims!r} to cross-fit, got {n}")
    if isinstance(splits, str):
        if splits != "all":
            raise ValueError(f"`splits` must be 'all' or a positive integer, got {splits!r}")
    else:
        _check_int("splits", splits, 1)
    pools: tuple[Hashable, ...] = ()
    if pool_dim is not None:
        pools = _as_dims("pool_dim", pool_dim)
        _check_disjoint(dim=dims, hidden_dim=hid, pool_dim=pools)
        check_dims("acts", acts, pools)
    return dims, hid, n, pools, normalize_rng(rng)


def _joint_pow2(*arrays: Any) -> Any:
    """A power of two near the largest finite |value| of the arrays (1 if none is nonzero),
    as a 0-d DataArray (lazy for dask-backed inputs): dividing by it is exact."""
    peak = None
    for a in arrays:
        if a is None or np.dtype(a.dtype).kind not in "fiu":
            continue
        m = abs(a).where(np.isfinite(a)).max()
        peak = m if peak is None else np.maximum(peak, m)
    if peak is None:
        return 1.0
    ok = np.isfinite(peak) & (peak > 0)
    return xr.where(ok, 2.0 ** np.floor(np.log2(xr.where(ok, peak, 1.0))), 1.0)


def debiased_alignment(
    acts: xr.DataArray,
    witness: xr.DataArray,
    aligned: xr.DataArray | None = None,
    *,
    dim: Dims = "example",
    hidden_dim: Dims = "hidden",
    step_dim: Hashable = "step",
    reference_step: Any = 0,
    splits: int | Literal["all"] = "all",
    pool_dim: Dims | None = None,
    rng: RNGLike = None,
) -> xr.Dataset:
    """Cross-fitted (debiased) alignment, reported beside the plug-in cosine.

    With paired per-probe vectors ``d_i = acts_t(x_i) - aligned(x_i)`` (drift) and
    ``w_i = witness(x_i) - aligned(x_i)`` (direction), ``D = E d_i``, ``W = E w_i``, the
    target is ``cos(D, W)``. The plug-in ``cos(mean d, mean w)`` is biased toward 0 in high
    dimension because ``||mean d||^2 = ||D||^2 + tr Cov(d)/n + noise`` (and likewise for w).
    Cross-fitting only multiplies means over *disjoint* probe halves A and B, whose noises
    are independent::

        <D, W>^  = ( <d_A, w_B> + <d_B, w_A> ) / 2      (unbiased for <D, W>)
        ||D||^2^ = <d_A, d_B>                           (unbiased for ||D||^2)
        ||W||^2^ = <w_A, w_B>                           (unbiased for ||W||^2)
        a^       = <D, W>^ / sqrt(||D||^2^ * ||W||^2^)

    each averaged over splits. ``splits="all"`` averages over every balanced split, which
    in closed form is the U-statistic over probe pairs ``i != j``::

        <D, W>^ = ( <sum_i d_i, sum_j w_j> - sum_i <d_i, w_i> ) / (n (n - 1))

    (and likewise for the squared norms): deterministic and of least variance.
    ``splits=K`` averages K random half splits drawn from `rng` instead.

    Parameters
    ----------
    acts : xr.DataArray
        Activations along fine-tuning, e.g. ``(run, step, layer, example, hidden)``.
    witness : xr.DataArray
        Witness activations on the same probes, e.g. ``(layer, example, hidden)``.
    aligned : xr.DataArray, optional
        Aligned activations on the same probes; default the ``reference_step`` slab of `acts`.
    dim, hidden_dim : str or sequence of str
        Probe dimension(s) (split) and vector dimension(s).
    splits : "all" or int
        Exact average over all splits, or this many random half splits.
    pool_dim : str or sequence of str, optional
        Average the three cross-products over these dims (e.g. ``"run"``) *before* forming
        the ratio. Independent runs have independent noise, so the pooled pieces stay
        unbiased and the ratio's own (second-order) bias shrinks with the number of runs.
        It estimates the common cosine when runs share the geometry; ``plugin`` is then the
        mean of the per-run plug-in cosines (the paper's form).
    rng : Generator, int or None
        Only used for ``splits=K``.

    Returns
    -------
    xr.Dataset
        ``debiased``, ``plugin``, and the pieces ``drift_dot_direction``, ``drift_sq``,
        ``direction_sq``, over the dims of `acts` minus `dim`, `hidden_dim` (and `pool_dim`).

    Notes
    -----
    Each piece is unbiased; the ratio is *consistent*, not exactly unbiased (a ratio of
    unbiased estimates has an O(1/n) bias, small when the squared norms are well
    determined). It is not clipped and can fall slightly outside [-1, 1] by noise. Where a
    cross-fitted squared norm is <= 0 (no drift, e.g. at the reference step, or signal
    drowned in noise) the value is NaN with a ``DegenerateDataWarning``: no fake number.
    Requires independent probes; the same probes must appear in `acts`, `witness` and
    `aligned` (the pairing cancels per-probe content). Cross-fitting as in Chernozhukov et
    al. (2018), "Double/debiased machine learning", Econometrics Journal 21(1).
    """
    dims, hid, n, pools, gen = _validate_debiased(
        acts, witness, aligned, dim, hidden_dim, step_dim, splits, pool_dim, rng
    )
    default_ref = aligned is None
    if aligned is None:
        aligned = _select_reference(acts, step_dim, reference_step)
    # the ratio is scale-free: computed from d, w divided by one power of two near their
    # largest |value| (exact, lazy on dask), so the cross-products neither overflow nor
    # underflow; the reported pieces are multiplied back (inf where they exceed float64)
    scale = _joint_pow2(acts, witness, aligned)
    d = _difference("acts", acts, "aligned", aligned) / scale
    w = _difference("witness", witness, "aligned", aligned) / scale
    masks = None if splits == "all" else _half_masks(gen, n, int(splits))

    pieces = _apply(
        _table_kernel(npg.cross_fit_products, len(dims), len(hid)),
        d,
        w,
        core=[dims + hid, dims + hid],
        out_core=[(), (), ()],
        kwargs={"masks": masks},
    )
    dw, dd, ww = pieces
    plugin = alignment(_probe_mean(d, dims), _probe_mean(w, dims), dim=hid)
    if pools:
        dw, dd, ww = (p.mean(pools, skipna=False) for p in pieces)
        plugin = plugin.mean(pools, skipna=False)
    debiased = _apply(npg.ratio_of_products, dw, dd, ww, core=[(), (), ()])
    with np.errstate(over="ignore"):
        dw, dd, ww = (p * scale**2 for p in (dw, dd, ww))
    ds = xr.Dataset(
        {
            "debiased": debiased,
            "plugin": plugin,
            "drift_dot_direction": dw,
            "drift_sq": dd,
            "direction_sq": ww,
        }
    )
    ds.attrs = _attrs(
        "debiased_alignment",
        estimator="cross-fitted ratio of unbiased cross-products (consistent)",
        splits=splits,
        pool_dim=",".join(map(str, pools)) or None,
        seed=None if splits == "all" else _seed_attr(rng),
        reference_step=reference_step if default_ref else None,
    )
    return ds
