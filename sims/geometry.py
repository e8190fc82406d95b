"""Geometry of the dominant manifold M, passed to the simulator as functions.

A manifold is a pair of vectorised functions on parameters ``theta`` of shape (..., p):
``projection(theta)`` (the nearest point of M) and ``displacement(theta)`` (theta minus that
point). The inherited pull of pretraining is ``-G * displacement(theta)`` = the gradient of
``G/2 * dist(theta, M)^2``; it vanishes on M. A new manifold is a new pair of functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Array = np.ndarray


@dataclass(frozen=True)
class Geometry:
    """A manifold given by its projection and displacement functions, plus its unit normal
    at a chosen point (used to displace the aligned model from the witness)."""

    name: str
    projection: Callable[[Array], Array]
    displacement: Callable[[Array], Array]
    normal_at: Callable[[Array], Array]


def flat_geometry(origin: Array, normal_basis: Array) -> Geometry:
    """Flat manifold M = {theta : N^T (theta - origin) = 0}; N (p, k) has orthonormal columns.

    projection(theta) = theta - N N^T (theta - origin); displacement = N N^T (theta - origin).
    """
    origin = np.asarray(origin, dtype=float)
    n = np.asarray(normal_basis, dtype=float)

    def displacement(theta: Array) -> Array:
        return ((theta - origin) @ n) @ n.T

    def projection(theta: Array) -> Array:
        return theta - displacement(theta)

    def normal_at(point: Array) -> Array:
        return n[:, 0].copy()

    return Geometry("flat", projection, displacement, normal_at)


def sphere_geometry(center: Array, radius: float) -> Geometry:
    """Curved manifold: the sphere |theta - center| = radius (codimension 1, in p dims).

    projection(theta) = center + radius (theta - center)/|theta - center|.
    """
    center = np.asarray(center, dtype=float)
    r = float(radius)

    def projection(theta: Array) -> Array:
        d = theta - center
        return center + r * d / np.linalg.norm(d, axis=-1, keepdims=True)

    def displacement(theta: Array) -> Array:
        return theta - projection(theta)

    def normal_at(point: Array) -> Array:
        d = np.asarray(point, dtype=float) - center
        return d / np.linalg.norm(d)

    return Geometry("sphere", projection, displacement, normal_at)
