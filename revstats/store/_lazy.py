"""The dask array behind ``open_store(path)["acts"]`` (and ``["witness"]``) of local stores.

Lazily it is an ordinary dask array with one task per chunk file (each task reads its chunk
with the direct, checksummed `ChunkReader`), so slicing, reductions and any scheduler work as
before. Only when the array *itself* is computed whole (``.values``, ``.to_numpy()``,
``.load()``, ``.compute()``, ``np.asarray``) does its graph optimisation replace the per-chunk
tasks with one task that reads every chunk file straight into its place in a single output
array, on several threads (`ChunkReader.read_into`, the path `read_acts` uses): no per-chunk
buffers, no concatenation copy. The chunk results are then views of that array and the final
step returns the array itself (after checking that every view sits exactly at its place).

Values, fill semantics and integrity errors are those of `ChunkReader.read_chunk_into` on both
paths. Derived arrays (``acts.isel(...)``, ``acts.where(...)``, ``acts.mean(...)``) are plain
dask arrays over the same per-chunk tasks.
"""

from __future__ import annotations

import functools
import itertools
import operator
import os
from typing import Any

import dask.array as da
import numpy as np
from dask.array.core import finalize as _dask_finalize
from dask.array.core import slices_from_chunks
from dask.core import flatten

__all__ = ["direct_dask_array"]


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def _optimize(dsk: Any, keys: Any, *, name: str, chunks: Any, reader: Any, workers: int,
              **kwargs: Any) -> Any:
    """`__dask_optimize__` of a direct array: its graph with every chunk task replaced by a
    view of one whole-array read, when the outputs `keys` (the chunks themselves, or dask's
    final step over them) need every chunk; dask's own optimisation otherwise."""
    from dask.highlevelgraph import HighLevelGraph

    wanted = set(flatten(keys)) if isinstance(keys, (list, tuple)) else {keys}
    culled = dsk.cull(wanted) if isinstance(dsk, HighLevelGraph) else dsk
    graph = dict(culled)
    mine = [(name, *idx) for idx in itertools.product(*(range(len(c)) for c in chunks))]
    if not mine or any(k not in graph for k in mine):
        return da.Array.__dask_optimize__(dsk, keys, **kwargs)
    whole = "revstats-whole-" + name
    graph[whole] = (_read_whole, reader, workers)
    for key, sl in zip(mine, slices_from_chunks(chunks), strict=True):
        graph[key] = (operator.getitem, whole, sl)
    return graph


def _read_whole(reader: Any, workers: int) -> np.ndarray:
    out = np.empty(reader.shape, dtype=reader.dtype)
    return reader.read_into((), out, workers=workers)


def _finalize_direct(results: Any, shape: tuple[int, ...], chunks: tuple[tuple[int, ...], ...]) -> Any:
    """The whole array when every chunk result is the view of one output array at its place
    (what the whole-array graph produces); otherwise dask's concatenation of the chunks."""
    flat = list(flatten(results)) if isinstance(results, (list, tuple)) else [results]
    base = getattr(flat[0], "base", None) if flat else None
    if (
        isinstance(base, np.ndarray) and base.shape == tuple(shape) and base.flags.c_contiguous
        and len(flat) == int(np.prod([len(c) for c in chunks]))
    ):
        start = base.__array_interface__["data"][0]
        for r, sl in zip(flat, slices_from_chunks(chunks), strict=True):
            if not isinstance(r, np.ndarray) or r.base is not base or r.dtype != base.dtype:
                break
            want = start + sum(s.start * st for s, st in zip(sl, base.strides, strict=True))
            if r.__array_interface__["data"][0] != want or r.shape != tuple(s.stop - s.start for s in sl):
                break
        else:
            return base
    return _dask_finalize(results)


def direct_dask_array(reader: Any, name: str, *, workers: int | None = None) -> da.Array:
    """A dask array with one task per chunk of `reader` (a `ChunkReader`), named `name`, whose
    whole-array compute is one direct read.

    It is a plain `dask.array.Array` (xarray refuses to mix subclasses with plain dask arrays
    in one Dataset): the two collection hooks are set on the instance, where dask looks them
    up (``collection.__dask_optimize__``, ``collection.__dask_postcompute__()``). Copies,
    pickles and derived arrays drop them and compute chunk by chunk, with the same values.
    """
    arr = da.from_array(
        reader, chunks=reader.chunks, asarray=False, lock=False, fancy=False, name=name,
        meta=np.empty((0,) * reader.ndim, dtype=reader.dtype),
    )
    shape, chunks = arr.shape, arr.chunks
    arr.__dask_optimize__ = functools.partial(
        _optimize, name=arr.name, chunks=chunks, reader=reader,
        workers=int(workers or default_workers()))
    arr.__dask_postcompute__ = lambda: (_finalize_direct, (shape, chunks))
    return arr
