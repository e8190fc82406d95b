"""The bad-input catalogue: one table drives `tests/unit/test_bad_inputs.py` and
`docs/bad-inputs.md` (regenerate with `python -m tests.unit.bad_input_cases > docs/bad-inputs.md`;
a test fails when the two drift apart).

Each case feeds one bad input to the public API or the CLI and states what must happen: a
`TypeError`/`ValueError`/`SchemaError`/`RevstatsError`/`FileNotFoundError` whose message
matches `match` (for the CLI: a usage error, exit status != 0, the message printed, no
traceback), or a documented warning. Never a traceback from deep inside a library, never a
number computed from bad data.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from revstats.errors import DegenerateDataWarning, RevstatsError, SchemaError

RNG_SEED = 0
H = 8


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    bad_input: str
    run: Callable[[Path], Any]
    expect: type[BaseException] | type[Warning]
    match: str
    cli: bool = False


def _acts(n_run=2, n_step=3, n_layer=1, n_ex=5, h=H, seed=RNG_SEED):
    rng = np.random.default_rng(seed)
    return xr.DataArray(
        rng.normal(size=(n_run, n_step, n_layer, n_ex, h)),
        dims=("run", "step", "layer", "example", "hidden"),
        coords={"run": [f"r{i}" for i in range(n_run)], "step": list(range(n_step)),
                "layer": [f"L{i}" for i in range(n_layer)], "example": [f"e{i}" for i in range(n_ex)]},
    )


def _witness(n_layer=1, n_ex=5, h=H, seed=1):
    rng = np.random.default_rng(seed)
    return xr.DataArray(rng.normal(size=(n_layer, n_ex, h)), dims=("layer", "example", "hidden"),
                        coords={"layer": [f"L{i}" for i in range(n_layer)],
                                "example": [f"e{i}" for i in range(n_ex)]})


def _vec(values, dim="hidden"):
    return xr.DataArray(np.asarray(values, dtype=float), dims=(dim,))


def _with(a: xr.DataArray, idx: tuple, value: float) -> xr.DataArray:
    a = a.copy()
    a.values[idx] = value
    return a


def _create(path, **kw):
    from revstats.store import create_store

    args = dict(runs=["r0"], layers=["L0"], examples=["e0", "e1"], hidden=4, steps=[0],
                source="ingest", provenance={})
    args.update(kw)
    return create_store(path / "s.zarr", **args)


def _write(path, acts, **kw):
    with _create(path) as w:
        w.write_slab("r0", 0, acts, **kw)


def _store_for_cli(path: Path) -> Path:
    with _create(path) as w:
        w.write_witness(np.ones((1, 2, 4)))
        w.write_slab("r0", 0, np.zeros((1, 2, 4)))
    return path / "s.zarr"


def _cli(*args: str):
    from click.testing import CliRunner

    from revstats.cli import main

    return CliRunner().invoke(main, list(args))


def _npz(path: Path, **arrays) -> str:
    f = path / "log.npz"
    np.savez(f, **arrays)
    return str(f)


def _ingest(src, out, **mapping):
    from revstats.store.ingest import ingest

    mp = {"acts": {"key": "acts", "dims": ["run", "step", "layer", "example", "hidden"]},
          "witness": {"key": "base", "dims": ["layer", "example", "hidden"]}}
    mp.update(mapping)
    return ingest(src, out / "out.zarr", mapping=mp)


def _good_log(path, **over):
    rng = np.random.default_rng(0)
    arrays = {"acts": rng.normal(size=(1, 2, 1, 3, 4)).astype(np.float32),
              "base": rng.normal(size=(1, 3, 4)).astype(np.float32)}
    arrays.update(over)
    return _npz(path, **arrays)


def _edit_root_attrs(store: Path, **attrs) -> None:
    for doc in [store / "zarr.json"]:
        meta = json.loads(doc.read_text())
        meta["attributes"].update(attrs)
        cm = meta.get("consolidated_metadata")
        doc.write_text(json.dumps(meta))
        del cm


def _quiet(f):
    def run(p):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return f(p)
    return run


def _geometry_cases() -> list[Case]:
    import revstats as rs

    acts, wit = _acts(), _witness()
    aligned = acts.isel(step=0, run=0, drop=True)
    return [
        Case("nan-activation-direction", "geometry", "NaN in witness activations",
             lambda p: rs.reversion_direction(_with(wit, (0, 1, 2), np.nan), aligned),
             DegenerateDataWarning, "contain NaN or Inf; the result is NaN"),
        Case("inf-activation-alignment", "geometry", "Inf in a drift vector",
             lambda p: rs.alignment(_vec([1.0, np.inf, 0, 0]), _vec([1.0, 0, 0, 0])),
             DegenerateDataWarning, "contain NaN or Inf; the result is NaN"),
        Case("zero-drift", "geometry", "zero drift vector (cosine undefined)",
             lambda p: rs.alignment(_vec([0.0, 0, 0, 0]), _vec([1.0, 0, 0, 0])),
             DegenerateDataWarning, "have zero length and no direction"),
        Case("zero-direction", "geometry", "witness mean equals aligned mean (no direction)",
             lambda p: rs.reversion_direction(aligned, aligned),
             DegenerateDataWarning, "have zero length and no direction"),
        Case("hidden-size-mismatch", "geometry", "drift and direction with different hidden sizes",
             lambda p: rs.alignment(_vec([1.0, 2, 3]), _vec([1.0, 0, 0, 0])),
             ValueError, "same 'hidden' entries, but their sizes are 3 and 4"),
        Case("hidden-size-mismatch-direction", "geometry",
             "witness and aligned with different hidden sizes",
             lambda p: rs.reversion_direction(_witness(h=6), aligned), ValueError,
             "same 'hidden' entries, but their sizes are 6 and 8"),
        Case("empty-probe-set", "geometry", "zero probes (empty `example` dim)",
             lambda p: rs.reversion_direction(wit.isel(example=slice(0, 0)), aligned),
             ValueError, "`witness` has no entries along 'example'"),
        Case("unknown-dim", "geometry", "`dim` names a dimension the data lack",
             lambda p: rs.reversion_direction(wit, aligned, dim="probe"), ValueError,
             "`witness` has no dimension 'probe'"),
        Case("string-dtype-acts", "geometry", "activations of dtype str",
             lambda p: rs.alignment(_vec([1.0, 0]).astype(str), _vec([1.0, 0])), TypeError,
             "`drift` must hold real numbers"),
        Case("numpy-not-xarray", "geometry", "plain NumPy array where a DataArray is expected",
             lambda p: rs.alignment(np.ones(4), _vec([1.0, 0, 0, 0])), TypeError,
             "`drift` must be an xarray.DataArray"),
        Case("missing-reference-step", "geometry", "drift with a reference step the run lacks",
             lambda p: rs.drift(acts, reference_step=7), ValueError,
             "`reference_step` 7 is not a 'step' coordinate"),
    ]


def _stats_cases() -> list[Case]:
    from revstats import effects, intervals, nulls

    return [
        Case("proportion-k-gt-n", "intervals", "k > n", lambda p: intervals.proportion_ci(5, 3),
             ValueError, "`k` exceeds `n`"),
        Case("proportion-negative-n", "intervals", "n < 0",
             lambda p: intervals.proportion_ci(0, -2), ValueError, "`n` has negative counts"),
        Case("proportion-float-k", "intervals", "non-integer count k = 2.5",
             lambda p: intervals.proportion_ci(2.5, 10), ValueError, "`k` must hold whole numbers"),
        Case("proportion-nan-k", "intervals", "k = NaN",
             lambda p: intervals.proportion_ci(np.nan, 10), ValueError, "`k` contains NaN"),
        Case("unknown-method", "intervals", "unknown interval method",
             lambda p: intervals.proportion_ci(3, 10, method="wald2"), ValueError, "`method` must be one of"),
        Case("confidence-out-of-range", "intervals", "confidence = 95 (percent, not fraction)",
             lambda p: intervals.proportion_ci(3, 10, confidence=95), ValueError,
             "`confidence` must lie strictly between 0 and 1"),
        Case("mean-ci-one-value", "intervals", "t interval of a single value",
             lambda p: intervals.mean_ci([1.0]), ValueError, "`x` needs at least 2 observations"),
        Case("mean-ci-nan", "intervals", "NaN in the sample", lambda p: intervals.mean_ci([1.0, np.nan, 2]),
             ValueError, "`x` contains NaN or infinite values"),
        Case("bootstrap-empty", "intervals", "bootstrap of an empty sample",
             lambda p: intervals.bootstrap_ci([], "mean", rng=0), ValueError, "`data` is empty"),
        Case("bootstrap-bad-statistic", "intervals", "unknown statistic name",
             lambda p: intervals.bootstrap_ci([1.0, 2, 3], "meen", rng=0), ValueError,
             "`statistic` name must be one of"),
        Case("bootstrap-string-data", "intervals", "strings as bootstrap data",
             lambda p: intervals.bootstrap_ci(["a", "b", "c"], "mean", rng=0), TypeError,
             "`data` must be numeric"),
        Case("hedges-constant-groups", "effects", "two groups with zero variance",
             lambda p: effects.hedges_g([1.0, 1, 1], [1.0, 1, 1]), ValueError,
             "both groups have zero standard deviation"),
        Case("risk-ratio-k-gt-n", "effects", "risk ratio with k1 > n1",
             lambda p: effects.risk_ratio(12, 10, 3, 10), ValueError, "`k1` exceeds `n1`"),
        Case("isotropic-d1", "nulls", "isotropic null with d = 1",
             lambda p: nulls.isotropic_cosine(1), ValueError, "`d` must be >= 2"),
        Case("isotropic-float-d", "nulls", "isotropic null with d = 10.5",
             lambda p: nulls.isotropic_cosine(10.5), TypeError,
             "`d` must be an integer dimension"),
        Case("adjust-pvalues-out-of-range", "nulls", "p-value 1.5",
             lambda p: nulls.adjust_pvalues([0.1, 1.5]), ValueError,
             "`p` must contain p-values in \\[0, 1\\]"),
        Case("adjust-unknown-method", "nulls", "unknown adjustment method",
             lambda p: nulls.adjust_pvalues([0.1, 0.5], method="sidak2"), ValueError,
             "`method` must be one of"),
        Case("exceedance-q-out-of-range", "nulls", "quantile q = 99",
             lambda p: nulls.exceedance([0.1], nulls.isotropic_cosine(10), q=99), ValueError,
             "`q` must lie strictly between 0 and 1"),
        Case("cosine-out-of-range", "nulls", "observed cosine 1.5 (not a cosine)",
             lambda p: nulls.exceedance([1.5], nulls.isotropic_cosine(10)), ValueError,
             "`observed` must hold cosines in \\[-1, 1\\]"),
    ]


def _store_cases() -> list[Case]:
    from revstats.store import create_store, open_store, open_writer

    def dup_step(p):
        with _create(p, steps=[0]) as w:
            w.write_slabs("r0", [1, 1], np.zeros((2, 1, 2, 4)))

    def missing_step_open(p):
        # a run whose step 1 never completed: visible as NaN, and the note says so
        with _create(p, runs=["r0", "r1"], steps=[0, 1]) as w:
            w.write_witness(np.ones((1, 2, 4)))
            w.write_slab("r0", 0, np.zeros((1, 2, 4)))
            w.write_slab("r1", 0, np.zeros((1, 2, 4)))
            w.write_slab("r0", 1, np.zeros((1, 2, 4)))
        ds = open_store(p / "s.zarr")
        if "incomplete slab" in ds.attrs.get("revstats_notes", ""):
            warnings.warn("store note: " + ds.attrs["revstats_notes"], RevstatsWarning, stacklevel=1)
        return ds

    def wrong_schema(p):
        _store_for_cli(p)
        _edit_root_attrs(p / "s.zarr", revstats_schema=99)
        return open_store(p / "s.zarr")

    def truncated_meta(p):
        doc = _store_for_cli(p) / "zarr.json"
        doc.write_text(doc.read_text()[:40])
        return open_store(p / "s.zarr")

    from revstats.errors import RevstatsWarning

    return [
        Case("store-nan-slab", "store", "NaN in a slab being written",
             lambda p: _write(p, np.full((1, 2, 4), np.nan)), SchemaError, "NaN or Inf"),
        Case("store-inf-slab", "store", "Inf in a slab being written",
             lambda p: _write(p, np.full((1, 2, 4), np.inf)), SchemaError, "NaN or Inf"),
        Case("store-wrong-shape", "store", "slab with the wrong hidden size",
             lambda p: _write(p, np.zeros((1, 2, 5))), ValueError, "has shape .*5\\); the store expects .*4\\)"),
        Case("store-string-dtype", "store", "slab of strings",
             lambda p: _write(p, np.array([[["a"] * 4] * 2])), TypeError, "must be numeric"),
        Case("store-complex-dtype", "store", "complex activations",
             lambda p: _write(p, np.zeros((1, 2, 4), complex)), TypeError, "must be numeric"),
        Case("store-float16-overflow", "store", "values beyond float16 into a float16 store",
             lambda p: _create(p, dtype="float16").write_slab("r0", 0, np.full((1, 2, 4), 1e6)),
             ValueError, "float16 range"),
        Case("store-int8-dtype", "store", "storage dtype int8",
             lambda p: _create(p, dtype="int8"), ValueError, "`dtype`"),
        Case("store-duplicated-steps", "store", "the same step twice in one append",
             dup_step, ValueError, "duplicated"),
        Case("store-duplicated-step-coord", "store", "duplicated steps at creation",
             lambda p: _create(p, steps=[0, 5, 5]), ValueError, "duplicated"),
        Case("store-negative-step", "store", "negative training step",
             lambda p: _create(p, steps=[-1]), ValueError, "non-negative"),
        Case("store-duplicated-run", "store", "two runs with the same id",
             lambda p: _create(p, runs=["a", "a"]), ValueError, "duplicated"),
        Case("store-empty-probes", "store", "empty probe set",
             lambda p: _create(p, examples=[]), ValueError, "`examples` is empty"),
        Case("store-int-ids", "store", "integer run ids", lambda p: _create(p, runs=[0, 1]),
             TypeError, "must hold strings"),
        Case("store-id-script", "store", "run id `<script>alert(1)</script>`",
             lambda p: _create(p, runs=["<script>alert(1)</script>"]), ValueError, "`runs` id .* forbidden character"),
        Case("store-id-traversal", "store", "layer id `../../etc/passwd`",
             lambda p: _create(p, layers=["../../etc/passwd"]), ValueError, "`layers` id .* forbidden character"),
        Case("store-id-newline", "store", "probe id with a newline",
             lambda p: _create(p, examples=["a\nb", "c"]), ValueError, "`examples` id .* forbidden character"),
        Case("store-id-too-long", "store", "run id of 10,000 characters",
             lambda p: _create(p, runs=["r" * 10_000]), ValueError, "`runs` id .* is too long"),
        Case("store-id-empty", "store", "empty-string run id",
             lambda p: _create(p, runs=[""]), ValueError, "`runs` has an empty id"),
        Case("store-wrong-schema-version", "store", "store written by a future schema version",
             wrong_schema, SchemaError, "schema version 99 is not supported"),
        Case("store-unknown-run", "store", "append to a run that is not in the store",
             lambda p: _create(p).write_slab("nope", 0, np.zeros((1, 2, 4))), ValueError,
             "not in this store"),
        Case("store-missing-step", "store", "a run with a missing (never completed) step",
             missing_step_open, RevstatsWarning, "1 incomplete slab"),
        Case("store-not-a-store", "store", "open a directory that is not a store",
             lambda p: (p / "d").mkdir() or open_store(p / "d"), SchemaError, "not a zarr v3 store"),
        Case("store-missing-path", "store", "open a path that does not exist",
             lambda p: open_store(p / "nope.zarr"), FileNotFoundError, "no store at"),
        Case("store-truncated-metadata", "store", "truncated zarr.json",
             truncated_meta, SchemaError, "root metadata document .* is truncated or corrupt"),
        Case("store-second-writer", "store", "a second writer on the same store",
             lambda p: (_create(p), open_writer(p / "s.zarr")), RevstatsError, "another writer"),
        Case("store-existing-not-clobbered", "store", "create over an existing store",
             lambda p: (_store_for_cli(p), create_store(p / "s.zarr", runs=["x"], layers=["l"],
                        examples=["e"], hidden=2, source="ingest", provenance={})),
             RevstatsError, "exists"),
    ]


def _ingest_cases() -> list[Case]:
    def pickle_npy(p):
        f = p / "obj.npy"
        np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        return _ingest(str(f), p, acts={"key": None, "dims": ["run", "step", "layer", "example", "hidden"]})

    def truncated_npz(p):
        f = Path(_good_log(p))
        f.write_bytes(f.read_bytes()[:100])
        return _ingest(str(f), p)

    def truncated_h5(p):
        import h5py

        f = p / "log.h5"
        with h5py.File(f, "w") as h:
            h["acts"] = np.zeros((1, 2, 1, 3, 4))
            h["base"] = np.zeros((1, 3, 4))
        f.write_bytes(f.read_bytes()[:300])
        return _ingest(str(f), p)

    def h5_object(p):
        import h5py

        f = p / "log.h5"
        with h5py.File(f, "w") as h:
            h["acts"] = np.array(["a", "b"], dtype=h5py.string_dtype())
            h["base"] = np.zeros((1, 3, 4))
        return _ingest(str(f), p, acts={"key": "acts", "dims": ["example"]})

    def pt_pickle(p):
        import pickle

        f = p / "evil.pt"

        class Boom:
            def __reduce__(self):
                return (print, ("pickle code ran",))

        f.write_bytes(pickle.dumps({"acts": Boom()}))
        return _ingest(str(f), p)

    return [
        Case("ingest-nan", "ingest", "NaN in logged activations",
             lambda p: _ingest(_good_log(p, acts=np.full((1, 2, 1, 3, 4), np.nan, np.float32)), p),
             RevstatsError, "acts contain NaN or inf: refusing"),
        Case("ingest-object-npy", "ingest", "object (pickled) array in a .npy file",
             pickle_npy, RevstatsError, "is an object array; it contains pickled"),
        Case("ingest-object-npz", "ingest", "object array inside an .npz",
             lambda p: _ingest(_npz(p, acts=np.array([1, "x"], dtype=object),
                                    base=np.zeros((1, 3, 4))), p),
             RevstatsError, "'acts' is an object array; it contains pickled"),
        Case("ingest-h5-strings", "ingest", "HDF5 dataset of strings", h5_object, RevstatsError,
             "'acts' is an object array"),
        Case("ingest-pt-pickle", "ingest", ".pt file whose unpickling would run code", pt_pickle,
             RevstatsError, "refused to load: it contains pickled Python objects"),
        Case("ingest-truncated-npz", "ingest", "truncated .npz", truncated_npz, RevstatsError,
             "cannot read it as npz: the file is truncated or corrupt"),
        Case("ingest-truncated-h5", "ingest", "truncated .h5", truncated_h5, RevstatsError,
             "cannot read it as hdf5: the file is truncated or corrupt"),
        Case("ingest-wrong-dims", "ingest", "mapping dims that do not match the array rank",
             lambda p: _ingest(_good_log(p), p, acts={"key": "acts", "dims": ["run", "step", "hidden"]}),
             RevstatsError, "has shape \\(1, 2, 1, 3, 4\\) \\(5 axes\\) but the mapping names dims"),
        Case("ingest-unknown-key", "ingest", "array name missing from the file",
             lambda p: _ingest(_good_log(p), p, acts={"key": "activations", "dims": ["run", "step", "layer", "example", "hidden"]}),
             RevstatsError, "no array 'activations' for `acts`"),
        Case("ingest-hidden-mismatch", "ingest", "witness hidden size differs from acts",
             lambda p: _ingest(_good_log(p, base=np.zeros((1, 3, 5), np.float32)), p),
             RevstatsError, "axis 'hidden' has size 5 in `witness`"),
        Case("ingest-unsupported-suffix", "ingest", "a .pkl file",
             lambda p: (p / "x.pkl").write_bytes(b"\x80\x04") and _ingest(str(p / "x.pkl"), p),
             RevstatsError, "unknown file type '.pkl'"),
    ]


def _cli_cases() -> list[Case]:
    return [
        Case("cli-info-missing", "cli", "`revstats info` on a missing path",
             lambda p: _cli("info", str(p / "nope.zarr")), SystemExit, "no store at", cli=True),
        Case("cli-simulate-bad-set", "cli", "`revstats simulate --set` without `=`",
             lambda p: _cli("simulate", "--set", "lr", "--out", str(p / "o.zarr")), SystemExit,
             "KEY=VALUE", cli=True),
        Case("cli-simulate-unknown-preset", "cli", "unknown preset",
             lambda p: _cli("simulate", "--preset", "nope", "--out", str(p / "o.zarr")), SystemExit,
             "unknown preset 'nope'", cli=True),
        Case("cli-simulate-hidden-too-small", "cli", "hidden smaller than the latent space",
             lambda p: _cli("simulate", "--hidden", "4", "--out", str(p / "o.zarr")), SystemExit,
             "`hidden` \\(4\\) must be >= `latent`", cli=True),
        Case("cli-ingest-nan", "cli", "`revstats ingest` of NaN activations",
             lambda p: _cli("ingest", _good_log(p, acts=np.full((1, 2, 1, 3, 4), np.inf, np.float32)),
                            "--out", str(p / "o.zarr"), "--acts-key", "acts", "--acts-dims",
                            "run,step,layer,example,hidden", "--witness-key", "base",
                            "--witness-dims", "layer,example,hidden"),
             SystemExit, "acts contain NaN or inf", cli=True),
        Case("cli-ingest-hostile-run-id", "cli", "`revstats ingest --runs '<script>'`",
             lambda p: _cli("ingest", _good_log(p), "--out", str(p / "o.zarr"), "--acts-key", "acts",
                            "--acts-dims", "run,step,layer,example,hidden", "--witness-key", "base",
                            "--witness-dims", "layer,example,hidden", "--runs", "<script>x</script>"),
             SystemExit, "`runs` id .* forbidden character", cli=True),
        Case("cli-ingest-bad-steps", "cli", "`--steps` that are not integers",
             lambda p: _cli("ingest", _good_log(p), "--out", str(p / "o.zarr"), "--steps", "a,b"),
             SystemExit, "expected comma-separated integers", cli=True),
        Case("cli-capture-bad-layers", "cli", "`revstats capture --layers x`",
             lambda p: (p / "pr.txt").write_text("hi\n") and _cli(
                 "capture", "--probes", str(p / "pr.txt"), "--layers", "x", "--out", str(p / "o")),
             SystemExit, "expected comma-separated integers", cli=True),
    ]


def _tiny_capture(p, *, layers=(0,), ids=((5, 6, 7),), position="last"):
    from revstats.capture._tiny import build_tiny_model
    from revstats.capture.hooks import capture_residual, make_batches

    model = build_tiny_model("gpt2", n_layers=1, hidden=16)
    batches = make_batches([list(i) for i in ids], [[] for _ in ids], batch_size=1)
    return capture_residual(model, batches, layers=list(layers), position=position)


def _capture_cases() -> list[Case]:
    def unknown_module(p):
        import torch

        from revstats.capture.hooks import capture_modules

        with capture_modules(torch.nn.Sequential(torch.nn.Linear(2, 2)), ["blocks.99.mlp"]):
            pass

    return [
        Case("capture-unknown-layer", "capture", "residual layer 99 of a 1-block model",
             lambda p: _tiny_capture(p, layers=(99,)), ValueError, "`layers` must be distinct indices in 0..1"),
        Case("capture-unknown-module", "capture", "hook on a module name the model lacks",
             unknown_module, ValueError, "are not modules of the model"),
        Case("capture-token-out-of-vocab", "capture", "probe token id beyond the vocabulary",
             lambda p: _tiny_capture(p, ids=((5, 6, 7000),)), ValueError, "token ids must lie in 0..111"),
        Case("capture-bad-position", "capture", "unknown token position policy",
             lambda p: _tiny_capture(p, position="middle"), ValueError, "`position` must be"),
        Case("capture-empty-probes", "capture", "a probe file with no probes",
             lambda p: (p / "pr.jsonl").write_text("\n") and _load_probes(p / "pr.jsonl"),
             RevstatsError, "holds no probes"),
        Case("capture-duplicate-probe-ids", "capture", "two probes with the same id",
             lambda p: (p / "pr.jsonl").write_text('{"id": "a", "prompt_ids": [1]}\n' * 2)
             and _load_probes(p / "pr.jsonl"), RevstatsError, "probe ids are not unique"),
    ]


def _load_probes(path):
    from revstats.capture.checkpoints import load_probes

    return load_probes(path)


def all_cases() -> list[Case]:
    cases = [*_geometry_cases(), *_stats_cases(), *_store_cases(), *_ingest_cases(),
             *_capture_cases(), *_cli_cases()]
    ids = [c.id for c in cases]
    assert len(set(ids)) == len(ids), "duplicated case ids"
    return cases


def _outcome(case: Case) -> str:
    if case.cli:
        return "CLI error, exit status ≠ 0, no traceback"
    if issubclass(case.expect, Warning):
        return f"warns `{case.expect.__name__}`, result NaN"
    return f"raises `{case.expect.__name__}`"


def render_markdown() -> str:
    """The catalogue as docs/bad-inputs.md."""
    cases = all_cases()
    lines = [
        "# Bad inputs: what revstats does with them",
        "",
        "<!-- generated by `python -m tests.unit.bad_input_cases > docs/bad-inputs.md`;",
        "     tests/unit/test_bad_inputs.py runs every row and fails if this file is stale -->",
        "",
        "Every row below is a test (`tests/unit/test_bad_inputs.py`): the bad input is fed to the",
        "public API or the CLI, and the test checks the exception type (or warning) and that the",
        "message matches the pattern shown, that the error is raised by revstats itself (never a",
        "traceback from deep inside numpy, zarr, h5py or torch), and that no number comes out.",
        "",
        "Policies the catalogue pins down:",
        "",
        "- **Non-finite values** are refused where data enter the store (`create_store` writers,",
        "  `ingest`, `capture`). The lazy geometry functions never inspect values before they are",
        "  computed (they must stay lazy on dask arrays); instead NaN/Inf propagate to a NaN result",
        "  with a `DegenerateDataWarning` at compute time. Probe means use `skipna=False`, so one",
        "  bad probe is never silently dropped from a mean.",
        "- **Zero vectors** (a zero drift, a witness equal to the aligned model) have no direction:",
        "  NaN with a `DegenerateDataWarning`, never an arbitrary cosine.",
        "- **Ids** (runs, arms, layers, probes) may not be empty, longer than 256 characters, or",
        "  contain control characters (newlines, tabs, NUL…) or `<` `>`; run, arm and layer ids also",
        "  may not contain `/` or `\\` or be `.`/`..` (they may become file names). Reports escape",
        "  every user-supplied string anyway.",
        "- **Untrusted files**: nothing is unpickled. `.npy`/`.npz` are read with",
        "  `allow_pickle=False`, object arrays (in npz, npy or HDF5) are refused, `.pt` files are",
        "  read with `torch.load(weights_only=True)` only, and truncated files are reported as such.",
        "- **A run with a missing step** (a slab never completed) reads as NaN and the dataset's",
        "  `revstats_notes` attribute says how many slabs are masked; analyses see NaN, not zeros.",
        "",
        f"{len(cases)} bad inputs:",
        "",
        "| # | area | bad input | outcome | message matches |",
        "|---|---|---|---|---|",
    ]
    for i, c in enumerate(cases, 1):
        pattern = c.match.replace("|", "\\|")
        lines.append(f"| {i} | {c.area} | {c.bad_input} (`{c.id}`) | {_outcome(c)} | `{pattern}` |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(render_markdown())
