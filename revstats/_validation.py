"""Shared input validation: one `_validate_*` step per public function builds on these.

Messages name the argument in backticks and say how to fix it (STYLE.md).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

RNGLike = np.random.Generator | int | np.random.SeedSequence | None


def check_confidence(confidence: float) -> float:
    """Return `confidence` as a float in (0, 1) or raise ValueError."""
    try:
        c = float(confidence)
    except (TypeError, ValueError):
        raise TypeError(f"`confidence` must be a number in (0, 1), got {confidence!r}") from None
    if not (0.0 < c < 1.0) or not np.isfinite(c):
        raise ValueError(
            f"`confidence` must lie strictly between 0 and 1 (e.g. 0.95), got {confidence!r}"
        )
    return c


def normalize_rng(rng: RNGLike) -> np.random.Generator:
    """The one RNG convention: Generator | int | SeedSequence | None -> Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer, np.random.SeedSequence)):
        if isinstance(rng, (int, np.integer)) and rng < 0:
            raise ValueError(f"`rng` seed must be a non-negative integer, got {rng}")
        return np.random.default_rng(rng)
    raise TypeError(
        f"`rng` must be a numpy Generator, an int seed, a SeedSequence or None, got {type(rng).__name__}"
    )


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Check that `value` is one of `choices` (case-sensitive, lowercase by convention)."""
    if value not in choices:
        opts = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {opts}; got {value!r}")
    return value


def check_dims(name: str, obj: Any, dims: str | Sequence[Hashable]) -> tuple[Hashable, ...]:
    """Check that every dim in `dims` exists on the xarray object `obj`; return them as a tuple."""
    wanted = (dims,) if isinstance(dims, str) else tuple(dims)
    have = tuple(obj.dims)
    missing = [d for d in wanted if d not in have]
    if missing:
        raise ValueError(
            f"`{name}` has no dimension {', '.join(map(repr, missing))}; its dimensions are "
            f"{', '.join(map(repr, have)) or '(none)'}: pass one of those as `dim`"
        )
    return wanted


_NON_REAL = {
    "c": "complex numbers (pass `.real`, `.imag` or `abs()` of them, whichever you mean)",
    "M": "datetimes (convert them to numbers first, e.g. `(t - t0) / np.timedelta64(1, 's')`)",
    "m": "timedeltas (convert them to numbers first, e.g. `dt / np.timedelta64(1, 's')`)",
    "U": "strings (parse them to numbers first, e.g. `np.asarray(x, dtype=float)`)",
    "S": "bytes (parse them to numbers first)",
    "V": "raw or structured records (select a numeric field)",
}


def as_real_array(name: str, x: Any, dtype: Any = float) -> np.ndarray:
    """Convert to an ndarray of `dtype`, refusing what is not real numbers.

    NumPy's own ``asarray(x, dtype=float)`` drops imaginary parts (with only a warning), parses
    numeric strings and turns datetimes into integers: each of those silently changes what is
    analysed, so they are refused here with the fix; ragged nested lists too. Booleans and
    integers are real numbers and convert. NaN/Inf are left to the caller's finiteness check.
    """
    try:
        raw = np.asarray(x)
    except ValueError:  # ragged nested sequences (NumPy >= 1.24)
        raise ValueError(
            f"`{name}` is ragged (nested rows of different lengths): pass a rectangular array"
        ) from None
    kind = raw.dtype.kind
    if kind in _NON_REAL:
        raise TypeError(f"`{name}` must hold real numbers, got dtype {raw.dtype}: {_NON_REAL[kind]}")
    if kind == "O":
        for v in raw.flat:
            if v is None:
                continue
            if isinstance(v, (str, bytes, complex, np.complexfloating)) or not np.isrealobj(v):
                raise TypeError(
                    f"`{name}` must hold real numbers, got an object array holding "
                    f"{type(v).__name__} {v!r}: convert the values to floats first"
                )
        try:
            return np.asarray(raw.astype(float), dtype=dtype)
        except (TypeError, ValueError):
            raise TypeError(
                f"`{name}` must be numeric array-like, got objects that do not convert to floats"
            ) from None
    return np.asarray(raw, dtype=dtype)


def as_finite_array(name: str, x: Any, *, min_size: int = 1, dtype: Any = float) -> np.ndarray:
    """Convert to an ndarray of `dtype`, refusing non-real, empty, NaN or infinite input."""
    arr = as_real_array(name, x, dtype=dtype)
    if arr.size < min_size:
        raise ValueError(f"`{name}` needs at least {min_size} value(s), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains NaN or infinite values: remove or impute them first")
    return arr


def check_nonempty_dims(name: str, obj: Any, dims: str | Sequence[Hashable]) -> tuple[Hashable, ...]:
    """`check_dims`, and refuse dims of size 0 (an empty probe set has no mean, no direction)."""
    wanted = check_dims(name, obj, dims)
    empty = [d for d in wanted if obj.sizes[d] == 0]
    if empty:
        raise ValueError(
            f"`{name}` has no entries along {', '.join(map(repr, empty))} (size 0): an empty "
            "probe set or vector has no mean and no direction; select at least one entry"
        )
    return wanted


def check_numeric_dtype(name: str, obj: Any) -> None:
    """Refuse arrays whose dtype is not real numbers (strings, objects, complex, datetimes)."""
    kind = np.dtype(obj.dtype).kind
    if kind not in "fiub":
        raise TypeError(
            f"`{name}` must hold real numbers, got dtype {obj.dtype}: convert it with "
            "`.astype(float)` if the values are numbers"
        )


def pow2_scale(arr: np.ndarray, axis: int | None = -1) -> np.ndarray:
    """A power of two near max|x| along `axis` (all axes for None), kept as a length-1 axis;
    1 where all values are 0. Dividing by it is exact, so a statistic computed on x / scale and
    multiplied back is the same number, but its squares neither overflow (|x| beyond ~1e154)
    nor underflow to a false zero variance (|x| below ~1e-154)."""
    peak = np.abs(arr).max(axis=axis, keepdims=True)
    _, exp = np.frexp(np.where(peak > 0, peak, 1.0))
    return np.ldexp(1.0, exp - 1)
