"""The activation store: one zarr v3 group per experiment, read as a lazy `xarray.Dataset`.

Layout (DESIGN §3): `acts` (run, step, layer, example, hidden), `witness`, optional `behavior`
and `task`, and the bookkeeping variable `complete` (run, step). Each (run, step) slab of `acts`
lives in its own chunk(s) and has its own one-element `complete` chunk, written last: a slab is
visible only once its marker is set, so a writer killed mid-append leaves every earlier slab
readable and the next append (or a rerun that skips complete slabs) succeeds.

Why it is safe: zarr's LocalStore writes each object through a temporary file and an atomic
rename, and object stores (fsspec URLs) put whole objects, so no chunk or metadata document is
ever half-written. A writer takes an exclusive lock (local stores), so two writers never race.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import stat
import time
import unicodedata
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from revstats._version import __version__
from revstats.errors import CorruptStoreError, RevstatsError, SchemaError
from revstats.store.schema import (
    ACTS_DIMS,
    COORD_DIMS,
    MAX_STEP,
    RUN_COORDS,
    SCHEMA_VERSION,
    SOURCES,
    check_dataset,
    raise_problems,
    validate_layout,
)
from revstats.store.schema import (
    check_values as schema_check_values,
)

__all__ = [
    "StoreWriter",
    "check_writable",
    "create_store",
    "describe_store",
    "open_store",
    "open_writer",
    "read_acts",
    "verify_store",
    "write_dataset",
]

#: Largest chunk of `acts` written by default; bigger slabs are split along `layer`, then
#: `example`.
MAX_CHUNK_BYTES = 256 * 2**20
_STEP_UNSET = -1
_DIGEST_UNSET = -1
#: Steps per `complete` / `digest` chunk: a run's markers for a batch of steps are written as
#: one object (schema 2), not one object per slab.
_MARKER_STEPS = 64
#: The data arrays whose chunks carry a crc32c and (acts, behavior, task) a manifest digest.
_CHECKED_ARRAYS = ("acts", "witness", "behavior", "task", "complete", "digest")
_F16_MAX = float(np.finfo(np.float16).max)


@contextlib.contextmanager
def _quiet_consolidated() -> Iterator[None]:
    # DESIGN §3 asks for consolidated metadata; zarr warns it is not yet in the v3 spec.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        yield


def _is_local(path: str) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _local_path(path: str) -> str:
    p = str(path)
    return p[len("file://") :] if p.startswith("file://") else p


def _acts_chunks(n_layer: int, n_example: int, hidden: int, itemsize: int) -> tuple[int, ...]:
    """One (run, step) slab per chunk, split along layer then example past MAX_CHUNK_BYTES."""
    per_layer = max(1, n_example * hidden * itemsize)
    if n_layer * per_layer <= MAX_CHUNK_BYTES:
        return (1, 1, max(n_layer, 1), max(n_example, 1), max(hidden, 1))
    if per_layer <= MAX_CHUNK_BYTES:
        return (1, 1, max(1, MAX_CHUNK_BYTES // per_layer), max(n_example, 1), max(hidden, 1))
    per_example = max(1, hidden * itemsize)
    return (1, 1, 1, max(1, MAX_CHUNK_BYTES // per_example), max(hidden, 1))


#: Longest id (run, arm, layer, probe) a store accepts.
MAX_ID_LENGTH = 256


def _check_id_text(v: str, name: str) -> None:
    """Ids travel into file names, tables and HTML reports: refuse the ones that could break
    or subvert them (control characters such as newlines, path separators and `..`, markup
    brackets) and empty or huge ones."""
    shown = repr(v if len(v) <= 40 else v[:40] + "…")
    if not v.strip():
        raise ValueError(f"`{name}` has an empty id: give every entry a name")
    if len(v) > MAX_ID_LENGTH:
        raise ValueError(f"`{name}` id {shown} is too long ({len(v)} > {MAX_ID_LENGTH} characters)")
    # run, arm and layer ids may become parts of file names; probe ids (e.g. "suite/001") never do
    forbidden = "<>" if name == "examples" else "<>/\\"
    bad = sorted({c for c in v if unicodedata.category(c)[0] == "C" or c in forbidden})
    if bad:
        raise ValueError(
            f"`{name}` id {shown} has forbidden character(s) {''.join(bad)!r}: control characters "
            f"(newlines, tabs...) and {' '.join(forbidden)} are refused; rename it, e.g. with '-'"
        )
    if name != "examples" and v in (".", ".."):
        raise ValueError(f"`{name}` id {shown} is a path component; rename it")


def _string_array(values: Sequence[Any], name: str) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if not isinstance(v, (str, np.str_)):
            raise TypeError(f"`{name}` must hold strings, got {type(v).__name__} ({v!r})")
        _check_id_text(str(v), name)
        out[i] = str(v)
    if len(set(out.tolist())) != len(out):
        raise ValueError(f"`{name}` has duplicated entries; ids must be unique")
    return out


def _check_ids(values: Sequence[Any], name: str, *, allow_empty: bool = False) -> np.ndarray:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"`{name}` must be a sequence of strings, not a single string")
    arr = _string_array(list(values), name)
    if not allow_empty and len(arr) == 0:
        raise ValueError(f"`{name}` is empty: a store needs at least one entry")
    return arr


def _check_steps(steps: Sequence[int]) -> np.ndarray:
    try:
        arr = np.asarray(list(steps))
    except OverflowError:
        raise ValueError(f"`steps` must be at most {MAX_STEP} (training steps)") from None
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"`steps` must be integers, got {arr.dtype}")
    if arr.size and int(arr.max()) > MAX_STEP:
        raise ValueError(f"`steps` has a step above {MAX_STEP} ({int(arr.max())}): steps are "
                         "training steps, not timestamps")
    arr = arr.astype(np.int64)
    if np.any(arr < 0):
        raise ValueError("`steps` must be non-negative training steps")
    if len(np.unique(arr)) != len(arr):
        raise ValueError("`steps` has duplicated entries")
    if arr.size and arr.max() > MAX_STEP:
        raise ValueError(f"`steps` has a step above {MAX_STEP} ({int(arr.max())}): steps are "
                         "training steps, not timestamps")
    if np.any(np.diff(arr) <= 0):
        raise ValueError(f"`steps` must be in increasing training order, got {arr[:8].tolist()}")
    return arr


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _all_finite(arr: np.ndarray) -> bool:
    """`np.isfinite(arr).all()`, from one reduction in the common case: a NaN or an infinity
    anywhere makes the float sum NaN or infinite (NaN propagates, inf + finite = inf,
    inf - inf = NaN), so a finite sum proves every element finite. A non-finite sum can also
    be the overflow of a finite block (huge values), so it is checked element-wise then."""
    if arr.size == 0:
        return True
    acc = np.float32 if arr.dtype.itemsize < 4 else None  # float16 sums overflow early
    with np.errstate(over="ignore", invalid="ignore"):
        total = arr.sum(dtype=acc)
    return bool(np.isfinite(total)) or bool(np.isfinite(arr).all())


def _as_float_block(name: str, x: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Validate values about to be stored: shape, finiteness, float16 range."""
    try:
        arr = np.asarray(x)
    except Exception as e:  # noqa: BLE001 - any conversion failure is a user error
        raise TypeError(f"`{name}` could not be converted to an array: {e}") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"`{name}` must be numeric, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"`{name}` has shape {arr.shape}; the store expects {shape}")
    if arr.dtype.kind == "f" and not _all_finite(arr):
        raise SchemaError(
            f"`{name}` contains NaN or Inf: the store refuses non-finite activations "
            "(find the step that diverged, or drop it)",
            variable=name,
        )
    if dtype == np.float16 and arr.size and float(np.max(np.abs(arr))) > _F16_MAX:
        raise ValueError(
            f"`{name}` has values beyond the float16 range (|x| > {_F16_MAX:g}); storing them would "
            "overflow to inf. Create the store with dtype='float32' instead"
        )
    from revstats.store._dtypes import warn_underflow

    warn_underflow(arr, dtype, f"`{name}`")
    return arr.astype(dtype, copy=False)


