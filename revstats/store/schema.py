"""The store schema (DESIGN §3): which variables, dims, dtypes and attributes a store has.

Validation runs in two places: on zarr metadata before xarray opens a store (so a malformed
store gets a `SchemaError` naming the variable instead of a deep xarray traceback), and on an
`xarray.Dataset` (for datasets built in memory and for `write_dataset`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from revstats.errors import SchemaError

__all__ = [
    "ACTS_DIMS",
    "FLOAT_DTYPES",
    "SCHEMA_VERSION",
    "SOURCES",
    "VARIABLES",
    "VariableSpec",
    "check_dataset",
    "check_domains",
    "check_outcomes",
    "check_values",
    "validate_dataset",
]

#: Version of the on-disk layout; bumped on any incompatible change. Version 2 added the
#: per-slab digest manifest (`digest`), run-wide `complete` marker chunks and the `finished`
#: attribute; version 1 stores are still read (without place binding; see docs/reliability.md).
SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
#: Largest training step a store accepts (steps index a schedule, not a clock).
MAX_STEP = 10**12

ACTS_DIMS = ("run", "step", "layer", "example", "hidden")
FLOAT_DTYPES = (np.dtype("float32"), np.dtype("float16"))
SOURCES = ("simulator", "organism", "capture", "ingest")
COORD_DIMS = ("run", "step", "layer", "example")


@dataclass(frozen=True)
class VariableSpec:
    name: str
    dims: tuple[tuple[str, ...], ...]  # allowed dim tuples
    required: bool
    float_storage: bool  # must be float32/float16
    meaning: str


VARIABLES: dict[str, VariableSpec] = {
    spec.name: spec
    for spec in (
        VariableSpec("acts", (ACTS_DIMS,), True, True, "probe activations along fine-tuning"),
        VariableSpec(
            "witness",
            (("run", "layer", "example", "hidden"), ("layer", "example", "hidden")),
            False,
            True,
            "activations of the pre-alignment (history) model on the same probes",
        ),
        VariableSpec("behavior", (("run", "step", "example"),), False, False, "0/1 outcome per probe"),
        VariableSpec("task", (("run", "step"),), False, False, "task metric per run and step"),
        VariableSpec("complete", (("run", "step"),), True, False, "slab fully written (bookkeeping)"),
        VariableSpec("digest", (("run", "step", "chunk"),), False, False,
                     "crc32c of each chunk of a slab, bound to its place (bookkeeping)"),
    )
}

#: Non-dimension coordinates along `run`.
RUN_COORDS = ("arm", "seed")


def _dims_text(dims: tuple[str, ...]) -> str:
    return "(" + ", ".join(dims) + ")"


def _problems_from_attrs(attrs: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    problems: list[tuple[str | None, str]] = []
    version = attrs.get("revstats_schema")
    if version is None:
        problems.append(
            (
                "revstats_schema",
                "group attribute `revstats_schema` is missing: this is not a revstats store "
                "(create stores with revstats.store.create_store or `revstats ingest`)",
            )
        )
    elif not isinstance(version, (int, np.integer)) or isinstance(version, bool):
        problems.append(("revstats_schema", f"`revstats_schema` must be an int, got {version!r}"))
    elif int(version) not in READABLE_SCHEMA_VERSIONS:
        problems.append(
            (
                "revstats_schema",
                f"schema version {version} is not supported by this revstats (which reads versions "
                f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}); upgrade revstats or re-ingest "
                "the store",
            )
        )
    source = attrs.get("source")
    if source is not None and source not in SOURCES:
        problems.append(("source", f"`source` must be one of {SOURCES}, got {source!r}"))
    prov = attrs.get("provenance")
    if prov is not None:
        try:
            json.loads(prov) if isinstance(prov, str) else None
        except json.JSONDecodeError as e:
            problems.append(("provenance", f"`provenance` is not valid JSON ({e})"))
    return problems


def validate_layout(
    attrs: Mapping[str, Any],
    variables: Mapping[str, tuple[tuple[str, ...], tuple[int, ...], np.dtype]],
) -> list[tuple[str | None, str]]:
    """Check group attributes and each variable's dims, shape and dtype.

    `variables` maps name -> (dims, shape, dtype). Returns (variable, message) pairs.
    Works from zarr metadata alone: no data is read.
    """
    problems = _problems_from_attrs(attrs)
    sizes: dict[str, tuple[int, str]] = {}
    for name, spec in VARIABLES.items():
        if name not in variables:
            if spec.required:
                problems.append((name, f"variable `{name}` is missing ({spec.meaning})"))
            continue
        dims, shape, dtype = variables[name]
        if tuple(dims) not in spec.dims:
            allowed = " or ".join(_dims_text(d) for d in spec.dims)
            problems.append(
                (name, f"variable `{name}` has dims {_dims_text(tuple(dims))}; expected {allowed}")
            )
            continue
        if spec.float_storage and np.dtype(dtype) not in FLOAT_DTYPES:
            problems.append(
                (name, f"variable `{name}` is stored as {np.dtype(dtype)}; expected float32 or float16")
            )
        for d, n in zip(dims, shape, strict=True):
            if d in sizes and sizes[d][0] != n:
                other_n, other = sizes[d]
                problems.append(
                    (
                        name,
                        f"variable `{name}` has {d}={n} but `{other}` has {d}={other_n}: "
                        "coordinates are mismatched",
                    )
                )
            else:
                sizes.setdefault(d, (n, name))
    for coord in COORD_DIMS:
        if coord not in variables:
            problems.append((coord, f"coordinate `{coord}` is missing"))
            continue
        dims, shape, dtype = variables[coord]
        if tuple(dims) != (coord,):
            problems.append((coord, f"coordinate `{coord}` must have dims ({coord},), got {dims}"))
        elif coord in sizes and sizes[coord][0] != shape[0]:
            problems.append(
                (
                    coord,
                    f"coordinate `{coord}` has {shape[0]} entries but `{sizes[coord][1]}` has "
                    f"{coord}={sizes[coord][0]}: coordinates are mismatched",
                )
            )
        if coord == "step" and np.dtype(dtype).kind not in "iu":
            problems.append(("step", f"coordinate `step` must hold integers, got {np.dtype(dtype)}"))
    for coord in RUN_COORDS:
        if coord in variables and tuple(variables[coord][0]) != ("run",):
            problems.append((coord, f"coordinate `{coord}` must lie along `run`"))
    return problems


def validate_dataset(ds: Any) -> list[tuple[str | None, str]]:
    """Validate an `xarray.Dataset` against the schema (metadata only, nothing computed)."""
    variables = {
        name: (tuple(str(d) for d in var.dims), tuple(var.shape), var.dtype)
        for name, var in ds.variables.items()
    }
    problems = validate_layout(ds.attrs, variables)
    for coord in COORD_DIMS:
        if coord in ds.coords and ds.indexes.get(coord) is not None:
            index = ds.indexes[coord]
            if not index.is_unique:
                dup = index[index.duplicated()].tolist()[:3]
                problems.append((coord, f"coordinate `{coord}` has duplicated values {dup}"))
    return problems


def check_dataset(ds: Any) -> None:
    """Raise `SchemaError` listing every problem `validate_dataset` finds."""
    raise_problems(validate_dataset(ds))


def raise_problems(problems: list[tuple[str | None, str]], where: str = "") -> None:
    if not problems:
        return
    variable = problems[0][0]
    text = "; ".join(msg for _, msg in problems)
    prefix = f"{where}: " if where else ""
    raise SchemaError(prefix + text, variable=variable)


def check_domains(
    steps: np.ndarray, task_attrs: Mapping[str, Any] | None
) -> list[tuple[str | None, str]]:
    """Coordinate and attribute value domains that metadata alone decide: steps strictly
    increasing, non-negative and at most `MAX_STEP`; `task.higher_is_better` a real boolean."""
    problems: list[tuple[str | None, str]] = []
    st = np.asarray(steps)
    st = st[st != -1]  # never-written placeholder steps
    if st.size and (st.min() < 0 or st.max() > MAX_STEP):
        problems.append(("step", f"coordinate `step` has values outside 0..{MAX_STEP} "
                                 f"(min {int(st.min())}, max {int(st.max())}): steps are training "
                                 "steps; fix the `step` coordinate"))
    if st.size > 1 and not bool(np.all(np.diff(st) > 0)):
        problems.append(("step", "coordinate `step` is not strictly increasing (unsorted or "
                                 f"duplicated: {st[:8].tolist()}…): write steps in training order"))
    if task_attrs is not None and "higher_is_better" in task_attrs:
        hib = task_attrs["higher_is_better"]
        if not isinstance(hib, (bool, np.bool_)):
            problems.append(("task", f"`task` attribute `higher_is_better` must be true or false, "
                                     f"got {hib!r} ({type(hib).__name__}): a string such as "
                                     "\"no\" would read as true and flip the non-inferiority test"))
    return problems


def check_outcomes(name: str, values: np.ndarray, complete: np.ndarray) -> list[tuple[str | None, str]]:
    """`behavior` must hold 0, 1 or NaN; `task` must not be infinite in completed slabs (NaN
    there means "not measured at this step", as when a writer passes no task value)."""
    v = np.asarray(values)
    done = np.asarray(complete, dtype=bool)
    if name == "behavior":
        bad = ~(np.isnan(v) | (v == 0) | (v == 1)) & done[..., None]
        what = "outcomes other than 0, 1 or NaN"
    else:
        bad = np.isinf(v) & done
        what = "infinite task values"
    if not bad.any():
        return []
    where = np.argwhere(bad)[:3].tolist()
    example = v[tuple(np.argwhere(bad)[0])]
    return [(name, f"`{name}` has {int(bad.sum())} {what} in completed slabs (first at index "
                   f"{where}, value {float(example)!r}): fix the source data and rewrite the store")]


def check_values(ds: Any) -> list[tuple[str | None, str]]:
    """Look for NaN/Inf inside completely written slabs (this reads the data).

    Returns (variable, message) pairs naming run and step of each bad slab (at most 20).
    """
    problems: list[tuple[str | None, str]] = []
    complete = ds["complete"].values.astype(bool) if "complete" in ds else None
    acts = ds["acts"]
    bad = (~np.isfinite(acts)).any(dim=("layer", "example", "hidden")).values
    if complete is not None:
        bad = bad & complete
    for ri, si in zip(*np.nonzero(bad), strict=True):
        if len(problems) >= 20:
            break
        run = ds["run"].values[ri]
        step = ds["step"].values[si]
        problems.append(("acts", f"`acts` slab run={run!s} step={int(step)} contains NaN or Inf"))
    if "witness" in ds and not bool(np.isfinite(ds["witness"]).all()):
        problems.append(("witness", "`witness` contains NaN or Inf"))
    return problems
