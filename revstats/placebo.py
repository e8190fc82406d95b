r"""Placebo directions for blocking ablations: block *something* that is not v_rev.

An ablation "blocked vs control" shows that intervening along v_rev matters only if the same
intervention along another direction does not do the same. Two placebos, each with the norm of
v (so a penalty or projection has the same strength):

* ``kind="random"``: u uniform on the sphere (a standard normal vector, normalised);
* ``kind="covariance"``: u ~ N(0, Sigma) with Sigma the empirical covariance of the activations
  (rows of `acts`), i.e. a direction the activations actually vary along -- blocking it costs
  the model about as much as blocking a typical direction of its own motion.

With ``orthogonal=True`` (default) the draw is projected off v before normalising, so the placebo
has exactly zero overlap with v (in small hidden sizes a random direction has |cos| ~ 1/sqrt(d),
which would leak part of the real intervention into the placebo arm).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from revstats._validation import RNGLike, as_finite_array, check_choice, normalize_rng

__all__ = ["placebo_direction"]


def _validate_placebo(v: Any, kind: Any, acts: Any) -> tuple[np.ndarray, np.ndarray | None]:
    check_choice("kind", kind, ("random", "covariance"))
    vec = as_finite_array("v", v, min_size=2)
    if vec.ndim != 1 or not np.linalg.norm(vec) > 0:
        raise ValueError("`v` must be one non-zero direction of shape (hidden,)")
    a = None
    if kind == "covariance":
        if acts is None:
            raise ValueError("`kind='covariance'` needs `acts=` (example, hidden) activations")
        a = as_finite_array("acts", acts)
        a = a.reshape(-1, a.shape[-1])
        if a.shape[-1] != vec.shape[0] or a.shape[0] < 2:
            raise ValueError(
                f"`acts` must have shape (n >= 2, {vec.shape[0]}) to match `v`, got {a.shape}"
            )
    return vec, a


def placebo_direction(
    v: Any,
    *,
    kind: Literal["random", "covariance"] = "random",
    acts: Any = None,
    orthogonal: bool = True,
    rng: RNGLike = None,
) -> np.ndarray:
    """A placebo direction with the norm of `v` (see the module docstring).

    Parameters
    ----------
    v : array (hidden,)
        The real direction (v_rev at one layer).
    kind : {"random", "covariance"}
    acts : array (..., hidden), optional
        Activations whose covariance the ``"covariance"`` placebo matches.
    orthogonal : bool
        Project the draw off v first (zero overlap with the real intervention).
    rng : Generator, int or None

    Returns
    -------
    ndarray (hidden,)
        ``||u|| = ||v||``.
    """
    vec, a = _validate_placebo(v, kind, acts)
    gen = normalize_rng(rng)
    unit_v = vec / np.linalg.norm(vec)
    for _ in range(100):
        if a is None:
            u = gen.standard_normal(vec.shape[0])
        else:
            centred = a - a.mean(0)
            u = centred.T @ gen.standard_normal(a.shape[0]) / np.sqrt(a.shape[0] - 1)
        if orthogonal:
            u = u - (u @ unit_v) * unit_v
        n = np.linalg.norm(u)
        if n > 1e-12 * max(1.0, float(np.abs(u).max(initial=0.0))):
            return np.asarray(u / n * np.linalg.norm(vec))
    raise ValueError("`acts` have no variation outside v: a covariance-matched placebo does not exist")
