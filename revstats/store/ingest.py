"""Turn logged activation arrays (npy, npz, safetensors, torch .pt, HDF5) into a revstats store.

A *mapping* says which array in the file is which store variable and what its axes mean::

    [acts]                       # required
    key  = "activations"         # array name in the file (omit for .npy / a bare-tensor .pt)
    dims = ["step", "layer", "example", "hidden"]   # the file's axis order
    [witness]                    # required; `file` reads it from another file
    file = "base_acts.npy"
    dims = ["layer", "example", "hidden"]
    [behavior]                   # optional, dims default to (run, step, example)
    key = "harmful"
    [task]                       # optional, dims default to (run, step)
    key = "loss"
    metric = "loss"
    higher_is_better = false
    [coords]                     # optional names; defaults run0.., 0.., layer0.., ex00000..
    run = ["control-s0"]
    step = [0, 10, 20]
    layer = ["hidden_states.8"]
    arm = ["control"]
    seed = [0]

Axes named in `dims` are a permutation of the store variable's dims; `run`, `step` and `layer`
may be left out (a single run / step / layer). Loading never executes code: ``.pt`` files are read
with ``torch.load(weights_only=True)`` only, and pickled object arrays (npz, HDF5) are refused.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from revstats._version import __version__
from revstats.errors import RevstatsError
from revstats.store._dtypes import STORE_DTYPES, to_store_dtype

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "FORMATS",
    "STORE_VAR_DIMS",
    "IngestMapping",
    "VariableMapping",
    "ingest",
    "list_arrays",
    "read_array",
    "read_mapping",
]

FORMATS = {".npy": "npy", ".npz": "npz", ".safetensors": "safetensors", ".pt": "pt",
           ".pth": "pt", ".bin": "pt", ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5"}

STORE_VAR_DIMS: dict[str, tuple[str, ...]] = {
    "acts": ("run", "step", "layer", "example", "hidden"),
    "witness": ("layer", "example", "hidden"),
    "behavior": ("run", "step", "example"),
    "task": ("run", "step"),
}
_OPTIONAL_DIMS = ("run", "step", "layer")


@dataclass(frozen=True)
class VariableMapping:
    """Where one store variable lives: array `key` in `file` (default: the main input) with axes
    `dims` (default: the store's order)."""

    key: str | None = None
    dims: tuple[str, ...] | None = None
    file: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestMapping:
    """How a file layout maps to the store: per variable and coordinate names."""

    acts: VariableMapping = VariableMapping()
    witness: VariableMapping | None = VariableMapping()
    behavior: VariableMapping | None = None
    task: VariableMapping | None = None
    coords: dict[str, list[Any]] = field(default_factory=dict)


def read_mapping(path: str | os.PathLike) -> IngestMapping:
    """Read an ingest mapping TOML (format in the module docstring); relative `file`s are
    resolved against the TOML's directory."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"`mapping` file {str(p)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise RevstatsError(f"mapping {p}: not valid TOML ({exc})") from exc
    return mapping_from_dict(data, base_dir=p.parent)


def mapping_from_dict(data: Mapping[str, Any], *, base_dir: str | os.PathLike | None = None) -> IngestMapping:
    """Build an :class:`IngestMapping` from a dict with the TOML's structure."""
    unknown = set(data) - {*STORE_VAR_DIMS, "coords"}
    if unknown:
        raise RevstatsError(
            f"mapping has unknown section(s) {sorted(unknown)}; allowed: acts, witness, "
            "behavior, task, coords"
        )

    def var(name: str) -> VariableMapping | None:
        sec = data.get(name)
        if sec is None:
            return None
        if not isinstance(sec, Mapping):
            raise RevstatsError(f"mapping section `{name}` must be a table")
        f = sec.get("file")
        if f is not None and base_dir is not None and not Path(f).is_absolute():
            f = str(Path(base_dir) / f)
        dims = sec.get("dims")
        if isinstance(dims, str):  # "run,step" (as on the command line), not characters
            dims = [d.strip() for d in dims.split(",") if d.strip()]
        elif dims is not None and (not isinstance(dims, (list, tuple))
                                   or not all(isinstance(d, str) for d in dims)):
            raise RevstatsError(f"mapping `{name}.dims` must be a list of axis names such as "
                                f"[\"run\", \"step\"], got {dims!r}")
        attrs = {k: v for k, v in sec.items() if k not in ("key", "dims", "file")}
        return VariableMapping(sec.get("key"), tuple(dims) if dims is not None else None, f, attrs)

    coords = data.get("coords", {})
    if not isinstance(coords, Mapping):
        raise RevstatsError("mapping section `coords` must be a table of lists")
    return IngestMapping(
        acts=var("acts") or VariableMapping(),
        witness=var("witness") or VariableMapping(),
        behavior=var("behavior"),
        task=var("task"),
        coords={k: _coord_list(k, v) for k, v in coords.items()},
    )


def _coord_list(name: str, v: Any) -> list[Any]:
    if isinstance(v, str) or not isinstance(v, (list, tuple)):
        raise RevstatsError(f"mapping `coords.{name}` must be a list, got {v!r}")
    return list(v)


# --------------------------------------------------------------------------- readers
def _format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise RevstatsError(
            f"{path}: unknown file type {path.suffix!r}; ingest reads "
            f"{', '.join(sorted(FORMATS))}"
        )
    return fmt


_PICKLE_HELP = (
    "it contains pickled Python objects, and unpickling can run arbitrary code, so revstats "
    "refuses it. Convert it, in an environment you trust, to plain arrays: e.g. "
    "`safetensors.torch.save_file({k: t.contiguous() for k, t in obj.items()}, 'acts.safetensors')`"
    " or `numpy.save` of numeric arrays"
)


def _load_pt(path: Path) -> dict[str, Any]:
    import torch

    try:
        with warnings.catch_warnings():  # protocol notices for non-torch pickles: we refuse them
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as exc:
        raise RevstatsError(f"{path}: refused to load: {_PICKLE_HELP}. (torch said: "
                            f"{str(exc).splitlines()[0][:200]})") from None
    flat: dict[str, Any] = {}

    def walk(prefix: str, x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu()
            flat[prefix] = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
        elif isinstance(x, Mapping):
            for k, v in x.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(x, (list, tuple)) and x and all(isinstance(v, (int, float)) for v in x):
            flat[prefix] = np.asarray(x)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            flat[prefix] = np.asarray(x)
        else:
            raise RevstatsError(
                f"{path}: entry {prefix or '(top level)'} is a {type(x).__name__}, not a tensor "
                "or a dict of tensors: save tensors (or a dict of them) only"
            )

    walk("", obj)
    return flat


class _Source:
    """Lazy access to the arrays of one file."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"input file {str(self.path)!r} does not exist")
        if not self.path.is_file():
            raise RevstatsError(f"input {str(self.path)!r} is not a regular file (a directory, "
                                "FIFO or device): pass the logged array file itself")
        self.fmt = _format(self.path)
        self._h5 = None
        self._arrays: dict[str, Any] | None = None

    def _object_refusal(self, key: str) -> RevstatsError:
        return RevstatsError(
            f"{self.path}: array {key!r} is an object array; {_PICKLE_HELP}"
        )

    def _unreadable(self, exc: BaseException) -> RevstatsError:
        return RevstatsError(
            f"{self.path}: cannot read it as {self.fmt}: the file is truncated or corrupt "
            f"({type(exc).__name__}: {exc}); re-export it from the source"
        )

    def arrays(self) -> dict[str, Any]:
        if self._arrays is not None:
            return self._arrays
        try:
            return self._load()
        except RevstatsError:
            raise
        except (OSError, ValueError, EOFError, KeyError, RuntimeError, zipfile.BadZipFile) as exc:
            raise self._unreadable(exc) from None

    def _load(self) -> dict[str, Any]:
        fmt = self.fmt
        if fmt == "npy":
            try:
                self._arrays = {"": np.load(self.path, mmap_mode="r", allow_pickle=False)}
            except ValueError as exc:
                if "allow_pickle" in str(exc) or "object" in str(exc).lower():
                    raise self._object_refusal("") from None
                raise
        elif fmt == "npz":
            self._arrays = _LazyNpz(self.path, self)
        elif fmt == "safetensors":
            from safetensors import safe_open

            out: dict[str, Any] = {}
            try:
                try:
                    with safe_open(str(self.path), framework="np") as f:
                        for k in f.keys():
                            out[k] = f.get_tensor(k)
                except (TypeError, ValueError):  # bfloat16 has no numpy dtype: go through torch
                    with safe_open(str(self.path), framework="pt") as f:
                        for k in f.keys():
                            out[k] = f.get_tensor(k).float().numpy()
            except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
                # a malformed header (bad length, not JSON, offsets past the end) lands here
                raise self._unreadable(exc) from None
            self._arrays = out
        elif fmt == "pt":
            self._arrays = _load_pt(self.path)
        else:
            import h5py

            h5 = self._h5 = h5py.File(self.path, "r")
            self._arrays = _h5_datasets(h5, self.path)
        return self._arrays

    def get(self, key: str | None, role: str) -> Any:
        arrays = self.arrays()
        if key is None:
            if len(arrays) == 1:
                key = next(iter(arrays))
            elif role in arrays:
                key = role
            else:
                raise RevstatsError(
                    f"{self.path}: which array is `{role}`? It holds {sorted(arrays)}: name it "
                    f"with `--{role}-key` or `key` in the mapping's [{role}] table"
                )
        if key not in arrays:
            raise RevstatsError(
                f"{self.path}: no array {key!r} for `{role}`; it holds {sorted(arrays)}"
            )
        arr = arrays[key]
        if getattr(arr, "dtype", None) is not None and arr.dtype.kind not in "fiub":
            raise self._object_refusal(key) if arr.dtype.kind == "O" else RevstatsError(
                f"{self.path}: array {key!r} has dtype {arr.dtype}; `{role}` must be numeric"
            )
        return arr

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
        if isinstance(self._arrays, _LazyNpz):
            self._arrays.close()


def _h5_datasets(h5: Any, path: Path) -> dict[str, Any]:
    """Every dataset of an HDF5 file by name, refusing anything that reads outside the file.

    External links, external raw storage and virtual datasets make HDF5 read other files (an
    ``.h5`` could pull ``/etc/passwd`` into a store that is then shared): all are refused, by
    name, before any data is read. Soft links inside the file are skipped (their targets are
    visited under their own names).
    """
    import h5py

    found: dict[str, Any] = {}
    fix = ("copy the data into the file itself (e.g. `h5py` `f.copy`, or `h5repack`) and "
           "ingest that copy")
    stack = [("", h5["/"])]
    while stack:
        prefix, group = stack.pop()
        for name in group:
            full = f"{prefix}{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise RevstatsError(
                    f"{path}: {full!r} is an external link to {link.filename}:{link.path}; "
                    f"ingest reads only data stored in the file itself: {fix}")
            if isinstance(link, h5py.SoftLink):
                continue
            obj = group[name]
            if isinstance(obj, h5py.Group):
                stack.append((f"{full}/", obj))
            elif isinstance(obj, h5py.Dataset):
                if obj.is_virtual:
                    raise RevstatsError(
                        f"{path}: dataset {full!r} is a virtual dataset (its data live in other "
                        f"files); ingest reads only data stored in the file itself: {fix}")
                if obj.external:
                    files = sorted({str(e[0]) for e in obj.external})
                    raise RevstatsError(
                        f"{path}: dataset {full!r} keeps its data in external file(s) {files}; "
                        f"ingest reads only data stored in the file itself: {fix}")
                found[full] = obj
    return found


class _LazyNpz(dict):
    """npz members loaded on first access; object arrays refused without unpickling."""

    def __init__(self, path: Path, source: _Source) -> None:
        self._npz = np.load(path, allow_pickle=False)
        self._source = source
        super().__init__({k: None for k in self._npz.files})

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        if value is None:
            try:
                value = self._npz[key]
            except ValueError as exc:
                if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                    raise self._source._object_refusal(key) from None
                raise self._source._unreadable(exc) from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise self._source._unreadable(exc) from None
            dict.__setitem__(self, key, value)
        return value

    def close(self) -> None:
        self._npz.close()


def list_arrays(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the arrays in a file (``""`` for a bare .npy or tensor)."""
    src = _Source(path)
    try:
        arrays = src.arrays()
        return {k: tuple(arrays[k].shape) for k in arrays}
    finally:
        src.close()


def read_array(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """One numeric array from a file, loaded into memory."""
    src = _Source(path)
    try:
        return np.asarray(src.get(key, "array"))
    finally:
        src.close()


# --------------------------------------------------------------------------- layout checks
@dataclass
class _Bound:
    name: str
    array: Any
    dims: tuple[str, ...]
    where: str

    def slab(self, fixed: Mapping[str, int], target: tuple[str, ...]) -> np.ndarray:
        idx = tuple(fixed[d] if d in fixed else slice(None) for d in self.dims)
        x = np.asarray(self.array[idx])
        rest = [d for d in self.dims if d not in fixed]
        for d in target:
            if d not in rest:
                x = x[..., None]
                rest.append(d)
        return np.transpose(x, [rest.index(d) for d in target])


def _bind(name: str, src: _Source, vm: VariableMapping) -> _Bound:
    arr = src.get(vm.key, name)
    full = STORE_VAR_DIMS[name]
    if name == "witness" and vm.dims is None and len(arr.shape) == 4:
        full = ("run", *full)
    dims = tuple(vm.dims) if vm.dims is not None else full
    allowed = ("run", *full) if name == "witness" else full
    expected = f"({', '.join(STORE_VAR_DIMS[name])})"
    hint = (f"map the file's axes with `--{name}-dims` (e.g. `--{name}-dims "
            f"{','.join(STORE_VAR_DIMS[name])}`) or `dims` in the mapping's [{name}] table")
    bad = [d for d in dims if d not in allowed]
    if bad or len(set(dims)) != len(dims):
        raise RevstatsError(
            f"`{name}` dims {list(dims)} are not distinct names among {list(allowed)}; the store "
            f"expects {name} dims {expected}: {hint}"
        )
    required = [d for d in STORE_VAR_DIMS[name] if d not in _OPTIONAL_DIMS]
    missing = [d for d in required if d not in dims]
    if missing or len(dims) != len(arr.shape):
        raise RevstatsError(
            f"`{name}` in {src.path} has shape {tuple(arr.shape)} ({len(arr.shape)} axes) but "
            f"the mapping names dims {list(dims)}; the store expects {name} dims {expected} "
            f"(run, step and layer may be omitted): {hint}"
        )
    return _Bound(name, arr, dims, str(src.path))


def _sizes(bound: list[_Bound]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for b in bound:
        for d, n in zip(b.dims, b.array.shape, strict=True):
            if sizes.setdefault(d, int(n)) != int(n):
                raise RevstatsError(
                    f"axis {d!r} has size {n} in `{b.name}` ({b.where}) but {sizes[d]} elsewhere: "
                    f"the store expects {b.name} dims ({', '.join(STORE_VAR_DIMS[b.name])}) with "
                    "matching sizes; check the dims mapping"
                )
    return sizes


def _coords(sizes: dict[str, int], coords: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    defaults: dict[str, Callable[[int], list[Any]]] = {
        "run": lambda n: [f"run{i}" for i in range(n)],
        "step": lambda n: list(range(n)),
        "layer": lambda n: [f"layer{i}" for i in range(n)],
        "example": lambda n: [f"ex{i:05d}" for i in range(n)],
    }
    unknown = set(coords) - {*defaults, "arm", "seed"}
    if unknown:
        raise RevstatsError(f"`coords` has unknown name(s) {sorted(unknown)}; allowed: run, step, "
                            "layer, example, arm, seed")
    out: dict[str, list[Any]] = {}
    for d, make in defaults.items():
        n = sizes.get(d)
        if d in coords:
            values = list(coords[d])
            if len(values) != (n if n is not None else 1):
                raise RevstatsError(
                    f"`coords.{d}` has {len(values)} entries but axis {d!r} has size "
                    f"{n if n is not None else '1 (no file axis is mapped to it)'}"
                )
            out[d] = values
        else:
            out[d] = make(n if n is not None else 1)
    n_runs = len(out["run"])
    for d in ("arm", "seed"):
        if d in coords and len(coords[d]) != n_runs:
            raise RevstatsError(f"`coords.{d}` needs one entry per run ({n_runs}), got "
                                f"{len(coords[d])}")
    out["step"] = [int(s) for s in out["step"]]
    out["run"] = [str(r) for r in out["run"]]
    out["layer"] = [str(x) for x in out["layer"]]
    out["example"] = [str(x) for x in out["example"]]
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- ingest
def ingest(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    mapping: IngestMapping | Mapping[str, Any] | str | os.PathLike | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
    command: str | None = None,
    progress=None,
) -> str:
    """Write the arrays of `source` (and files the mapping names) into a new store at `out`.

    `mapping` is an :class:`IngestMapping`, a dict or the path of a mapping TOML (module
    docstring). Values are converted to `dtype` with overflow refused. Returns `out`.
    """
    from revstats.store import create_store

    if dtype not in STORE_DTYPES:
        raise ValueError(f"`dtype` must be 'float32' or 'float16', got {dtype!r}")
    if mapping is None:
        mp = IngestMapping()
    elif isinstance(mapping, IngestMapping):
        mp = mapping
    elif isinstance(mapping, Mapping):
        mp = mapping_from_dict(mapping)
    else:
        mp = read_mapping(mapping)
    if mp.witness is None:
        raise RevstatsError("a store needs `witness` activations: add a [witness] table "
                            "(key, dims, optionally file) to the mapping")

    sources: dict[str, _Source] = {}

    def src_for(vm: VariableMapping) -> _Source:
        p = str(vm.file) if vm.file is not None else str(source)
        if p not in sources:
            sources[p] = _Source(p)
        return sources[p]

    try:
        bound = {"acts": _bind("acts", src_for(mp.acts), mp.acts),
                 "witness": _bind("witness", src_for(mp.witness), mp.witness)}
        for name in ("behavior", "task"):
            vm = getattr(mp, name)
            if vm is not None:
                bound[name] = _bind(name, src_for(vm), vm)
        sizes = _sizes(list(bound.values()))
        coords = _coords(sizes, mp.coords)
        witness_per_run = "run" in bound["witness"].dims
        task_attrs = None
        if "task" in bound:
            task_attrs = {"metric": "task", "higher_is_better": True, **mp.task.attrs}  # type: ignore[union-attr]
        provenance = {
            "command": command or "revstats.store.ingest.ingest",
            "revstats_version": __version__,
            "files": {p: {"format": s.fmt, "sha256": _sha256(s.path)} for p, s in sources.items()},
            "mapping": {name: {"key": getattr(mp, name).key, "dims": list(b.dims),
                               "file": getattr(mp, name).file}
                        for name, b in bound.items()},
            "dtype": dtype,
        }
        writer = create_store(
            str(out), runs=coords["run"], layers=coords["layer"], examples=coords["example"],
            hidden=sizes["hidden"], steps=coords["step"],
            arms=mp.coords.get("arm"), seeds=[int(s) for s in mp.coords["seed"]]
            if "seed" in mp.coords else None,
            dtype=dtype, witness_per_run=witness_per_run, behavior="behavior" in bound,
            task=task_attrs, source="ingest", provenance=provenance, overwrite=overwrite,
            resume=True,  # rerunning an interrupted ingest finishes it, keeping complete slabs
        )
        w_target = STORE_VAR_DIMS["witness"]
        with writer:
            done_attrs = writer._group.attrs
            witness_runs = {str(r) for r in done_attrs.get("witness_runs", []) or []}  # type: ignore[union-attr]
            if done_attrs.get("witness_complete", False):
                pass
            elif witness_per_run:
                for i, run in enumerate(coords["run"]):
                    if str(run) in witness_runs:
                        continue
                    writer.write_witness(to_store_dtype(
                        bound["witness"].slab({"run": i}, w_target), dtype, name="witness"), run=run)
            else:
                writer.write_witness(to_store_dtype(bound["witness"].slab({}, w_target), dtype,
                                                    name="witness"))
            for i, run in enumerate(coords["run"]):
                for j, step in enumerate(coords["step"]):
                    if writer.has_slab(run, step):
                        continue
                    fixed = {"run": i, "step": j}
                    acts = to_store_dtype(
                        bound["acts"].slab(fixed, ("layer", "example", "hidden")), dtype,
                        name="acts")
                    kwargs: dict[str, Any] = {}
                    if "behavior" in bound:
                        kwargs["behavior"] = bound["behavior"].slab(fixed, ("example",)).astype(
                            np.float32)
                    if "task" in bound:
                        kwargs["task"] = float(bound["task"].slab(fixed, ()))
                        if not np.isfinite(kwargs["task"]):
                            raise RevstatsError(
                                f"`task` in {bound['task'].where} is {kwargs['task']} at run "
                                f"{run!r} step {step}: logged task values must be finite; fix "
                                "the log or drop the task mapping")
                    writer.write_slab(run, step, acts, **kwargs)
                    if progress is not None:
                        progress(1)
    finally:
        for s in sources.values():
            s.close()
    return str(out)