class StoreWriter:
    """Appends slabs to a store. Create with `create_store` or `open_writer`; close when done."""

    def __init__(self, path: str, group: zarr.Group, lock_fd: int | None) -> None:
        self.path = path
        self._group = group
        self._lock_fd = lock_fd
        if lock_fd is not None:
            # Under the lock, a zarr temporary file (`*.partial`) can only be a leftover of a
            # killed writer; at the root it would make every consolidation warn.
            root = _local_path(path)
            for entry in os.listdir(root):
                if entry.endswith(".partial"):
                    with contextlib.suppress(OSError):
                        os.remove(os.path.join(root, entry))
        self._load_index()
        self._repair_step_growth()

    # -- bookkeeping -------------------------------------------------------------------------
    def _load_index(self) -> None:
        g = self._group
        self.runs: list[str] = [str(r) for r in _array(g, "run")[:]]
        self.layers: list[str] = [str(x) for x in _array(g, "layer")[:]]
        self.examples: list[str] = [str(x) for x in _array(g, "example")[:]]
        self._steps: list[int] = [int(s) for s in _array(g, "step")[:]]
        # One handle per array, used for every resize and write: zarr resizes a handle in place,
        # while handles obtained later from the group could carry stale shapes.
        self._arr: dict[str, Any] = {name: _array(g, name) for name in ("acts", "witness", "behavior", "task", "complete", "step", "digest") if name in g}
        self._digest_index = _digest_index(self._arr.get("digest"))
        self._acts = self._arr["acts"]
        self._direct = None
        if _is_local(self.path):
            from revstats.store._chunkio import chunk_reader

            self._direct = chunk_reader(_local_path(self.path), "acts", self._acts)
        self.hidden: int = int(self._acts.shape[-1])
        self.dtype = np.dtype(self._acts.dtype)
        self._run_index = {r: i for i, r in enumerate(self.runs)}
        self._step_index = {s: i for i, s in enumerate(self._steps) if s != _STEP_UNSET}

    def _data_arrays(self) -> list[Any]:
        return [self._arr[n] for n in _STEP_ARRAYS if n in self._arr]

    def _repair_step_growth(self) -> None:
        """Finish a `step` extension that a killed writer left half done."""
        n = len(self._steps)
        grown = False
        for arr in self._data_arrays():
            if arr.shape[1] != n:
                shape = list(arr.shape)
                shape[1] = n
                arr.resize(tuple(shape))
                grown = True
        if grown or self._group.store.supports_writes:
            # also refreshes a consolidated view that a killed writer left behind
            self._consolidate()

    def _consolidate(self) -> None:
        with _quiet_consolidated():
            zarr.consolidate_metadata(self._group.store)

    @property
    def steps(self) -> list[int]:
        return [s for s in self._steps if s != _STEP_UNSET]

    def completed(self) -> np.ndarray:
        """Boolean (run, step) array: which slabs are fully written (steps in store order)."""
        return np.asarray(self._arr["complete"][:], dtype=bool)

    def has_slab(self, run: str, step: int) -> bool:
        ri = self._run_index.get(str(run))
        si = self._step_index.get(int(step))
        if ri is None or si is None:
            return False
        return bool(self._arr["complete"][ri, si])

    def _run_idx(self, run: str) -> int:
        try:
            return self._run_index[str(run)]
        except KeyError:
            known = ", ".join(self.runs[:8]) + (" …" if len(self.runs) > 8 else "")
            raise ValueError(f"`run` {run!r} is not in this store; its runs are: {known}") from None

    def _ensure_steps(self, steps: Sequence[int]) -> list[int]:
        new = [int(s) for s in steps if int(s) not in self._step_index]
        if new:
            if any(s < 0 for s in new):
                raise ValueError("`step` must be a non-negative integer")
            if any(s > MAX_STEP for s in new):
                raise ValueError(f"`step` must be at most {MAX_STEP} (a training step)")
            last = max(self._step_index, default=-1)
            if min(new) <= last or any(b <= a for a, b in zip(new, new[1:], strict=False)):
                raise ValueError(
                    f"new steps {new[:5]} must come after the store's last step ({last}) in "
                    "increasing order: steps are stored in training order"
                )
            n_old = len(self._steps)
            n_new = n_old + len(new)
            # Coordinate first, then the data arrays: a kill in between is repaired on reopen
            # (`_repair_step_growth`); never-written slabs stay invisible (complete == 0).
            coord = self._arr["step"]
            coord.resize((n_new,))
            coord[n_old:n_new] = np.asarray(new, dtype=np.int64)
            self._steps.extend(new)
            for arr in self._data_arrays():
                shape = list(arr.shape)
                shape[1] = n_new
                arr.resize(tuple(shape))
            self._consolidate()
            self._step_index = {s: i for i, s in enumerate(self._steps) if s != _STEP_UNSET}
        return [self._step_index[int(s)] for s in steps]

    # -- writing -----------------------------------------------------------------------------
    def write_witness(self, values: Any, *, run: str | None = None) -> None:
        """Write the witness (pre-alignment) activations: (layer, example, hidden), per run
        when the store was created with `witness_per_run=True`."""
        w = self._arr["witness"]
        slab_shape = (len(self.layers), len(self.examples), self.hidden)
        per_run = len(w.shape) == 4
        if per_run and run is None:
            raise ValueError("this store keeps one witness per run: pass `run=`")
        if not per_run and run is not None:
            raise ValueError("this store keeps one shared witness: do not pass `run=`")
        arr = _as_float_block("witness", values, slab_shape, self.dtype)
        attrs = self._group.attrs
        digests = _witness_digests(self._group) if "digest" in self._arr else None
        update: dict[str, Any] = {}
        if per_run:
            ri = self._run_idx(run)  # type: ignore[arg-type]
            w[ri] = arr
            done: set[str] = {str(r) for r in attrs.get("witness_runs", []) or []}  # type: ignore[union-attr]
            done.add(str(run))
            update["witness_runs"] = sorted(done)
            if len(done) == len(self.runs):
                update["witness_complete"] = True
            lead: tuple[int, ...] = (ri,)
        else:
            w[...] = arr
            update["witness_complete"] = True
            lead = ()
        if digests is not None:
            keys = [lead + rest for rest in _chunk_indices(w.shape[len(lead):], w.chunks[len(lead):])]
            for key, d in zip(keys, _stored_digests(self, "witness", keys), strict=True):
                digests["/".join(map(str, key))] = int(d)
            update["witness_digests"] = digests
        attrs.update(update)  # one metadata write: digests and completion together
        self._consolidate()

    def write_slab(
        self,
        run: str,
        step: int,
        acts: Any,
        *,
        behavior: Any = None,
        task: float | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write one (run, step) slab; it becomes visible only when fully written."""
        self.write_slabs(
            run,
            [step],
            np.asarray(acts)[None],
            behavior=None if behavior is None else np.asarray(behavior)[None],
            task=None if task is None else [task],
            overwrite=overwrite,
        )

    def write_slabs(
        self,
        run: str,
        steps: Sequence[int],
        acts: Any,
        *,
        behavior: Any = None,
        task: Sequence[float] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write several steps of one run: `acts` (step, layer, example, hidden)."""
        steps = [int(s) for s in steps]
        if len(set(steps)) != len(steps):
            raise ValueError("`steps` has duplicated entries")
        ri = self._run_idx(run)
        n = len(steps)
        block = _as_float_block(
            "acts", acts, (n, len(self.layers), len(self.examples), self.hidden), self.dtype
        )
        beh = None
        if behavior is not None:
            if "behavior" not in self._arr:
                raise SchemaError(
                    "this store has no `behavior` variable: create it with behavior=True",
                    variable="behavior",
                )
            beh = np.asarray(behavior, dtype=np.float32)
            if beh.shape != (n, len(self.examples)):
                raise ValueError(
                    f"`behavior` has shape {beh.shape}; expected (step, example) = "
                    f"{(n, len(self.examples))}"
                )
            ok = np.isnan(beh) | (beh == 0) | (beh == 1)
            if not ok.all():
                raise ValueError("`behavior` must hold 0/1 outcomes (NaN for unknown)")
        tk = None
        if task is not None:
            if "task" not in self._arr:
                raise SchemaError(
                    "this store has no `task` variable: create it with task={...}", variable="task"
                )
            tk = np.asarray(task, dtype=np.float64).reshape(-1)
            if tk.shape != (n,):
                raise ValueError(f"`task` needs one value per step ({n}), got shape {tk.shape}")
            if np.isinf(tk).any():
                raise ValueError(
                    f"`task` has infinite value(s) {tk[np.isinf(tk)][:3].tolist()}: pass a finite "
                    "task metric per step (NaN, or omitting `task`, means not measured)"
                )
        sis = self._ensure_steps(steps)
        complete = self._arr["complete"]
        idx = np.asarray(sis, dtype=np.int64)
        # One zarr call per array (orthogonal indexing), not one per slab: each call has a
        # fixed cost that dominated small writes.
        done = np.asarray(complete.oindex[ri, idx], dtype=bool).reshape(-1)
        if done.any():
            if not overwrite:
                already = [s for s, d in zip(steps, done, strict=True) if d]
                raise RevstatsError(
                    f"run {run!r} already has complete slab(s) at step(s) {already[:5]}; "
                    "pass overwrite=True to replace them (or skip them: see `has_slab`)"
                )
            complete.oindex[ri, idx[done]] = False  # un-publish before rewriting
        digest = self._arr.get("digest")
        if digest is not None:  # a manifest records every chunk of a slab: write each one
            if "behavior" in self._arr and beh is None:
                beh = np.full((n, len(self.examples)), np.nan, np.float32)
            if "task" in self._arr and tk is None:
                tk = np.full(n, np.nan)
        acts_digests = None
        if self._direct is not None and self._direct.chunks[:2] == (1, 1) and self._direct.chunks[2:] == block.shape[1:]:
            acts_digests = self._write_direct(ri, idx, block)
        else:
            self._acts.oindex[ri, idx] = block
        if beh is not None:
            self._arr["behavior"].oindex[ri, idx] = beh
        if tk is not None:
            self._arr["task"].oindex[ri, idx] = tk
        if digest is not None:
            # the manifest: each chunk's digest bound to (array, run, step, chunk), written as
            # one object per run and batch, after the data and before the markers
            rows = np.full((n, digest.shape[2]), _DIGEST_UNSET, dtype=np.int64)
            for (name, tail), k in self._digest_index.items():
                if name == "acts" and acts_digests is not None:
                    rows[:, k] = acts_digests
                    continue
                keys = [(ri, int(si), *tail) for si in idx]
                rows[:, k] = _stored_digests(self, name, keys)
            digest.oindex[ri, idx] = rows
        # publish: the markers, written only after all of the data (one object per batch)
        complete.oindex[ri, idx] = np.ones(n, dtype=bool)

    def _write_direct(self, ri: int, idx: Any, block: np.ndarray) -> list[int]:
        """One chunk file per slab, written straight from `block` (same bytes zarr writes;
        ~5x faster than zarr's async pipeline for big slabs, see docs/scaling.md)."""
        direct = self._direct
        assert direct is not None
        jobs = [((ri, int(si)) + (0,) * (direct.ndim - 2), block[k][None, None]) for k, si in enumerate(np.asarray(idx).reshape(-1))]
        from revstats.store._chunkio import run_jobs

        return run_jobs(lambda job: direct.write_chunk(*job), jobs, 4)

    def finish(self) -> None:
        """Declare the writer's job done: slabs still missing were never planned (e.g. a run
        without that checkpoint), so readers call the store complete. Writers that fill every
        (run, step) slab need not call it."""
        self._group.attrs["finished"] = True
        self._consolidate()

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:  # not `contextlib.suppress`: at interpreter exit the module may be torn down
            self.close()
        except Exception:  # noqa: BLE001
            pass


#: The (run, step, ...) arrays a writer grows along `step`, in the order it resizes them.
_STEP_ARRAYS = ("acts", "behavior", "task", "complete", "digest")

_DIGEST_EMPTY = -2  # the chunk holds only the fill value, so zarr stored no object for it


def _chunk_indices(shape: Sequence[int], chunks: Sequence[int]) -> list[tuple[int, ...]]:
    import itertools

    return list(itertools.product(*[range(max(1, -(-int(n) // int(c)))) for n, c in zip(shape, chunks, strict=True)]))


def _digest_layout(acts_shape: Sequence[int], acts_chunks: Sequence[int], behavior: bool, task: bool) -> list[list[Any]]:
    """The manifest's entries per slab: [array, chunk index after (run, step)]."""
    entries: list[list[Any]] = [["acts", list(t)] for t in _chunk_indices(acts_shape[2:], acts_chunks[2:])]
    if behavior:
        entries.append(["behavior", [0]])
    if task:
        entries.append(["task", []])
    return entries


def _digest_index(digest: Any) -> dict[tuple[str, tuple[int, ...]], int]:
    if digest is None:
        return {}
    entries = digest.attrs.get("entries") or []
    return {(str(name), tuple(int(i) for i in tail)): k for k, (name, tail) in enumerate(entries)}


def _stored_digests(writer: Any, name: str, keys: Sequence[tuple[int, ...]]) -> list[int]:
    """The crc32c each chunk object ends with (the crc32c codec's checksum), as written."""
    return _tail_digests(writer.path, writer._group, name, keys)


def _tail_digests(path: str, g: zarr.Group, name: str, keys: Sequence[tuple[int, ...]]) -> list[int]:
    out: list[int] = []
    if _is_local(path):
        root = _local_path(path)
        for key in keys:
            f = os.path.join(root, name, "c", *map(str, key))
            try:
                fd = os.open(f, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
            except FileNotFoundError:
                out.append(_DIGEST_EMPTY)
                continue
            try:
                size = os.fstat(fd).st_size
                tail = os.pread(fd, 4, max(0, size - 4))
            finally:
                os.close(fd)
            out.append(int(np.frombuffer(tail, "<u4")[0]) if len(tail) == 4 else _DIGEST_UNSET)
        return out
    from zarr.abc.store import SuffixByteRequest
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    for key in keys:
        buf = sync(g.store.get(f"{name}/c/" + "/".join(map(str, key)), prototype=default_buffer_prototype(),
                               byte_range=SuffixByteRequest(4)))
        if buf is None:
            out.append(_DIGEST_EMPTY)
        else:
            raw = buf.to_bytes()
            out.append(int(np.frombuffer(raw, "<u4")[0]) if len(raw) == 4 else _DIGEST_UNSET)
    return out


def _array(g: zarr.Group, name: str) -> Any:
    """A member array (typed loosely: zarr types `group[name]` as Array | Group)."""
    return g[name]


def _take_lock(path: str) -> int | None:
    if not _is_local(path):
        return None
    import fcntl

    # Lock the store directory itself: a lock file inside would be an unknown object to other
    # zarr readers, and the kernel drops the lock when the process dies (even by SIGKILL).
    fd = os.open(_local_path(path), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RevstatsError(
            f"store {path!r} is open by another writer; wait for it to finish (one writer at a "
            "time keeps every slab whole)"
        ) from None
    try:
        same = os.fstat(fd).st_ino == os.stat(_local_path(path)).st_ino
    except OSError:
        same = False
    if not same:  # the directory was replaced (or removed) between open and lock
        os.close(fd)
        raise RevstatsError(
            f"store {path!r} was replaced by another process while being opened; "
            "check that no other writer is running and retry"
        )
    return fd


#: Left in a store directory while `overwrite` empties it: the old root `zarr.json`, renamed.
#: From the rename on, the directory is visibly not a store (readers refuse it) and visibly
#: the remnant of an interrupted overwrite, which the next writer may finish emptying.
_CLEARING = ".revstats-overwrite-in-progress"


def _interrupted_overwrite(local: str) -> bool:
    """True for a directory that a writer killed while emptying it for `overwrite` left: the
    clearing marker (a regular file) and nothing but store members and temporary files."""
    try:
        if not stat.S_ISREG(os.lstat(os.path.join(local, _CLEARING)).st_mode):
            return False
        entries = os.listdir(local)
    except OSError:
        return False
    return all(e == _CLEARING or e in _STORE_MEMBERS or e.endswith(".partial") for e in entries)


def _clear_store_dir(path: str, local: str) -> None:
    """Empty the locked store directory for `overwrite` (the directory itself stays: it
    carries the lock). Refuses a directory that is not a store, so `--overwrite` pointed at
    the wrong place loses nothing; finishes the job of an overwrite that was killed midway."""
    entries = os.listdir(local)
    if "zarr.json" in entries:
        # one atomic rename first: a kill from here on leaves a directory that readers refuse
        # and that the next writer recognises (`_interrupted_overwrite`) and empties
        os.replace(os.path.join(local, "zarr.json"), os.path.join(local, _CLEARING))
    elif not _interrupted_overwrite(local):
        raise RevstatsError(
            f"{path!r} is a non-empty directory but not a store (no zarr.json): refusing to "
            "delete its contents even with overwrite; pass a new path or remove it yourself"
        )
    for entry in os.listdir(local):
        if entry == _CLEARING:
            continue
        full = os.path.join(local, entry)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(full)
    os.unlink(os.path.join(local, _CLEARING))  # last: the directory is empty now


def _open_group(
    path: str, mode: str, storage_options: Mapping[str, Any] | None, *, consolidated: bool | None = False
) -> zarr.Group:
    # Writers and checkers read each array's own metadata (never a stale consolidated copy);
    # readers use the consolidated view, which is swapped atomically after each change.
    kwargs: dict[str, Any] = {"mode": mode, "zarr_format": 3}
    if mode not in ("w", "w-"):
        kwargs["use_consolidated"] = consolidated
    if storage_options:
        kwargs["storage_options"] = dict(storage_options)
    try:
        with _quiet_consolidated():
            return zarr.open_group(store=str(path), **kwargs)
    except (ValueError, TypeError, KeyError) as e:  # zarr's JSON/metadata parse errors
        bad = _unreadable_metadata(path)
        if bad:
            raise SchemaError("; ".join(bad), variable=None) from e
        if _is_local(path) and os.path.isfile(os.path.join(_local_path(path), "zarr.json")):
            # valid JSON that zarr refuses: an edited data_type/fill_value/codec, in an array's
            # own zarr.json or in the root's consolidated copy of it
            raise SchemaError(
                f"the store's metadata is not valid zarr v3 ({type(e).__name__}: {e}): an "
                "array's data_type, fill_value or codecs in a zarr.json (or the root's "
                "consolidated copy) were edited or written by an incompatible tool; restore it "
                "from a backup or recreate the store", variable=None) from e
        raise


def _unreadable_metadata(path: str) -> list[str]:
    """Problems with the zarr.json documents of a local store (truncated, not JSON, not a
    zarr v3 node); empty for remote stores, which put whole objects."""
    if not _is_local(path):
        return []
    local = _local_path(path)
    docs = [("root", os.path.join(local, "zarr.json"))]
    if os.path.isdir(local):
        docs += [
            (f"`{name}`", os.path.join(local, name, "zarr.json"))
            for name in sorted(os.listdir(local))
            if os.path.isfile(os.path.join(local, name, "zarr.json"))
        ]
    problems = []
    for label, doc in docs:
        if not os.path.isfile(doc):
            continue
        try:
            with open(doc, encoding="utf-8") as f:
                meta = json.load(f)
            ok = isinstance(meta, dict) and meta.get("zarr_format") == 3 and "node_type" in meta
        except (OSError, ValueError):
            ok = False
        if not ok:
            problems.append(
                f"{label} metadata document {doc!r} is truncated or corrupt (not a valid zarr v3 "
                "zarr.json): restore it from a backup or recreate the store"
            )
    return problems


def create_store(
    path: str | os.PathLike[str],
    *,
    runs: Sequence[str],
    layers: Sequence[str],
    examples: Sequence[str],
    hidden: int,
    steps: Sequence[int] = (),
    arms: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    dtype: str | np.dtype = "float32",
    witness_per_run: bool = False,
    behavior: bool = True,
    task: Mapping[str, Any] | None = None,
    source: str,
    provenance: Mapping[str, Any],
    overwrite: bool = False,
    compressor: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    resume: bool = False,
) -> StoreWriter:
    """Create an empty store and return a writer for it.

    Parameters
    ----------
    path : local path or fsspec URL (``memory://``, ``s3://`` …).
    runs, layers, examples : unique string ids.
    hidden : size of the hidden dimension.
    steps : training steps known in advance (more are appended by `write_slab`).
    arms, seeds : per-run coordinates (``arm`` defaults to "control", ``seed`` to -1).
    dtype : "float32" or "float16" (values beyond float16's range are refused on write).
    witness_per_run : one witness per run instead of one shared witness.
    behavior : create the ``behavior`` (run, step, example) variable.
    task : attrs of the ``task`` (run, step) variable, e.g. ``{"metric": "loss",
        "higher_is_better": False}``; None for no task variable.
    source : one of "simulator", "organism", "capture", "ingest".
    provenance : JSON-serialisable description (command, config, seeds, model ids); the
        revstats version and creation time are added.
    compressor : None (raw bytes + crc32c checksum, the fastest) or "zstd".
    resume : if `path` already holds a store created with exactly these arguments (layout,
        coordinates, dtype, source and provenance, apart from the creation time), return a
        writer on it instead of refusing: slabs already complete are kept (skip them with
        `StoreWriter.has_slab`), so rerunning a killed command finishes its work without
        duplicating it. A store created differently is refused, naming what differs.

    A directory left by a writer killed *during* creation (a zarr group without the revstats
    attributes and holding only revstats arrays) holds no data and is replaced.
    """
    path = os.fspath(path)
    run_ids = _check_ids(runs, "runs")
    layer_ids = _check_ids(layers, "layers")
    example_ids = _check_ids(examples, "examples")
    step_arr = _check_steps(steps)
    if not isinstance(hidden, (int, np.integer)) or hidden < 1:
        raise ValueError(f"`hidden` must be a positive integer, got {hidden!r}")
    dt = np.dtype(dtype)
    if dt not in (np.dtype("float32"), np.dtype("float16")):
        raise ValueError(f"`dtype` must be 'float32' or 'float16', got {dt}")
    if source not in SOURCES:
        raise ValueError(f"`source` must be one of {SOURCES}, got {source!r}")
    arm_ids = np.array(["control"] * len(run_ids), dtype=object)
    if arms is not None:
        if len(arms) != len(run_ids):
            raise ValueError(f"`arms` needs one entry per run ({len(run_ids)}), got {len(arms)}")
        arm_ids = np.array([str(a) for a in arms], dtype=object)
        for a in arm_ids:
            _check_id_text(a, "arms")
    seed_arr = np.full(len(run_ids), -1, dtype=np.int64)
    if seeds is not None:
        if len(seeds) != len(run_ids):
            raise ValueError(f"`seeds` needs one entry per run ({len(run_ids)}), got {len(seeds)}")
        try:
            seed_arr = np.asarray([int(x) for x in seeds], dtype=np.int64)
        except (OverflowError, TypeError, ValueError):
            raise ValueError(f"`seeds` must be integers that fit 64 bits, got {list(seeds)[:4]}") from None
    if task is not None and "higher_is_better" in task and not isinstance(task["higher_is_better"], (bool, np.bool_)):
        raise ValueError(f"`task['higher_is_better']` must be True or False, got "
                         f"{task['higher_is_better']!r}: a string such as 'no' would read as true")
    if compressor not in (None, "zstd"):
        raise ValueError(f"`compressor` must be None or 'zstd', got {compressor!r}")
    try:
        prov_text = json.dumps(
            {**dict(provenance), "revstats_version": __version__, "created": _now()},
            default=str,
        )
    except TypeError as e:
        raise TypeError(f"`provenance` must be JSON-serialisable: {e}") from None

    lock_fd: int | None = None
    if _is_local(path):
        local = _local_path(path)
        if os.path.lexists(local) and not os.path.isdir(local):
            raise RevstatsError(
                f"{path!r} exists and is not a directory: pass a new path for the store"
            )
        os.makedirs(local, exist_ok=True)
        handed = False
        # The lock comes first: nothing inside the directory is looked at, kept or deleted
        # (not even with `overwrite`) while another writer holds it.
        lock_fd = _take_lock(path)
        try:
            if not overwrite and _aborted_creation(local):
                overwrite = True  # a killed create_store left no data: start it again
            if resume and not overwrite and os.path.exists(os.path.join(local, "zarr.json")):
                handed, fd = True, lock_fd  # the writer owns the lock from here on
                return _resume_writer(
                    path,
                    storage_options,
                    fd,
                    expected={
                        "runs": run_ids.tolist(), "arms": arm_ids.tolist(), "seeds": seed_arr.tolist(),
                        "layers": layer_ids.tolist(), "examples": example_ids.tolist(),
                        "steps": step_arr.tolist(), "hidden": int(hidden), "dtype": str(dt),
                        "witness_per_run": bool(witness_per_run), "behavior": bool(behavior),
                        "task": None if task is None else json.loads(json.dumps(dict(task), default=str)),
                        "source": source,
                        "provenance": json.loads(prov_text),
                    },
                )
            if os.listdir(local):
                if not overwrite:
                    raise RevstatsError(
                        f"{path!r} exists and is not empty; pass overwrite=True (--overwrite) to "
                        "replace it, or open it with open_writer to append"
                    )
                _clear_store_dir(path, local)
        except BaseException:
            if not handed and lock_fd is not None:
                os.close(lock_fd)
            raise
    try:
        # zarr's mode "w" would delete and recreate the directory we hold the lock on
        g = _open_group(path, "w-" if lock_fd is not None else "w", storage_options)
        nR, nS, nL, nE = len(run_ids), len(step_arr), len(layer_ids), len(example_ids)
        compressors: list[Any] = [Crc32cCodec()]
        if compressor == "zstd":
            compressors = [ZstdCodec(level=1), Crc32cCodec()]

        def coord(name: str, values: np.ndarray, dims: tuple[str, ...], **kw: Any) -> None:
            dtype_ = str if values.dtype == object else values.dtype
            arr = g.create_array(
                name, shape=values.shape, dtype=dtype_, dimension_names=dims,
                chunks=(max(len(values), 1),) if name != "step" else (1024,), **kw,
            )
            if values.size:
                arr[...] = values

        coord("run", run_ids, ("run",))
        coord("arm", arm_ids, ("run",))
        coord("seed", seed_arr, ("run",))
        coord("step", step_arr, ("step",), fill_value=_STEP_UNSET)
        coord("layer", layer_ids, ("layer",))
        coord("example", example_ids, ("example",))
        run_coords = {"coordinates": "arm seed"}
        g.create_array(
            "acts", shape=(nR, nS, nL, nE, int(hidden)), dtype=dt,
            chunks=_acts_chunks(nL, nE, int(hidden), dt.itemsize), fill_value=np.nan,
            dimension_names=ACTS_DIMS, compressors=compressors,
            attributes={**run_coords, "long_name": "probe activations"},
        )
        w_dims: tuple[str, ...] = ("layer", "example", "hidden")
        w_shape: tuple[int, ...] = (nL, nE, int(hidden))
        if witness_per_run:
            w_dims, w_shape = ("run", *w_dims), (nR, *w_shape)
        g.create_array(
            "witness", shape=w_shape, dtype=dt,
            chunks=(1,) * (len(w_shape) - 3) + _acts_chunks(nL, nE, int(hidden), dt.itemsize)[2:],
            fill_value=np.nan, dimension_names=w_dims, compressors=compressors,
            attributes={"long_name": "pre-alignment (witness) activations"},
        )
        if behavior:
            g.create_array(
                "behavior", shape=(nR, nS, nE), dtype="float32", chunks=(1, 1, max(nE, 1)),
                fill_value=np.nan, dimension_names=("run", "step", "example"),
                compressors=compressors,
                attributes={**run_coords, "long_name": "suppressed behaviour (1) per probe"},
            )
        if task is not None:
            g.create_array(
                "task", shape=(nR, nS), dtype="float64", chunks=(1, 1), fill_value=np.nan,
                dimension_names=("run", "step"), compressors=compressors,
                attributes={**run_coords, **dict(task)},
            )
        marker_steps = max(nS, _MARKER_STEPS)
        g.create_array(
            "complete", shape=(nR, nS), dtype="bool", chunks=(1, marker_steps), fill_value=False,
            dimension_names=("run", "step"), compressors=[Crc32cCodec()],
            attributes={**run_coords, "long_name": "slab fully written"},
        )
        acts_chunks = _acts_chunks(nL, nE, int(hidden), dt.itemsize)
        entries = _digest_layout((nR, nS, nL, nE, int(hidden)), acts_chunks, behavior, task is not None)
        g.create_array(
            "digest", shape=(nR, nS, len(entries)), dtype="int64",
            chunks=(1, marker_steps, len(entries)), fill_value=_DIGEST_UNSET,
            dimension_names=("run", "step", "chunk"), compressors=[Crc32cCodec()],
            attributes={"long_name": "crc32c of each chunk of a slab, bound to its place",
                        "entries": entries},
        )
        g.attrs.update(
            {
                "revstats_schema": SCHEMA_VERSION,
                "source": source,
                "provenance": prov_text,
                "witness_complete": False,
                "witness_digests": {},
                "finished": False,
            }
        )
        with _quiet_consolidated():
            zarr.consolidate_metadata(g.store)
        return StoreWriter(path, g, lock_fd)
    except BaseException:
        if lock_fd is not None:
            os.close(lock_fd)
        raise


_STORE_MEMBERS = frozenset(
    {"run", "arm", "seed", "step", "layer", "example", "acts", "witness", "behavior", "task", "complete",
     "digest"}
)


def _aborted_creation(local: str) -> bool:
    """True for a directory that a `create_store` killed before it finished left behind.

    Creation writes the root group, then the arrays, then the revstats attributes; until those
    attributes exist no slab can have been written, so such a directory holds no data.
    """
    if _interrupted_overwrite(local):
        return True  # the old store was being deleted on request: nothing in it is kept
    meta = os.path.join(local, "zarr.json")
    if not os.path.isfile(meta):
        return False
    try:
        with open(meta, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return False  # unreadable metadata: let the caller refuse it, never delete it
    if not isinstance(doc, dict) or doc.get("node_type") != "group":
        return False
    if "revstats_schema" in (doc.get("attributes") or {}):
        return False
    for entry in os.listdir(local):
        if entry == "zarr.json" or entry.endswith(".partial"):
            continue
        if entry not in _STORE_MEMBERS:
            return False
    return True


def _resume_writer(
    path: str, storage_options: Mapping[str, Any] | None, lock_fd: int | None, *,
    expected: Mapping[str, Any],
) -> StoreWriter:
    """Open the existing store at `path` for appending if it was created as `expected` says
    (`lock_fd`: the writer lock already held; the writer owns it from here on)."""
    writer = _writer_with_lock(path, storage_options, lock_fd)
    try:
        g = writer._group
        found: dict[str, Any] = {
            "runs": writer.runs, "arms": [str(a) for a in _array(g, "arm")[:]],
            "seeds": [int(s) for s in _array(g, "seed")[:]], "layers": writer.layers,
            "examples": writer.examples, "steps": writer.steps[: len(expected["steps"])],
            "hidden": writer.hidden, "dtype": str(writer.dtype),
            "witness_per_run": len(writer._arr["witness"].shape) == 4,
            "behavior": "behavior" in writer._arr,
            "task": None if "task" not in writer._arr else {
                k: v for k, v in writer._arr["task"].attrs.items() if k != "coordinates"
            },
            "source": g.attrs.get("source"),
        }
        try:
            found["provenance"] = json.loads(str(g.attrs.get("provenance", "{}")))
        except json.JSONDecodeError:
            found["provenance"] = g.attrs.get("provenance")
        want = dict(expected)
        for prov in (found["provenance"], want["provenance"]):
            if isinstance(prov, dict):  # when and how it was invoked does not change the data
                prov.pop("created", None)
                prov.pop("command", None)
        differ = [k for k in want if found.get(k) != want[k]]
        if differ:
            raise RevstatsError(
                f"store {path!r} exists but was created with different {', '.join(differ)}: "
                "rerun with the original settings to resume it, or pass overwrite=True "
                "(--overwrite) / a new path to start over"
            )
        return writer
    except BaseException:
        writer.close()
        raise


def _comparable_provenance(prov: Any) -> Any:
    if isinstance(prov, str):
        try:
            prov = json.loads(prov)
        except json.JSONDecodeError:
            return prov
    if isinstance(prov, dict):  # when and how it was invoked does not change the data
        prov = {k: v for k, v in prov.items() if k not in ("created", "command", "revstats_version")}
    return json.loads(json.dumps(prov, default=str))


def check_writable(
    path: str | os.PathLike[str],
    *,
    overwrite: bool,
    provenance: Mapping[str, Any] | None = None,
) -> None:
    """Refuse, before any work is done, a store path a writer could not use.

    Raises `RevstatsError` naming the fix when `path` is a file, is held by another writer
    (also with `overwrite`), is a non-empty directory that is not a store, or (without
    `overwrite`) holds a store whose provenance differs from `provenance` (None: any existing
    store is refused). Remote paths are not checked.
    """
    path = os.fspath(path)
    if not _is_local(path):
        return
    local = _local_path(path)
    if not os.path.lexists(local):
        return
    if not os.path.isdir(local) or os.path.islink(local):
        raise RevstatsError(f"{path!r} exists and is not a store directory: pass a new path")
    fd = _take_lock(path)
    if fd is None:  # not a local path after all
        return
    try:
        entries = os.listdir(local)
        if not entries or _aborted_creation(local):
            return
        if "zarr.json" not in entries:
            raise RevstatsError(
                f"{path!r} is a non-empty directory but not a store (no zarr.json): pass a new "
                "path (--overwrite never deletes a directory that is not a store)"
            )
        if overwrite:
            return
        if provenance is None:
            raise RevstatsError(
                f"{path!r} already holds a store; pass --overwrite to replace it, or a new path"
            )
        try:
            with open(os.path.join(local, "zarr.json"), encoding="utf-8") as f:
                old = (json.load(f).get("attributes") or {}).get("provenance")
        except (OSError, ValueError, AttributeError):
            old = None
        if _comparable_provenance(old) != _comparable_provenance(dict(provenance)):
            raise RevstatsError(
                f"store {path!r} exists but was written with different settings (its provenance "
                "differs): rerun with the original settings to resume it, or pass --overwrite / "
                "a new path to start over"
            )
    finally:
        os.close(fd)


def replace_store(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Move the finished local store `src` to `dst`, replacing a store there only while
    holding its writer lock (refused, with nothing changed, when another writer holds it)."""
    src, dst = os.fspath(src), os.fspath(dst)
    if not os.path.lexists(dst):
        os.replace(src, dst)
        return
    fd = _take_lock(dst)
    if fd is None:
        raise RevstatsError(f"{dst!r}: replace_store works on local stores only")
    try:
        if "zarr.json" not in os.listdir(dst) and os.listdir(dst) and not _interrupted_overwrite(dst):
            raise RevstatsError(f"{dst!r} is a non-empty directory but not a store: refusing to replace it")
        trash = f"{dst}.old-{os.getpid()}"
        os.replace(dst, trash)
        os.replace(src, dst)
    finally:
        os.close(fd)
    shutil.rmtree(trash, ignore_errors=True)


def open_writer(
    path: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> StoreWriter:
    """Open an existing store to append slabs (resuming an interrupted writer)."""
    path = os.fspath(path)
    _check_exists(path)
    return _writer_with_lock(path, storage_options, _take_lock(path))


def _writer_with_lock(
    path: str, storage_options: Mapping[str, Any] | None, lock_fd: int | None
) -> StoreWriter:
    try:
        _scan_store(path)  # a writer must never write through a link out of the store
        g = _open_group(path, "r+", storage_options)
        if "revstats_schema" not in g.attrs or "acts" not in g or "step" not in g:
            _validate_group(g, path)  # not a revstats store at all: say so before touching it
        if g.attrs.get("finished"):
            g.attrs["finished"] = False  # being written again: not finished until it says so
        writer = StoreWriter(path, g, lock_fd)  # finishes a growth a killed writer left half done
        _validate_group(g, path)
        return writer
    except BaseException:
        if lock_fd is not None:
            os.close(lock_fd)
        raise


#: Largest zarr.json a store may hold (the consolidated root document of a big store is ~1 MB).
MAX_METADATA_BYTES = 64 * 2**20


def _chunk_size_bound(meta: Mapping[str, Any]) -> int | None:
    """Largest size a chunk object of the array described by `meta` (its zarr.json) can have,
    or None when the layout is not one this store writes (then only the metadata bound holds)."""
    try:
        chunk = [int(n) for n in meta["chunk_grid"]["configuration"]["chunk_shape"]]
        dtype = str(meta["data_type"])
        codecs = [str(c["name"]) for c in meta["codecs"]]
    except (KeyError, TypeError, ValueError):
        return None
    n = int(np.prod(chunk)) if chunk else 1
    if dtype == "string":
        # vlen-utf8: a 4-byte length per item, then the bytes (ids are <= MAX_ID_LENGTH chars)
        return 64 + n * (4 + 4 * MAX_ID_LENGTH) + 4 * len(codecs)
    try:
        raw = n * np.dtype(dtype).itemsize
    except TypeError:
        return None
    if codecs == ["bytes", "crc32c"]:
        return raw + 4
    return raw + raw // 64 + 4096  # zstd frames never grow incompressible data by more


def _scan_store(path: str) -> None:
    """Refuse a local store holding anything but regular files and directories inside its
    root (symlinks, FIFOs, devices, sockets), or files larger than their metadata allows.

    Readers (ours and zarr's) open chunk files by name: a FIFO would hang them, a symlink to
    /dev/zero would feed them forever, a symlink out of the store would read (or, for a
    writer, write) files elsewhere. Only `lstat` is used here, so nothing is opened or followed.
    """
    if not _is_local(path):
        return
    root = _local_path(path)
    bounds: dict[str, int | None] = {}
    docs: dict[str, Any] = {}  # parsed zarr.json of the root ("") and of each member
    n_chunks: dict[str, int] = {}
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except FileNotFoundError:
            continue  # removed while we looked (a writer replacing the store): nothing to read
        except OSError as err:
            raise SchemaError(f"store {path!r}: cannot list {d!r} ({err})", variable=None) from None
        for e in entries:
            if e.name.endswith(".partial"):
                continue  # a writer's temporary file (renamed into place or left by a kill): never read
            rel = os.path.relpath(e.path, root)
            if e.is_symlink():
                raise SchemaError(
                    f"store {path!r} holds a symbolic link {rel!r} -> {os.readlink(e.path)!r}: "
                    "stores are read only from regular files inside their directory; replace the "
                    "link with the file it points to (or recreate the store)",
                    variable=None,
                )
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
                continue
            if not e.is_file(follow_symlinks=False):
                raise SchemaError(
                    f"store {path!r} holds {rel!r}, which is not a regular file (a FIFO, device or "
                    "socket): refusing to read it; remove it and restore the chunk from a backup",
                    variable=None,
                )
            try:
                size = e.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue  # renamed or removed by a concurrent writer since the listing
            parts = rel.split(os.sep)
            if parts[-1] == "zarr.json":
                if size > MAX_METADATA_BYTES:
                    raise SchemaError(
                        f"store {path!r}: metadata document {rel!r} is {size} bytes (more than "
                        f"{MAX_METADATA_BYTES}): not a revstats store's metadata; recreate the store",
                        variable=None,
                    )
                if len(parts) <= 2:  # the root's and each member's: zarr parses them next
                    docs[parts[0] if len(parts) == 2 else ""] = _metadata_doc(path, e.path, rel)
                continue
            if len(parts) >= 3 and parts[1] == "c":
                member = parts[0]
                n_chunks[member] = n_chunks.get(member, 0) + 1
                if member not in bounds:
                    bounds[member] = _member_bound(os.path.join(root, member, "zarr.json"))
                bound = bounds[member]
                if bound is not None and size > bound:
                    raise SchemaError(
                        f"store {path!r}: chunk {rel!r} is {size} bytes, more than the {bound} "
                        f"bytes a chunk of `{member}` can hold (per its metadata): the store is "
                        "damaged or hostile; restore the chunk from a backup or recreate the store",
                        variable=member,
                    )
    _check_layouts(path, docs, n_chunks)


#: 1-D coordinates, always written in full: each needs its chunk files on disk.
_COORDS = (*COORD_DIMS, *RUN_COORDS)


def _metadata_doc(path: str, full: str, rel: str) -> Any:
    """Parse one (size-checked, regular) zarr.json. Unparsable documents give None: readers
    report them by name (truncated metadata); JSON nested too deeply for any parser is refused
    here, before zarr's parser meets it."""
    try:
        with open(full, "rb") as f:
            return json.loads(f.read())
    except RecursionError:
        raise SchemaError(
            f"store {path!r}: metadata document {rel!r} is nested too deeply to be zarr "
            "metadata (the store is damaged or hostile); recreate the store",
            variable=None,
        ) from None
    except (OSError, ValueError):
        return None


def _check_layouts(path: str, docs: Mapping[str, Any], n_chunks: Mapping[str, int]) -> None:
    """Every array's shape and chunk shape (its own and the consolidated copy) are lists of
    whole numbers, and a coordinate is no longer than the chunk files on disk can hold - an
    edited `shape` of 10**12 steps must not make a reader allocate terabytes."""
    described: list[tuple[str, str, Any]] = []
    for name, meta in docs.items():
        if name and isinstance(meta, dict):
            described.append((name, f"{name}/zarr.json", meta))
    root = docs.get("")
    cons = root.get("consolidated_metadata") if isinstance(root, dict) else None
    entries = cons.get("metadata") if isinstance(cons, dict) else None
    if isinstance(entries, dict):
        described += [(str(n), f"zarr.json (consolidated copy of `{n}`)", m) for n, m in entries.items()]
    for name, where, meta in described:
        if not isinstance(meta, dict) or meta.get("node_type") != "array":
            continue
        shape = meta.get("shape")
        grid = meta.get("chunk_grid")
        config = grid.get("configuration") if isinstance(grid, dict) else None
        chunks = config.get("chunk_shape") if isinstance(config, dict) else None
        whole = isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)
        if not (whole and isinstance(chunks, list) and len(chunks) == len(shape)
                and all(type(n) is int and n >= 1 for n in chunks)):
            raise SchemaError(
                f"store {path!r}: {where} gives `{name}` the shape {shape!r} and chunk shape "
                f"{chunks!r}; both must be lists of whole numbers of the same length (chunk sizes "
                "at least 1): the metadata was edited or damaged; recreate the store",
                variable=name,
            )
        if name in _COORDS and len(shape) == 1 and shape[0] > 0:
            needed = -(-shape[0] // chunks[0])
            held = n_chunks.get(name, 0)
            if needed > held + 1:  # a killed writer may leave the last chunk unwritten
                raise SchemaError(
                    f"store {path!r}: {where} says coordinate `{name}` has {shape[0]} values "
                    f"({needed} chunks) but the store holds {held} chunk file(s) of it: the "
                    "metadata was edited or the store is damaged; recreate the store",
                    variable=name,
                )


def _member_bound(doc: str) -> int | None:
    try:
        if os.path.getsize(doc) > MAX_METADATA_BYTES:
            return None
        with open(doc, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return _chunk_size_bound(meta) if isinstance(meta, dict) else None


def _check_exists(path: str) -> None:
    if _is_local(path):
        local = _local_path(path)
        if not os.path.exists(local):
            raise FileNotFoundError(f"no store at {path!r}: check the path")
        if not os.path.isdir(local):
            raise SchemaError(
                f"{path!r} is not a store directory (it is a file): point at the store "
                "directory itself",
                variable=None,
            )
        if _interrupted_overwrite(local):
            raise SchemaError(
                f"{path!r} holds no store: a writer run with --overwrite was stopped while it "
                "deleted the old store here; rerun that command to write the new one",
                variable=None,
            )
        if not os.path.exists(os.path.join(local, "zarr.json")):
            raise SchemaError(
                f"{path!r} is not a zarr v3 store (no zarr.json): point at the store directory, "
                "or create one with `revstats simulate`, `revstats capture` or `revstats ingest`",
                variable=None,
            )
        _scan_store(path)


def _array_layout(g: zarr.Group) -> dict[str, tuple[tuple[str, ...], tuple[int, ...], np.dtype]]:
    out: dict[str, tuple[tuple[str, ...], tuple[int, ...], np.dtype]] = {}
    with warnings.catch_warnings():
        # a member whose metadata is missing is reported by our own validation (by name), so
        # zarr's generic warning would only duplicate it on stderr
        warnings.filterwarnings("ignore", message=".*not recognized as a component", category=UserWarning)
        members = list(g.arrays())
    for name, arr in members:
        dims = arr.metadata.dimension_names  # type: ignore[union-attr]
        if dims is None:
            dims = tuple(f"dim_{i}" for i in range(arr.ndim))
        try:
            dtype = np.dtype(arr.dtype)
        except TypeError:
            dtype = np.dtype(object)
        out[name] = (tuple(str(d) for d in dims), tuple(arr.shape), dtype)
    return out


def _validate_group(g: zarr.Group, path: str) -> None:
    raise_problems(validate_layout(dict(g.attrs), _array_layout(g)), where=f"store {path!r}")


def open_store(
    path: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    complete_only: bool = True,
    check_values: bool = False,
) -> xr.Dataset:
    """Open a store as a lazy, validated `xarray.Dataset` (dask-backed, on-disk chunks).

    With `complete_only` (default), slabs that were never completely written read as NaN and
    steps that no run completed are dropped, so a reader never sees a partial slab. The witness
    is dropped (with `attrs["revstats_notes"]` saying so) until it has been written.
    Raises `SchemaError` naming the variable for stores that do not follow the schema; with
    `check_values` it also reads every complete slab and refuses NaN/Inf (slow on big stores).
    """
    return _open_store(os.fspath(path), storage_options, complete_only, check_values)[0]


def _open_store(
    path: str, storage_options: Mapping[str, Any] | None, complete_only: bool, check_values: bool
) -> tuple[xr.Dataset, zarr.Group, Any]:
    """`open_store`, also returning the opened group and the verified manifest (None for
    schema 1), so callers such as `read_acts` need not open and check the store again."""
    _check_exists(path)
    # A store that is not finished may be growing under a writer right now: between the
    # resizes of its arrays and the new consolidated view, the arrays' own metadata disagree
    # for a moment. So an unfinished store's problems are read again a few times (<= ~1.5 s)
    # before they are reported; a finished store's are reported at once.
    delays = (0.05, 0.1, 0.2, 0.4, 0.75, 0.0)  # the last read reports what it finds
    for i, delay in enumerate(delays):
        try:
            g = _open_group(path, "r", storage_options, consolidated=None)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as e:
            raise FileNotFoundError(f"no store at {path!r}: check the path ({e})") from None
        growing = i < len(delays) - 1 and not g.attrs.get("finished", False)
        try:
            _validate_group(g, path)
        except SchemaError:
            if not growing:
                raise
            time.sleep(delay)
            continue
        problems, manifest = _integrity_problems(path, g, storage_options)
        if not problems or not growing:
            break
        time.sleep(delay)
    if problems:
        raise SchemaError(f"store {path!r}: " + "; ".join(problems) + _CHECK_HINT, variable=None)
    # A writer killed between writing the attributes and the first consolidation leaves no
    # consolidated view (and no slab either): read the members' own metadata then.
    consolidated = g.metadata.consolidated_metadata is not None
    kw: dict[str, Any] = {"consolidated": consolidated, "zarr_format": 3, "chunks": {}}
    if storage_options:
        kw["storage_options"] = dict(storage_options)
    with _quiet_consolidated():
        try:
            ds = xr.open_zarr(str(path), **kw)
        except Exception as e:
            raise SchemaError(f"store {path!r} could not be opened by xarray: {e}") from e
    if "digest" in ds:
        ds = ds.drop_vars("digest")  # bookkeeping, verified here, not data
    # markers first, data after: a slab seen complete here was whole before any read below
    complete0 = _read_complete(g, ds)
    if _is_local(path):
        ds = _fast_local_reads(ds, g, _local_path(path), manifest)
    ds = _checked_outcomes(ds, path, g, manifest, complete0)
    for name in ("run", "arm", "layer", "example"):
        if name in ds.coords:
            ds = ds.assign_coords({name: (ds[name].dims, np.array([str(v) for v in ds[name].values], dtype=object))})
    # small non-dimension coordinates are loaded, so `groupby("seed")` / `.sel` on them work
    for name in ("seed",):
        if name in ds.coords and name not in ds.dims:
            ds = ds.assign_coords({name: (ds[name].dims, np.asarray(ds[name].values))})
    notes: list[str] = []
    if not g.attrs.get("witness_complete", False):
        if "witness" in ds:
            ds = ds.drop_vars("witness")
        notes.append("witness not written")
    if complete_only:
        complete = complete0
        steps = ds["step"].values
        keep = complete.any(axis=0) & (steps != _STEP_UNSET)
        if not keep.all():
            ds = ds.isel(step=np.nonzero(keep)[0])
            complete = complete[:, keep]
        if not complete.all():
            mask = xr.DataArray(complete, dims=("run", "step"))
            for name in ("acts", "behavior", "task"):
                if name in ds:
                    ds[name] = ds[name].where(mask)
            notes.append(f"{int((~complete).sum())} incomplete slab(s) masked as NaN")
        ds["complete"] = xr.DataArray(complete, dims=("run", "step"))
    ds.attrs["revstats_store"] = str(path)
    if manifest is None:
        notes.append("schema 1 store: chunks are checksummed but not bound to their place (no "
                     "digest manifest); rewrite it with this revstats to add one")
    gap = _incomplete(g, manifest)
    if gap is not None:
        ds.attrs["revstats_incomplete"] = json.dumps(gap)
        notes.append(gap["message"])
    if notes:
        ds.attrs["revstats_notes"] = "; ".join(notes)
    check_dataset(ds)
    if check_values:
        raise_problems(schema_check_values(ds), where=f"store {path!r}")
    return ds, g, manifest


def _member_metadata(
    g: zarr.Group, g_own: zarr.Group
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]] | None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not recognized as a component", category=UserWarning)
        try:
            own = {name: arr.metadata.to_dict() for name, arr in g_own.arrays()}
        except (TypeError, ValueError, KeyError) as err:  # valid JSON that zarr cannot parse
            raise SchemaError(_invalid_member(g_own, err), variable=None) from err
    cm = g.metadata.consolidated_metadata
    cons = None if cm is None else {name: m.to_dict() for name, m in cm.metadata.items()}
    return own, cons


def _invalid_member(g: zarr.Group, err: Exception) -> str:
    """Say which array's metadata zarr refuses (e.g. a data_type edited to one its fill_value
    or codecs cannot have), for a local store; else the zarr error alone."""
    where = "an array"
    root = getattr(g.store, "root", None)
    if root is not None and os.path.isdir(str(root)):
        for name in sorted(os.listdir(str(root))):
            doc = os.path.join(str(root), name, "zarr.json")
            if not os.path.isfile(doc):
                continue
            try:
                zarr.open_array(store=os.path.join(str(root), name), mode="r", zarr_format=3)
            except Exception:  # noqa: BLE001 - any parse failure names the culprit
                where = f"`{name}` ({doc!r})"
                break
    return (f"the metadata of {where} is not a valid zarr v3 array ({type(err).__name__}: {err}): "
            "its data_type, fill_value or codecs were edited or written by an incompatible tool; "
            "restore it from a backup or recreate the store")


def _schema_version(g: zarr.Group) -> int:
    v = g.attrs.get("revstats_schema")
    return int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else SCHEMA_VERSION


def _integrity_problems(path: str, g: zarr.Group, storage_options: Mapping[str, Any] | None) -> tuple[list[str], Any]:
    """Metadata, value-domain and manifest problems of an opened store (cheap: metadata and
    the small bookkeeping arrays only). Returns (problems, manifest or None for schema 1)."""
    from revstats.store._integrity import Manifest, metadata_problems
    from revstats.store.schema import check_domains

    g_own = _open_group(path, "r", storage_options, consolidated=False)
    own, cons = _member_metadata(g, g_own)
    version = _schema_version(g)
    problems = metadata_problems(own, cons, version)
    if version >= 2 and "digest" not in own:
        problems.append("`digest`: the digest manifest of this schema 2 store is missing (deleted?), "
                        "so chunks cannot be bound to their place; restore it or recreate the store")
    # A writer grows `step` in each array's own metadata one array after the other and
    # consolidates last; a kill in between leaves own shapes that differ along `step` (never
    # below the consolidated ones: `metadata_problems` checks that). Readers see the
    # consolidated view, so the bookkeeping is checked over the steps that view holds.
    n_view = _viewed_steps(own, cons)
    steps = np.asarray(_array(g_own, "step")[:n_view]) if "step" in own else np.array([], np.int64)
    task_attrs = own.get("task", {}).get("attributes") if "task" in own else None
    problems += [m for _, m in check_domains(steps, task_attrs)]
    if problems or version < 2:
        return problems, None
    complete = np.asarray(_array(g_own, "complete")[:, :n_view], dtype=bool)
    digest = np.asarray(_array(g_own, "digest")[:, :n_view], dtype=np.int64)
    if digest.shape[:2] != complete.shape:
        return [f"`digest` has shape {digest.shape}; expected (run, step) = {complete.shape} first"], None
    manifest = Manifest(
        digest=digest, complete=complete, entries=_digest_index(_array(g_own, "digest")),
        finished=bool(g.attrs.get("finished", False)),
        runs=[str(r) for r in _array(g_own, "run")[:]], steps=[int(x) for x in steps],
        witness=_witness_digests(g),
        witness_done=bool(g.attrs.get("witness_complete", False)),
    )
    return manifest.problems(), manifest


def _viewed_steps(own: Mapping[str, Any], cons: Mapping[str, Any] | None) -> int:
    """How many steps readers see: the consolidated `step` length, or (no consolidated view
    yet) the shortest `step` axis among the arrays' own metadata."""
    def n_steps(meta: Mapping[str, Any], name: str) -> int | None:
        shape = meta.get("shape")
        axis = 0 if name == "step" else 1
        return int(shape[axis]) if isinstance(shape, (list, tuple)) and len(shape) > axis else None

    if cons is not None and "step" in cons:
        n = n_steps(cons["step"], "step")
        if n is not None:
            return n
    lengths = [n_steps(own[k], k) for k in ("step", *_STEP_ARRAYS) if k in own]
    return min((n for n in lengths if n is not None), default=0)


def _witness_digests(g: zarr.Group) -> dict[str, int]:
    raw: Any = g.attrs.get("witness_digests", {}) or {}
    return {str(k): int(v) for k, v in dict(raw).items()}


def _incomplete(g: zarr.Group, manifest: Any) -> dict[str, Any] | None:
    """Which planned slabs are missing, and the command that resumes the writer."""
    from revstats.store._integrity import resume_hint

    if manifest is not None:
        missing = manifest.missing()
    elif g.attrs.get("finished"):  # a schema 1 store appended to by this revstats
        missing = []
    else:  # schema 1: no `finished` attribute, every (run, step) slab is planned
        complete = np.asarray(_array(g, "complete")[...], dtype=bool)
        runs = [str(r) for r in _array(g, "run")[:]]
        steps = [int(x) for x in _array(g, "step")[:]]
        missing = [(runs[r], steps[s]) for r, s in np.argwhere(~complete)]
    if not missing:
        return None
    try:
        prov = json.loads(str(g.attrs.get("provenance", "{}")))
    except json.JSONDecodeError:
        prov = {}
    hint = resume_hint(prov)
    shown = ", ".join(f"run={r} step={st}" for r, st in missing[:6]) + (" …" if len(missing) > 6 else "")
    return {"n_missing": len(missing), "missing": [[r, st] for r, st in missing[:200]],
            "resume": hint,
            "message": f"the store is incomplete: {len(missing)} slab(s) not written ({shown}); {hint}"}


def _read_complete(g: zarr.Group, ds: xr.Dataset) -> np.ndarray:
    # One zarr call (concurrent chunk reads) instead of one dask task per (1, 1) marker chunk.
    arr = _array(g, "complete")
    if tuple(arr.shape) == tuple(ds["complete"].shape):
        return np.asarray(arr[...], dtype=bool)
    return np.asarray(ds["complete"].values, dtype=bool)


_CHECK_HINT = " (`revstats info --check STORE` lists every problem)"


def _bound_reader(root: str, name: str, arr: Any, manifest: Any) -> Any:
    """A direct chunk reader for `name` that also checks each chunk against the manifest."""
    from revstats.store._chunkio import chunk_reader

    reader = chunk_reader(root, name, arr)
    if reader is not None and manifest is not None:
        reader.bind = lambda idx: manifest.expected(name, idx)
        reader.where = lambda idx: manifest.place(name, idx)
    return reader


def verified_chunk_reader(path: str | os.PathLike[str], name: str = "acts") -> Any:
    """A direct chunk reader for array `name` of the local store at `path` that checks every
    chunk against the store's digest manifest as it reads it (None when the array's layout is
    not the direct one). Every fast path that reads chunk files should use this, not
    `_chunkio.chunk_reader`, so that misplaced or missing chunks are errors there too."""
    path = os.fspath(path)
    g = _open_group(path, "r", None, consolidated=None)
    _, manifest = _integrity_problems(path, g, None)
    return _bound_reader(_local_path(path), name, _array(g, name), manifest)


def _checked_outcomes(ds: xr.Dataset, path: str, g: zarr.Group, manifest: Any, complete: np.ndarray) -> xr.Dataset:
    """Read `behavior` and `task` (small) once, verified, and refuse values outside their
    domain (behaviour 0/1/NaN, finite task) in completed slabs; keep them dask-backed."""
    import dask.array as da

    from revstats.store.schema import check_outcomes

    names = [n for n in ("behavior", "task") if n in ds]
    if not names:
        return ds
    problems: list[str] = []
    for name in names:
        arr = _array(g, name)
        reader = _bound_reader(_local_path(path), name, arr, manifest) if _is_local(path) else None
        try:
            values = reader[()] if reader is not None and reader.shape == ds[name].shape else np.asarray(ds[name].values)
        except ValueError as e:  # CorruptStoreError, zarr's checksum errors
            raise _corrupt(path, e) from None
        if values.shape[:2] == complete.shape:
            problems += [m for _, m in check_outcomes(name, values, complete)]
        ds[name] = ds[name].copy(data=da.from_array(values, chunks=ds[name].data.chunksize))
    if problems:
        raise SchemaError(f"store {path!r}: " + "; ".join(problems), variable=names[0])
    return ds


def _corrupt(path: str, e: BaseException) -> Exception:

    text = str(e)
    if isinstance(e, CorruptStoreError):
        return CorruptStoreError(f"store {path!r}: {text}{_CHECK_HINT}")
    return CorruptStoreError(f"store {path!r}: a chunk is unreadable or corrupt ({text}); restore it "
                             f"from a backup or rewrite the slab{_CHECK_HINT}")


def _fast_local_reads(ds: xr.Dataset, g: zarr.Group, root: str, manifest: Any = None) -> xr.Dataset:
    """Back `acts` (and `witness`) of a local store by direct chunk-file reads.

    Same chunks, values, fill semantics and checksum checks as zarr's reader, several times
    faster (see `revstats.store._chunkio`); arrays with other codecs keep zarr's reader. A
    whole-array compute skips the per-chunk tasks (see `revstats.store._lazy`).
    """
    from dask.base import tokenize

    from revstats.store._lazy import direct_dask_array

    for name in ("acts", "witness"):
        if name not in ds or name not in g:
            continue
        reader = _bound_reader(root, name, _array(g, name), manifest)
        if reader is None or reader.shape != ds[name].shape:
            continue
        # one task per chunk file; computed whole (`.values`, `.to_numpy()`, `.load()`) it is
        # one multi-threaded read straight into the result, as `read_acts` does
        lazy = direct_dask_array(reader, f"revstats-{name}-" + tokenize(reader))
        ds[name] = ds[name].copy(data=lazy)
    return ds


def _validate_read_acts(ds: xr.Dataset, runs: Any, steps: Any, workers: Any) -> tuple[np.ndarray, np.ndarray, int]:
    def positions(name: str, labels: Any) -> np.ndarray:
        index = ds.indexes[name]
        if labels is None:
            return np.arange(len(index))
        if isinstance(labels, (str, bytes)) or np.ndim(labels) == 0:
            raise TypeError(f"`{name}s` must be a sequence of {name} labels, e.g. [{index[0]!r}]")
        labels = list(labels)
        pos = index.get_indexer(labels)
        if (pos < 0).any():
            missing = [lab for lab, p in zip(labels, pos, strict=True) if p < 0][:5]
            raise ValueError(
                f"`{name}s` has label(s) {missing} not in the store; it has {list(index[:8])}"
                + (" …" if len(index) > 8 else "")
            )
        return pos

    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    if not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"`workers` must be a positive integer (threads reading chunks), got {workers!r}")
    return positions("run", runs), positions("step", steps), int(workers)


def read_acts(
    path: str | os.PathLike[str],
    *,
    runs: Sequence[str] | None = None,
    steps: Sequence[int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    workers: int | None = None,
) -> xr.DataArray:
    """Read whole (run, step) slabs of `acts` into memory, as fast as the disk allows.

    The eager counterpart of ``open_store(path)["acts"].sel(...).load()`` (same values, same
    validation, incomplete slabs as NaN, checksums verified) for when the selection fits in
    memory. On local stores each chunk file is read straight into its place in the result
    (`workers` threads), with no dask graph and no concatenation copy; other stores fall back
    to the lazy path.

    Parameters
    ----------
    path : local path or fsspec URL of a store.
    runs, steps : labels to read (default: all), in the order given.
    storage_options : fsspec options for remote stores.
    workers : reader threads (default ``min(4, cpu_count)``).
    """
    path = os.fspath(path)
    # one open and one integrity check: the group and manifest open_store verified
    ds, g, manifest = _open_store(path, storage_options, True, False)
    run_pos, step_pos, workers = _validate_read_acts(ds, runs, steps, workers)
    acts = ds["acts"].isel(run=run_pos, step=step_pos)
    reader = None
    if _is_local(path):
        from revstats.store._chunkio import run_jobs

        reader = _bound_reader(_local_path(path), "acts", _array(g, "acts"), manifest)
        store_steps = [int(s) for s in _array(g, "step")[:]]
    if reader is None:
        return acts.load()
    complete = ds["complete"].values[np.ix_(run_pos, step_pos)]
    where = {s: i for i, s in enumerate(store_steps)}
    ds_steps = ds["step"].values
    out = np.empty(acts.shape, dtype=reader.dtype)
    jobs = []
    stale = False  # a slab the markers call complete that the manifest read before them did not
    for i, r in enumerate(run_pos):
        for j, s in enumerate(step_pos):
            if not complete[i, j]:
                out[i, j] = np.nan
                continue
            si = where[int(ds_steps[s])]
            if manifest is not None and not (si < manifest.complete.shape[1] and manifest.complete[int(r), si]):
                stale = True
            jobs.append(((slice(int(r), int(r) + 1), slice(si, si + 1)), out[i : i + 1, j : j + 1]))
    if stale:  # completed by a writer in between: bind its chunks with a fresh manifest
        g = _open_group(path, "r", storage_options, consolidated=None)
        _, manifest = _integrity_problems(path, g, storage_options)
        reader = _bound_reader(_local_path(path), "acts", _array(g, "acts"), manifest)

    def one(job: tuple[tuple[slice, slice], np.ndarray]) -> None:
        reader.read_into(job[0], job[1])

    try:
        run_jobs(one, jobs, workers)
    except ValueError as e:  # CorruptStoreError, checksum mismatch
        raise _corrupt(path, e) from None
    return acts.copy(data=out)


def write_dataset(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    *,
    source: str,
    provenance: Mapping[str, Any],
    overwrite: bool = False,
    dtype: str | None = None,
    compressor: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: Any = None,
    resume: bool = True,
) -> None:
    """Write a schema-conforming `xarray.Dataset` (in memory or dask-backed) to a new store.

    Data are written run by run (dask arrays are computed one run at a time, so memory stays
    bounded by one run). `progress`, if given, is called with (done, total) after each run.
    With `resume` (default), a store at `path` that an interrupted call with the same dataset
    and provenance left behind is completed: complete slabs are kept, not rewritten.
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"`ds` must be an xarray.Dataset, got {type(ds).__name__}")
    if "complete" not in ds:
        ds = ds.assign(complete=xr.DataArray(np.ones((ds.sizes.get("run", 0), ds.sizes.get("step", 0)), bool), dims=("run", "step")))
    ds = ds.assign_attrs(revstats_schema=SCHEMA_VERSION, source=source)
    check_dataset(ds)
    if "arm" in ds.coords:
        arms = [str(a) for a in ds["arm"].values]
    else:
        arms = None
    seeds = [int(s) for s in ds["seed"].values] if "seed" in ds.coords else None
    task_attrs = dict(ds["task"].attrs) if "task" in ds else None
    store_dtype = dtype or str(ds["acts"].dtype if ds["acts"].dtype in (np.float16, np.float32) else "float32")
    witness_per_run = "witness" in ds and "run" in ds["witness"].dims
    runs = [str(r) for r in ds["run"].values]
    steps = [int(s) for s in ds["step"].values]
    with create_store(
        path, runs=runs, layers=[str(x) for x in ds["layer"].values],
        examples=[str(x) for x in ds["example"].values], hidden=int(ds.sizes["hidden"]),
        steps=steps, arms=arms, seeds=seeds, dtype=store_dtype,
        witness_per_run=witness_per_run, behavior="behavior" in ds, task=task_attrs,
        source=source, provenance=provenance, overwrite=overwrite, compressor=compressor,
        storage_options=storage_options, resume=resume and not overwrite,
    ) as w:
        attrs = w._group.attrs
        witness_done = bool(attrs.get("witness_complete", False))
        witness_runs = {str(r) for r in attrs.get("witness_runs", []) or []}  # type: ignore[union-attr]
        if "witness" in ds and not witness_done:
            if witness_per_run:
                for r in runs:
                    if r in witness_runs:
                        continue
                    w.write_witness(np.asarray(ds["witness"].sel(run=r).transpose("layer", "example", "hidden")), run=r)
            else:
                w.write_witness(np.asarray(ds["witness"].transpose("layer", "example", "hidden")))
        complete = ds["complete"].values.astype(bool)
        for i, r in enumerate(runs):
            sel = [j for j in np.nonzero(complete[i])[0] if not w.has_slab(r, steps[j])]
            if len(sel) == 0:
                continue
            sub = ds.isel(run=i, step=sel)
            w.write_slabs(
                r, [steps[j] for j in sel],
                np.asarray(sub["acts"].transpose("step", "layer", "example", "hidden")),
                behavior=np.asarray(sub["behavior"].transpose("step", "example")) if "behavior" in ds else None,
                task=np.asarray(sub["task"]).tolist() if "task" in ds else None,
            )
            if progress is not None:
                progress(i + 1, len(runs))
        w.finish()  # slabs `ds` marks incomplete were never planned


def describe_store(
    path: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Summarise a store: dims, runs and arms, steps, layers, provenance, completeness, and
    any validation problem (never raises for a malformed store: problems are listed)."""
    path = os.fspath(path)
    info: dict[str, Any] = {"path": path, "problems": []}
    try:
        _check_exists(path)
        bad = _unreadable_metadata(path)
        if bad:
            info["problems"] += bad
            return info
        g = _open_group(path, "r", storage_options, consolidated=None)
    except (FileNotFoundError, SchemaError, zarr.errors.GroupNotFoundError) as e:
        info["problems"].append(str(e))
        return info
    layout = _array_layout(g)
    info["problems"] += [m for _, m in validate_layout(dict(g.attrs), layout)]
    info["attrs"] = {k: v for k, v in g.attrs.items() if k != "provenance"}
    try:
        info["provenance"] = json.loads(str(g.attrs.get("provenance", "{}")))
    except json.JSONDecodeError:
        info["provenance"] = g.attrs.get("provenance")
    info["variables"] = {
        name: {"dims": list(d), "shape": list(s), "dtype": str(t)} for name, (d, s, t) in layout.items()
    }
    if info["problems"]:
        return info
    try:
        runs = [str(r) for r in _array(g, "run")[:]]
        arms = [str(a) for a in _array(g, "arm")[:]]
        steps = [int(s) for s in _array(g, "step")[:]]
        complete = np.asarray(_array(g, "complete")[:], dtype=bool)
    except Exception as e:  # noqa: BLE001 - a corrupt bookkeeping chunk is a store problem
        info["problems"].append(
            f"coordinates or `complete` markers unreadable or corrupt ({type(e).__name__}: {e})"
        )
        return info
    info.update(
        runs=runs,
        arms=dict(zip(*np.unique(arms, return_counts=True), strict=True)),
        steps=[s for s in steps if s != _STEP_UNSET],
        layers=[str(x) for x in _array(g, "layer")[:]],
        n_examples=int(_array(g, "example").shape[0]),
        hidden=int(_array(g, "acts").shape[-1]),
        dtype=str(_array(g, "acts").dtype),
        slabs_complete=int(complete.sum()),
        slabs_total=int(complete.size),
        witness_complete=bool(g.attrs.get("witness_complete", False)),
    )
    info["arms"] = {str(k): int(v) for k, v in info["arms"].items()}
    try:
        problems, manifest = _integrity_problems(path, g, storage_options)
    except Exception as e:  # noqa: BLE001 - a corrupt bookkeeping chunk is a store problem
        problems, manifest = [f"digest manifest or metadata unreadable ({type(e).__name__}: {e})"], None
    info["problems"] += problems
    info["schema_version"] = _schema_version(g)
    info["place_binding"] = manifest is not None
    if not problems:
        info["incomplete"] = _incomplete(g, manifest)
    return info


def verify_store(
    path: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    progress: Any = None,
) -> list[str]:
    """Read every chunk of a store, checking checksums and values; return the problems found.

    Each problem names the variable and the run/step/layer of the slab affected: a corrupt or
    missing chunk of a completed slab, NaN/Inf inside a completed slab, or a bad witness.
    """
    path = os.fspath(path)
    info = describe_store(path, storage_options=storage_options)
    if info["problems"]:
        return list(info["problems"])
    try:  # each member's own metadata, not the consolidated copy a reader would use
        g = _open_group(path, "r", storage_options, consolidated=False)
        members = dict(g.members())
    except Exception as e:  # noqa: BLE001 - report any metadata failure
        return [f"member metadata unreadable or corrupt ({type(e).__name__}: {e})"]
    missing = sorted({"acts", "witness", "complete", "step"} - set(members))
    if missing:
        return [f"{', '.join(f'`{m}`' for m in missing)}: metadata missing (zarr.json deleted?)"]
    problems: list[str] = []
    runs, steps_all = info["runs"], [int(s) for s in _array(g, "step")[:]]
    complete = np.asarray(_array(g, "complete")[:], dtype=bool)
    acts = _array(g, "acts")
    total = int(complete.sum())
    done = 0
    _, manifest = _integrity_problems(path, g, storage_options)
    local = _local_path(path) if _is_local(path) else None
    readers = {name: _bound_reader(local, name, _array(g, name), manifest)
               for name in ("acts", "behavior", "task", "witness") if name in g and local is not None}

    def read_slab(name: str, arr: Any, ri: int, si: int) -> np.ndarray:
        reader = readers.get(name)
        if reader is not None and reader.shape == tuple(arr.shape):
            return reader[ri : ri + 1, si : si + 1][0, 0]
        block = np.asarray(arr[ri, si])  # zarr checks each chunk's crc32c
        if manifest is not None:  # and the manifest binds each chunk to this place
            tails = [(ri, si, *t) for (n, t) in manifest.entries if n == name]
            for key, d in zip(tails, _tail_digests(path, g, name, tails), strict=True):
                manifest.check(name, key, d)
        return block

    def read_slab_part(arr: Any, ri: int, si: int, lo: int, hi: int) -> Any:
        reader = readers.get("acts")
        if reader is not None and reader.shape == tuple(arr.shape):
            return reader[ri : ri + 1, si : si + 1, lo:hi]
        return np.asarray(arr[ri, si, lo:hi])

    for ri, si in zip(*np.nonzero(complete), strict=True):
        label = f"run={runs[ri]} step={steps_all[si]}"
        for name in ("acts", "behavior", "task"):
            if name not in g:
                continue
            arr = acts if name == "acts" else _array(g, name)
            try:
                block = read_slab(name, arr, int(ri), int(si))
            except Exception as e:  # noqa: BLE001 - report any decode failure by location
                where = label
                if name == "acts":
                    def part(lo: int, hi: int, ri: int = int(ri), si: int = int(si)) -> Any:
                        return read_slab_part(acts, ri, si, lo, hi)
                    where += f" layer(s) {_corrupt_layers(part, acts.chunks[2], info['layers'])}"
                problems.append(f"`{name}` {where}: chunk unreadable or corrupt ({type(e).__name__}: {e})")
                continue
            if name == "acts":
                bad_layers = [info["layers"][i] for i in np.nonzero(~np.isfinite(block).all(axis=(1, 2)))[0]]
                if bad_layers:
                    problems.append(f"`acts` {label}: NaN/Inf (missing chunk?) in layer(s) {bad_layers[:5]}")
        done += 1
        if progress is not None:
            progress(done, total)
    if info["witness_complete"]:
        try:
            wr = readers.get("witness")
            wv = wr[()] if wr is not None and wr.shape == tuple(_array(g, "witness").shape) else np.asarray(_array(g, "witness")[...])
            if not np.isfinite(wv).all():
                problems.append("`witness`: contains NaN/Inf or a missing chunk")
        except Exception as e:  # noqa: BLE001 - report any decode failure
            problems.append(f"`witness`: chunk unreadable or corrupt ({type(e).__name__}: {e})")
    return problems


def _corrupt_layers(read: Any, step: int, layers: list[str]) -> list[str]:
    """Names of the layers of a slab whose chunk fails to decode (or to match the manifest);
    `read(lo, hi)` reads layers lo:hi of the slab."""
    bad: list[str] = []
    for lo in range(0, len(layers), int(step)):
        try:
            read(lo, lo + int(step))
        except Exception:  # noqa: BLE001 - any decode failure marks the chunk
            bad += layers[lo : lo + int(step)]
    return bad[:8]
